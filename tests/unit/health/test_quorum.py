"""Votes of several probers, stale probers, quorum sizes and drains -> HealthView."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from gslb.health.quorum import combine, decide, quorum_size, tally
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.view import Drain, DrainKind, Health

U, D, G = Health.UP, Health.DOWN, Health.DEGRADED
EP = "www/ams/192.0.2.1"
NOW = 1000.0


def report(prober_id: str, heartbeat_at: float = NOW, **healths: Health) -> ProberReport:
    votes = {EP if name == "ep" else name: h for name, h in healths.items()}
    return ProberReport(prober_id, heartbeat_at, MappingProxyType(votes))


def snapshot(*reports: ProberReport, drains: tuple[Drain, ...] = (), read_at: float = NOW) -> Snapshot:
    return Snapshot(
        version=7,
        read_at=read_at,
        probers=MappingProxyType({r.prober_id: r for r in reports}),
        drains=drains,
    )


def health(snap: Snapshot, quorum: int | None = None) -> Health:
    return combine(snap, now=NOW, stale_after_s=5.0, quorum=quorum).health(EP)


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ([D], D),
        ([U], U),
        ([G], G),
        ([D, U], U),
        ([D, D], D),
        ([D, G], G),
        ([G, U], U),
        ([D, D, U], D),
        ([D, G, U], G),
        ([D, U, U], U),
        ([G, G, D], G),
    ],
    ids=lambda v: "-".join(h.value for h in v) if isinstance(v, list) else v.value,
)
def test_majority_of_fresh_probers(votes: list[Health], expected: Health) -> None:
    reports = [report(f"p{i}", ep=h) for i, h in enumerate(votes)]
    assert health(snapshot(*reports)) is expected


def test_two_probers_disagreeing_keep_the_endpoint_up() -> None:
    snap = snapshot(report("ams-prober", ep=D), report("iad-prober", ep=U))
    assert health(snap) is U
    t = tally(snap, EP, stale_after_s=5.0)
    assert t.quorum == 2
    assert dict(t.votes) == {"ams-prober": D, "iad-prober": U}


def test_stale_prober_is_left_out_of_the_vote() -> None:
    stale = report("old", heartbeat_at=NOW - 6.0, ep=D)
    assert health(snapshot(stale, report("new", ep=U))) is U
    assert health(snapshot(stale)) is D  # no fresh prober: its last verdict holds (test_hold.py)
    assert health(snapshot(stale, report("new", ep=D))) is D  # majority of one fresh prober
    assert snapshot(stale, report("new")).stale_probers(5.0) == ("old",)


def test_freshness_is_judged_when_the_snapshot_was_read() -> None:
    snap = snapshot(report("p", heartbeat_at=NOW, ep=D), read_at=NOW + 1.0)
    # Much later (the store is unreachable), the prober still counts: we cannot know better.
    view = combine(snap, now=NOW + 3600.0, stale_after_s=5.0)
    assert view.health(EP) is D


def test_heartbeat_from_the_future_is_fresh() -> None:
    assert health(snapshot(report("skewed", heartbeat_at=NOW + 30.0, ep=D))) is D


def test_configured_quorum_is_absolute() -> None:
    assert health(snapshot(report("p1", ep=D)), quorum=2) is U
    assert health(snapshot(report("p1", ep=D), report("p2", ep=D)), quorum=2) is D
    assert health(snapshot(report("p1", ep=D), report("p2", ep=U), report("p3", ep=U)), quorum=1) is D


def test_prober_that_does_not_report_an_endpoint_counts_as_up() -> None:
    snap = snapshot(report("p1", ep=D), report("p2", other=U))
    assert health(snap) is U


def test_no_probers_means_everything_up() -> None:
    view = combine(Snapshot(), now=NOW, stale_after_s=5.0)
    assert view.health(EP) is U
    assert dict(view.endpoints) == {}


def test_quorum_size() -> None:
    assert [quorum_size(n, None) for n in range(5)] == [1, 1, 2, 2, 3]
    assert quorum_size(3, 0) == 1
    assert decide([], 1) is U


def test_drains_pass_through_and_expired_ones_are_dropped() -> None:
    forever = Drain(DrainKind.DATACENTER, "ams", "maintenance", "alice", created_at=900.0)
    later = Drain(DrainKind.REGION, "eu", "test", "bob", created_at=900.0, expires_at=NOW + 10)
    gone = Drain(DrainKind.ENDPOINT, EP, "old", "carol", created_at=900.0, expires_at=NOW)
    view = combine(snapshot(drains=(forever, later, gone)), now=NOW, stale_after_s=5.0)
    assert view.drains == (forever, later)
    assert view.version == 7
    assert view.next_expiry(NOW) == NOW + 10
    assert view.drain_for(region="eu", datacenter="iad", now=NOW) == later
    assert combine(snapshot(drains=(later,)), now=NOW + 10, stale_after_s=5.0).drains == ()


def test_explicit_version() -> None:
    assert combine(snapshot(), now=NOW, stale_after_s=5.0, version=42).version == 42
