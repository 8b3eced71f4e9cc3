"""Rise/fall hysteresis, flapping, RTT EWMA, baseline and degraded detection of one prober."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.config.model import Check, CheckKind
from gslb.health.tracker import (
    BASELINE_MIN_SAMPLES,
    EndpointState,
    Verdict,
    apply,
    next_state,
)
from gslb.health.view import Health

CHECK = Check(kind=CheckKind.TCP, port=80, rise=2, fall=3, timeout_s=1.0)


def run(
    results: Iterable[bool | tuple[bool, float | None]],
    check: Check = CHECK,
    state: EndpointState | None = None,
) -> list[EndpointState]:
    """Feed results (ok, or (ok, rtt_ms)) one per second; return the state after each."""
    state = state or EndpointState()
    out = []
    for t, item in enumerate(results, start=1):
        ok, rtt = item if isinstance(item, tuple) else (item, 10.0)
        state = next_state(state, ok, rtt, now=float(t), check=check)
        out.append(state)
    return out


def healths(states: list[EndpointState]) -> list[Health]:
    return [s.health for s in states]


U, D, G = Health.UP, Health.DOWN, Health.DEGRADED


def test_starts_up_and_unknown_is_not_down() -> None:
    assert EndpointState().health is Health.UP
    assert healths(run([False, False])) == [U, U]


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([False, False, False], [U, U, D]),
        ([False, False, True, False, False], [U, U, U, U, U]),
        ([False, False, False, True, True], [U, U, D, D, U]),
        ([False, False, False, True, False, True, True], [U, U, D, D, D, D, U]),
        ([True, True, True], [U, U, U]),
    ],
    ids=["fall-after-3", "interrupted-fall", "rise-after-2", "interrupted-rise", "stays-up"],
)
def test_rise_fall(results: list[bool], expected: list[Health]) -> None:
    assert healths(run(results)) == expected


def test_flapping_every_second_never_changes_state() -> None:
    states = run([i % 2 == 0 for i in range(100)])
    assert set(healths(states)) == {U}
    down = run([False] * 3 + [i % 2 == 0 for i in range(100)])
    assert set(healths(down[3:])) == {D}


@given(
    st.lists(st.booleans(), max_size=200),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
)
def test_changes_at_most_once_per_rise_fall_window(results: list[bool], rise: int, fall: int) -> None:
    check = Check(kind=CheckKind.TCP, port=80, rise=rise, fall=fall)
    states = run(results, check)
    last_change = 0
    previous = Health.UP
    for i, state in enumerate(states, start=1):
        assert state.health in (U, D)  # no degraded thresholds configured
        if state.health is not previous:
            window = rise if state.health is U else fall
            assert i - last_change >= window
            assert state.changed_at == float(i)
            last_change, previous = i, state.health
        assert state.ok_streak == 0 or state.fail_streak == 0


def test_changed_at_only_moves_on_change() -> None:
    states = run([True, False, False, False, False, True, True])
    assert [s.changed_at for s in states] == [0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 7.0]
    assert [s.checked_at for s in states] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_ewma_of_rtt() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.5)
    states = run([(True, 10.0), (True, 20.0), (True, 20.0)], check)
    assert [s.ewma_rtt_ms for s in states] == [10.0, 15.0, 17.5]
    assert states[-1].last_rtt_ms == 20.0


def test_failure_counts_as_a_timeout_in_the_ewma() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.5, timeout_s=0.1)
    states = run([(True, 20.0), (False, None)], check)
    assert states[-1].ewma_rtt_ms == pytest.approx(60.0)
    assert states[-1].baseline_rtt_ms == 20.0  # the baseline only learns from successes


def test_no_rtt_no_ewma() -> None:
    states = run([(True, None)] * 3, Check())
    assert states[-1].ewma_rtt_ms is None
    assert states[-1].health is U


def test_absolute_threshold_degrades_and_recovers_with_hysteresis() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=1.0, degraded_rtt_ms=100.0)
    states = run([(True, 50.0), (True, 150.0), (True, 90.0), (True, 85.0), (True, 70.0)], check)
    # 90 and 85 are under the threshold but above its 80 % exit line: still degraded.
    assert healths(states) == [U, G, G, G, U]


def test_ewma_smooths_one_slow_check() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.3, degraded_rtt_ms=100.0)
    states = run([(True, 50.0)] * 5 + [(True, 200.0)] + [(True, 50.0)] * 5, check)
    assert set(healths(states)) == {U}


def test_ratio_needs_a_baseline_first() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.5, degraded_ratio=2.0)
    early = run([(True, 10.0)] * 2 + [(True, 100.0)] * 3, check)
    assert set(healths(early)) == {U}  # too few baseline samples to judge


def test_ratio_over_baseline_degrades_and_baseline_freezes() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.5, degraded_ratio=2.0)
    warm = run([(True, 10.0)] * BASELINE_MIN_SAMPLES, check)
    assert warm[-1].baseline_rtt_ms == pytest.approx(10.0)
    slow = run([(True, 40.0)] * 20, check, warm[-1])
    assert slow[-1].health is G
    # Learning stops once degraded: slow must not become the new normal.
    assert slow[-1].baseline_rtt_ms is not None and slow[-1].baseline_rtt_ms < 15.0
    back = run([(True, 10.0)] * 10, check, slow[-1])
    assert back[-1].health is U


def test_degraded_endpoint_still_goes_down_and_comes_back_fresh() -> None:
    check = Check(kind=CheckKind.TCP, port=80, ewma_alpha=0.3, degraded_rtt_ms=100.0, rise=2, fall=2)
    states = run([(True, 500.0)] * 3 + [(False, None)] * 2 + [(True, 20.0)] * 2, check)
    assert healths(states) == [G, G, G, G, D, D, U]
    # The EWMA restarts at the first sample after the outage, not at the old slow value.
    assert states[-1].ewma_rtt_ms == pytest.approx(20.0)


def test_counters_are_consecutive() -> None:
    states = run([True, True, False, False, True])
    assert [(s.ok_streak, s.fail_streak) for s in states] == [(1, 0), (2, 0), (0, 1), (0, 2), (1, 0)]


def test_verdict_round_trip() -> None:
    verdict = Verdict("www/ams/192.0.2.1", "p1", False, None, 42.0, "connection refused")
    state = apply(EndpointState(), verdict, CHECK)
    assert state.detail == "connection refused"
    assert state.verdict("www/ams/192.0.2.1", "p1") == verdict
    assert EndpointState().verdict("x", "p1") is None
