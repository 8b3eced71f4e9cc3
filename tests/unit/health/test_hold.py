"""Static stability: when no prober is fresh, the last verdicts hold (time is `read_at`)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from gslb.health.quorum import combine, staleness, tally, voters
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.view import Health

U, D, G = Health.UP, Health.DOWN, Health.DEGRADED
EP = "www/ams/192.0.2.1"
OTHER = "www/iad/198.51.100.1"
STALE_AFTER_S = 5.0
DIED = 1000.0  # the last heartbeat of the prober that dies


def report(prober_id: str, heartbeat_at: float = DIED, **healths: Health) -> ProberReport:
    votes = {EP if name == "ep" else OTHER if name == "other" else name: h for name, h in healths.items()}
    return ProberReport(prober_id, heartbeat_at, MappingProxyType(votes))


def at(read_at: float, *reports: ProberReport) -> Snapshot:
    return Snapshot(version=3, read_at=read_at, probers=MappingProxyType({r.prober_id: r for r in reports}))


def health(
    snap: Snapshot, endpoint: str = EP, *, quorum: int | None = None, hold_stale_s: float | None = None
) -> Health:
    view = combine(
        snap, now=snap.read_at, stale_after_s=STALE_AFTER_S, quorum=quorum, hold_stale_s=hold_stale_s
    )
    return view.health(endpoint)


@pytest.mark.parametrize(
    ("last_word", "expected"),
    [(D, D), (G, G), (U, U)],
    ids=["down-stays-down", "degraded-stays-degraded", "up-stays-up"],
)
@pytest.mark.parametrize("later_s", [5.001, 60.0, 86_400.0 * 365], ids=["just-stale", "a-minute", "a-year"])
def test_the_only_prober_dying_holds_its_last_verdict(
    last_word: Health, expected: Health, later_s: float
) -> None:
    snap = at(DIED + later_s, report("p1", ep=last_word))
    assert snap.fresh_probers(STALE_AFTER_S) == ()
    assert health(snap) is expected
    assert health(snap, OTHER) is U  # an endpoint it never reported as unwell is not taken down


def test_before_the_heartbeat_is_stale_nothing_changes() -> None:
    assert health(at(DIED + STALE_AFTER_S, report("p1", ep=D))) is D
    assert staleness(at(DIED + STALE_AFTER_S, report("p1", ep=D)), stale_after_s=STALE_AFTER_S).hold is None


def test_an_endpoint_never_probed_is_up_while_holding() -> None:
    snap = at(DIED + 60.0, report("p1", ep=D))
    assert health(snap, "www/sin/203.0.113.1") is U


def test_no_prober_ever_is_everything_up() -> None:
    snap = at(DIED, *())
    assert health(snap) is U
    assert staleness(snap, stale_after_s=STALE_AFTER_S).hold is None


def test_one_fresh_prober_decides_over_any_number_of_stale_ones() -> None:
    dead = [report(f"dead{i}", ep=D) for i in range(3)]
    assert health(at(DIED + 60.0, *dead, report("alive", DIED + 60.0))) is U
    assert health(at(DIED + 60.0, *dead, report("alive", DIED + 60.0, ep=D))) is D


def test_the_probers_that_voted_last_hold_not_one_long_dead_before() -> None:
    # "old" died long before "last" did: it was already out of the vote when "last" was the
    # only fresh prober, so the held view is what "last" said, as the view was then.
    old = report("old", DIED - 3600.0, ep=D)
    last = report("last", DIED, other=D)
    snap = at(DIED + 60.0, old, last)
    assert voters(snap, stale_after_s=STALE_AFTER_S) == ("last",)
    assert health(snap) is U
    assert health(snap, OTHER) is D


def test_probers_that_died_together_hold_their_quorum() -> None:
    # Heartbeats within stale_after_s of the last one: they were fresh together, they vote again.
    a, b, c = report("a", DIED - 1.0, ep=D), report("b", DIED, ep=D), report("c", DIED - 2.0)
    snap = at(DIED + 60.0, a, b, c)
    assert voters(snap, stale_after_s=STALE_AFTER_S) == ("a", "b", "c")
    assert health(snap) is D  # 2 of 3
    assert health(at(DIED + 60.0, a, report("b", DIED), c)) is U  # 1 of 3: was up, stays up
    assert health(snap, quorum=3) is U  # configured quorum applies to the held vote too


@pytest.mark.parametrize(
    ("read_at", "expected"),
    [
        (DIED + STALE_AFTER_S + 30.0, D),  # no fresh prober for 30 s: holding
        (DIED + STALE_AFTER_S + 60.0, D),  # exactly the limit: still holding
        (DIED + STALE_AFTER_S + 60.001, U),  # past it: released, missing data is up again
    ],
    ids=["holding", "at-the-limit", "released"],
)
def test_hold_stale_s_releases_the_held_verdicts(read_at: float, expected: Health) -> None:
    snap = at(read_at, report("p1", ep=D))
    assert health(snap, hold_stale_s=60.0) is expected
    picture = staleness(snap, stale_after_s=STALE_AFTER_S, hold_stale_s=60.0)
    assert picture.hold is not None
    assert picture.hold.released is (expected is U)
    assert dict(picture.hold.endpoints) == {EP: D}  # what was held, released or not
    assert dict(picture.held) == ({} if expected is U else {EP: D})


def test_hold_stale_s_zero_is_the_old_rule() -> None:
    assert health(at(DIED + STALE_AFTER_S + 0.001, report("p1", ep=D)), hold_stale_s=0.0) is U


def test_staleness_says_who_is_stale_since_when_and_what_is_held() -> None:
    snap = at(DIED + 60.0, report("a", DIED - 2.0, ep=D), report("b", DIED, ep=D, other=G))
    picture = staleness(snap, stale_after_s=STALE_AFTER_S)
    assert dict(picture.stale_since) == {"a": DIED - 2.0 + STALE_AFTER_S, "b": DIED + STALE_AFTER_S}
    assert picture.hold is not None
    assert picture.hold.since == DIED + STALE_AFTER_S  # when the last fresh prober went stale
    assert picture.hold.probers == ("a", "b")
    assert dict(picture.held) == {EP: D}  # OTHER: one DEGRADED vote of two is no majority


def test_staleness_with_a_fresh_prober_left_has_no_hold() -> None:
    snap = at(DIED + 60.0, report("dead", ep=D), report("alive", DIED + 59.0))
    picture = staleness(snap, stale_after_s=STALE_AFTER_S)
    assert dict(picture.stale_since) == {"dead": DIED + STALE_AFTER_S}
    assert picture.hold is None
    assert dict(picture.held) == {}


def test_tally_shows_the_held_votes() -> None:
    snap = at(DIED + 60.0, report("p1", ep=D))
    vote = tally(snap, EP, stale_after_s=STALE_AFTER_S)
    assert (vote.health, vote.held, vote.quorum, dict(vote.votes), vote.stale) == (
        D,
        True,
        1,
        {"p1": D},
        ("p1",),
    )
    released = tally(snap, EP, stale_after_s=STALE_AFTER_S, hold_stale_s=1.0)
    assert (released.health, released.held, dict(released.votes)) == (U, False, {})
    fresh = tally(at(DIED, report("p1", ep=D)), EP, stale_after_s=STALE_AFTER_S)
    assert (fresh.health, fresh.held) == (D, False)


def test_a_prober_coming_back_ends_the_hold() -> None:
    snap = at(DIED + 60.0, report("p1", DIED + 59.0))  # restarted, says up now
    assert health(snap) is U
    assert staleness(snap, stale_after_s=STALE_AFTER_S).hold is None
