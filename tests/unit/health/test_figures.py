"""`combine` fills `HealthView.costs` and `.loads` from the fresh probers' states (the median)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from gslb.health.quorum import combine, figures
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Health, HealthView

A, B, C = "www/ams/192.0.2.1", "www/ams/192.0.2.2", "www/ams/192.0.2.3"
NOW = 1000.0
STALE_AFTER_S = 5.0


def state(cost: float | None = None, load: float | None = None, health: Health = Health.UP) -> EndpointState:
    return EndpointState(health=health, cost_ms=cost, cost_at=None if cost is None else NOW, load=load)


def report(prober_id: str, states: dict[str, EndpointState], heartbeat_at: float = NOW) -> ProberReport:
    return ProberReport.of(prober_id, heartbeat_at, states)


def view(*reports: ProberReport, read_at: float = NOW, hold_stale_s: float | None = None) -> HealthView:
    snap = Snapshot(version=3, read_at=read_at, probers=MappingProxyType({r.prober_id: r for r in reports}))
    return combine(snap, now=NOW, stale_after_s=STALE_AFTER_S, hold_stale_s=hold_stale_s)


def test_one_prober_gives_its_figures() -> None:
    got = view(report("p1", {A: state(12.5, 0.25), B: state(30.0), C: state()}))
    assert dict(got.costs) == {A: 12.5, B: 30.0}
    assert dict(got.loads) == {A: 0.25}


@pytest.mark.parametrize(
    ("costs", "median"),
    [
        ([10.0, 50.0, 20.0], 20.0),
        ([10.0, 50.0], 30.0),
        ([10.0, 1000.0, 20.0, 30.0], 25.0),
        ([7.0, None, 9.0], 8.0),
    ],
    ids=["three", "two", "four-with-outlier", "one-without"],
)
def test_several_probers_give_the_median(costs: list[float | None], median: float) -> None:
    reports = [report(f"p{i}", {A: state(c, None if c is None else c / 100.0)}) for i, c in enumerate(costs)]
    got = view(*reports)
    assert got.costs[A] == pytest.approx(median)
    assert got.loads[A] == pytest.approx(median / 100.0)


def test_an_endpoint_nobody_has_a_figure_for_is_absent() -> None:
    got = view(report("p1", {A: state(5.0)}), report("p2", {B: state(load=3.0)}))
    assert dict(got.costs) == {A: 5.0}
    assert dict(got.loads) == {B: 3.0}
    assert A not in got.loads and B not in got.costs


def test_a_stale_probers_figures_do_not_count() -> None:
    fresh = report("fresh", {A: state(10.0, 1.0)})
    stale = report("stale", {A: state(900.0, 9.0), B: state(50.0, 5.0)}, heartbeat_at=NOW - 60.0)
    got = view(fresh, stale)
    assert dict(got.costs) == {A: 10.0}
    assert dict(got.loads) == {A: 1.0}


def test_held_verdicts_hold_health_but_not_figures() -> None:
    # No prober is fresh: its last verdict (B down) holds, its figures are history.
    old = report("p1", {A: state(10.0, 1.0), B: state(2500.0, health=Health.DOWN)}, heartbeat_at=NOW - 60.0)
    got = view(old)
    assert got.health(B) is Health.DOWN
    assert dict(got.costs) == {} and dict(got.loads) == {}


def test_a_snapshot_without_details_has_no_figures() -> None:
    bare = ProberReport("p1", NOW, MappingProxyType({B: Health.DOWN}))
    got = view(bare)
    assert got.health(B) is Health.DOWN
    assert dict(got.costs) == {} and dict(got.loads) == {}


def test_views_with_the_same_figures_compare_equal_and_different_ones_do_not() -> None:
    one = view(report("p1", {A: state(10.0, 1.0)}))
    same = view(report("p1", {A: state(10.0, 1.0)}))
    other = view(report("p1", {A: state(11.0, 1.0)}))
    assert one == same
    assert one != other
    assert HealthView().costs == {} and HealthView().loads == {}


def test_figures_of_no_probers_are_empty() -> None:
    snap = Snapshot(probers=MappingProxyType({"p1": report("p1", {A: state(1.0, 1.0)})}))
    assert figures(snap, ()) == ({}, {})
