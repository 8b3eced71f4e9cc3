"""Peak-EWMA latency cost (Finagle's PeakEwma) and the load figure kept in `EndpointState`."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.config.model import Check, CheckKind
from gslb.health.tracker import DEFAULT_TAU_S, EndpointState, Verdict, apply, next_state, peak_ewma

CHECK = Check(kind=CheckKind.HTTP, port=80, rise=2, fall=3, timeout_s=2.5, interval_s=5.0)


def test_no_previous_cost_is_the_sample() -> None:
    assert peak_ewma(None, None, 42.0, now=10.0, tau_s=10.0) == 42.0
    # A cost without a time (never written so) starts afresh too.
    assert peak_ewma(100.0, None, 42.0, now=10.0, tau_s=10.0) == 42.0


@pytest.mark.parametrize("elapsed_s", [0.0, 1.0, 100.0], ids=["same-time", "one-second", "long-ago"])
def test_a_sample_above_the_cost_replaces_it_at_once(elapsed_s: float) -> None:
    assert peak_ewma(10.0, 50.0, 80.0, now=50.0 + elapsed_s, tau_s=10.0) == 80.0


@pytest.mark.parametrize(
    ("cost", "sample", "elapsed_s", "tau_s"),
    [
        (100.0, 10.0, 1.0, 10.0),
        (100.0, 10.0, 10.0, 10.0),
        (100.0, 10.0, 5.0, 2.0),
        (40.0, 39.0, 0.25, 10.0),
    ],
    ids=["small-step", "one-tau", "short-tau", "close-sample"],
)
def test_a_lower_sample_decays_the_cost_by_time(
    cost: float, sample: float, elapsed_s: float, tau_s: float
) -> None:
    w = math.exp(-elapsed_s / tau_s)
    got = peak_ewma(cost, 1000.0, sample, now=1000.0 + elapsed_s, tau_s=tau_s)
    assert got == pytest.approx(cost * w + sample * (1.0 - w), rel=1e-12)
    assert sample < got < cost


def test_one_tau_leaves_one_e_th_of_the_gap() -> None:
    got = peak_ewma(110.0, 0.0, 10.0, now=10.0, tau_s=10.0)
    assert got == pytest.approx(10.0 + 100.0 / math.e, rel=1e-12)


def test_the_decay_depends_on_time_not_on_the_number_of_samples() -> None:
    once = peak_ewma(100.0, 0.0, 10.0, now=4.0, tau_s=10.0)
    twice = peak_ewma(peak_ewma(100.0, 0.0, 10.0, now=2.0, tau_s=10.0), 2.0, 10.0, now=4.0, tau_s=10.0)
    assert once == pytest.approx(twice, rel=1e-12)


def test_no_time_or_time_going_back_keeps_the_cost() -> None:
    assert peak_ewma(100.0, 50.0, 10.0, now=50.0, tau_s=10.0) == 100.0
    assert peak_ewma(100.0, 50.0, 10.0, now=40.0, tau_s=10.0) == 100.0


def test_no_memory_is_the_sample() -> None:
    assert peak_ewma(100.0, 0.0, 10.0, now=1.0, tau_s=0.0) == 10.0


@given(
    cost=st.floats(0.0, 1e6),
    sample=st.floats(0.0, 1e6),
    elapsed=st.floats(0.0, 1e6),
    tau=st.floats(0.001, 1e4),
)
def test_the_cost_never_goes_below_the_sample_nor_above_the_peak(
    cost: float, sample: float, elapsed: float, tau: float
) -> None:
    got = peak_ewma(cost, 0.0, sample, now=elapsed, tau_s=tau)
    assert min(cost, sample) - 1e-6 <= got <= max(cost, sample) + 1e-6
    assert got >= sample - 1e-6 * max(1.0, sample)


def test_next_state_keeps_the_cost_and_when_it_was_taken() -> None:
    state = next_state(EndpointState(), True, 20.0, now=100.0, check=CHECK, tau_s=10.0)
    assert (state.cost_ms, state.cost_at) == (20.0, 100.0)
    state = next_state(state, True, 50.0, now=101.0, check=CHECK, tau_s=10.0)
    assert (state.cost_ms, state.cost_at) == (50.0, 101.0)  # peak
    state = next_state(state, True, 10.0, now=106.0, check=CHECK, tau_s=10.0)
    w = math.exp(-5.0 / 10.0)
    assert state.cost_ms == pytest.approx(50.0 * w + 10.0 * (1.0 - w), rel=1e-12)
    assert state.cost_at == 106.0


def test_next_state_uses_the_endpoints_tau() -> None:
    start = EndpointState(cost_ms=100.0, cost_at=0.0)
    slow = next_state(start, True, 10.0, now=5.0, check=CHECK, tau_s=50.0)
    fast = next_state(start, True, 10.0, now=5.0, check=CHECK, tau_s=1.0)
    default = next_state(start, True, 10.0, now=5.0, check=CHECK)
    assert slow.cost_ms == pytest.approx(10.0 + 90.0 * math.exp(-5.0 / 50.0), rel=1e-12)
    assert fast.cost_ms == pytest.approx(10.0 + 90.0 * math.exp(-5.0), rel=1e-12)
    assert default.cost_ms == pytest.approx(10.0 + 90.0 * math.exp(-5.0 / DEFAULT_TAU_S), rel=1e-12)


@pytest.mark.parametrize("rtt_ms", [None, 3.0], ids=["refused", "bad-status"])
def test_a_failed_check_is_a_sample_of_the_timeout(rtt_ms: float | None) -> None:
    state = next_state(EndpointState(), True, 20.0, now=10.0, check=CHECK, tau_s=10.0)
    failed = next_state(state, False, rtt_ms, now=11.0, check=CHECK, tau_s=10.0)
    assert failed.cost_ms == CHECK.timeout_s * 1000.0  # above the cost: the peak, at once
    assert failed.cost_at == 11.0
    # ...and it decays from there once checks pass again.
    back = next_state(failed, True, 20.0, now=21.0, check=CHECK, tau_s=10.0)
    assert back.cost_ms == pytest.approx(2500.0 / math.e + 20.0 * (1.0 - 1.0 / math.e), rel=1e-12)


def test_a_check_without_latency_leaves_the_cost_alone() -> None:
    none = Check(kind=CheckKind.NONE)
    state = EndpointState(cost_ms=7.0, cost_at=3.0)
    after = next_state(state, True, None, now=9.0, check=none, tau_s=10.0)
    assert (after.cost_ms, after.cost_at) == (7.0, 3.0)


def test_the_load_is_the_latest_passing_checks_figure() -> None:
    state = next_state(EndpointState(), True, 5.0, now=1.0, check=CHECK, load=0.75)
    assert state.load == 0.75
    state = next_state(state, True, 5.0, now=2.0, check=CHECK, load=None)
    assert state.load is None  # the check reported none: no stale figure either
    state = next_state(state, True, 5.0, now=3.0, check=CHECK, load=12.0)
    assert state.load == 12.0
    failed = next_state(state, False, None, now=4.0, check=CHECK, load=3.0)
    assert failed.load is None


def test_apply_passes_load_and_tau() -> None:
    start = EndpointState(cost_ms=100.0, cost_at=0.0)
    state = apply(start, Verdict("e", "p1", True, 10.0, 2.0, "HTTP 200", 0.5), CHECK, tau_s=4.0)
    assert state.load == 0.5
    assert state.cost_ms == pytest.approx(10.0 + 90.0 * math.exp(-0.5), rel=1e-12)
    assert state.verdict("e", "p1") == Verdict("e", "p1", True, 10.0, 2.0, "HTTP 200", 0.5)
