"""One prober's view of one endpoint: rise/fall hysteresis, RTT EWMA and gray-failure detection.

Pure layer: standard library, `gslb.config.model` and `gslb.health.view` only; it must not
import asyncio, redis or aiohttp. A prober feeds every check result of an endpoint through
`next_state`; the resulting `EndpointState` is what it writes to the state store and what
`gslb.health.quorum.combine` votes on.

Semantics (HAProxy and gdnsd): an endpoint starts UP, because unknown never counts as down;
`fall` consecutive failures take it DOWN and `rise` consecutive successes bring it back, so a
flapping endpoint changes between up and down at most once per rise/fall window. While up, an
endpoint whose RTT EWMA exceeds `check.degraded_rtt_ms`, or `check.degraded_ratio` times its
own long-run baseline, is DEGRADED; it returns to UP only once the EWMA is clearly below the
threshold again (see `DEGRADED_EXIT_FACTOR`), so it does not flap around the line.

Besides health, a state carries what the `p2c_ewma` and `least_load` endpoint policies rank
by: a peak-EWMA latency cost (`peak_ewma`, Finagle's rule, decaying by time rather than by
sample count) and the load figure of the latest successful check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gslb.config.model import Check
from gslb.health.view import Health

BASELINE_ALPHA_FACTOR = 0.1
"""The baseline EWMA moves this much slower than the short one (alpha × 0.1)."""

BASELINE_MIN_SAMPLES = 10
"""The ratio rule needs this many baseline samples before it can call an endpoint degraded."""

DEGRADED_EXIT_FACTOR = 0.8
"""A degraded endpoint is UP again once its EWMA is below 0.8 × the absolute threshold and
below the ratio threshold pulled 20 % of the way back towards the baseline itself."""

STREAK_CAP = 1_000_000
"""Counters stop here: they only need to reach rise/fall, and records stay small."""

DEFAULT_TAU_S = 10.0
"""The peak-EWMA decay time when the endpoint policy sets none (Finagle's default)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One prober's result for one endpoint at one time."""

    endpoint_id: str
    prober_id: str
    ok: bool
    rtt_ms: float | None
    at: float
    detail: str = ""
    load: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointState:
    """What one prober knows about one endpoint after its latest check.

    `ewma_rtt_ms` follows recent checks (failures count as a full timeout, so an endpoint
    that fails now and then looks slow); `baseline_rtt_ms` is a slow EWMA of successful
    checks taken only while the endpoint is plainly UP, so a gray failure does not teach the
    baseline that slow is normal.

    `cost_ms` is the peak-EWMA latency cost as of `cost_at` (see `peak_ewma`; failures count
    as a full timeout) and `load` the load figure of the latest check, None unless that check
    passed and reported one.
    """

    health: Health = Health.UP
    ok_streak: int = 0
    fail_streak: int = 0
    ewma_rtt_ms: float | None = None
    baseline_rtt_ms: float | None = None
    baseline_samples: int = 0
    changed_at: float = 0.0
    checked_at: float | None = None
    last_ok: bool | None = None
    last_rtt_ms: float | None = None
    detail: str = ""
    cost_ms: float | None = None
    cost_at: float | None = None
    load: float | None = None

    def verdict(self, endpoint_id: str, prober_id: str) -> Verdict | None:
        """The latest check result this state was built from, if any."""
        if self.checked_at is None or self.last_ok is None:
            return None
        return Verdict(
            endpoint_id, prober_id, self.last_ok, self.last_rtt_ms, self.checked_at, self.detail, self.load
        )


def peak_ewma(
    cost_ms: float | None, cost_at: float | None, sample_ms: float, *, now: float, tau_s: float
) -> float:
    """The latency cost after one sample, by Finagle's PeakEwma.

    No previous cost: the sample. A sample above the cost replaces it at once (the peak), so
    one slow answer makes an endpoint expensive straight away. Otherwise the cost decays
    towards the sample with w = exp(-(now - cost_at) / tau_s): cost × w + sample × (1 - w).
    The weight depends on the time since the last sample, not on the sample count, so the
    decay takes about `tau_s` whatever the check interval. Time going backwards counts as no
    time (w = 1); tau_s <= 0 means no memory (the sample).
    """
    if cost_ms is None or cost_at is None or sample_ms > cost_ms:
        return sample_ms
    if tau_s <= 0.0:
        return sample_ms
    w = math.exp(-max(0.0, now - cost_at) / tau_s)
    return cost_ms * w + sample_ms * (1.0 - w)


def next_state(
    prev: EndpointState,
    ok: bool,
    rtt_ms: float | None,
    *,
    now: float,
    check: Check,
    detail: str = "",
    load: float | None = None,
    tau_s: float = DEFAULT_TAU_S,
) -> EndpointState:
    """Apply one check result with rise/fall hysteresis, EWMA and degraded detection.

    `load` is the load figure the check reported (kept only when `ok`); `tau_s` is the
    endpoint's peak-EWMA decay time (`Endpoint.ewma_tau_s`).
    """
    if ok:
        ok_streak, fail_streak = min(prev.ok_streak + 1, STREAK_CAP), 0
    else:
        ok_streak, fail_streak = 0, min(prev.fail_streak + 1, STREAK_CAP)

    was_up = prev.health is not Health.DOWN
    up = was_up
    if was_up and fail_streak >= check.fall:
        up = False
    elif not was_up and ok_streak >= check.rise:
        up = True
    recovered = up and not was_up

    # A failure is as bad as a timeout: an endpoint failing now and then looks slow.
    sample = rtt_ms if ok else check.timeout_s * 1000.0
    ewma = prev.ewma_rtt_ms
    if sample is not None:
        # Coming back from DOWN starts the EWMA afresh: the outage says nothing about latency.
        if ewma is None or recovered:
            ewma = sample
        else:
            ewma = check.ewma_alpha * sample + (1.0 - check.ewma_alpha) * ewma

    # The cost has no fresh start after an outage: a failing endpoint stays expensive for
    # about tau_s after it passes again (Finagle's rule), which is what p2c wants.
    cost, cost_at = prev.cost_ms, prev.cost_at
    if sample is not None:
        cost, cost_at = peak_ewma(cost, cost_at, sample, now=now, tau_s=tau_s), now

    baseline, samples = prev.baseline_rtt_ms, prev.baseline_samples
    if ok and rtt_ms is not None and prev.health is Health.UP:
        alpha = check.ewma_alpha * BASELINE_ALPHA_FACTOR
        baseline = rtt_ms if baseline is None else alpha * rtt_ms + (1.0 - alpha) * baseline
        samples = min(samples + 1, STREAK_CAP)

    if not up:
        health = Health.DOWN
    elif _slow(ewma, baseline, samples, check, leaving=prev.health is Health.DEGRADED and not recovered):
        health = Health.DEGRADED
    else:
        health = Health.UP

    return EndpointState(
        health=health,
        ok_streak=ok_streak,
        fail_streak=fail_streak,
        ewma_rtt_ms=ewma,
        baseline_rtt_ms=baseline,
        baseline_samples=samples,
        changed_at=now if health is not prev.health else prev.changed_at,
        checked_at=now,
        last_ok=ok,
        last_rtt_ms=rtt_ms,
        detail=detail,
        cost_ms=cost,
        cost_at=cost_at,
        load=load if ok else None,
    )


def apply(
    prev: EndpointState, verdict: Verdict, check: Check, *, tau_s: float = DEFAULT_TAU_S
) -> EndpointState:
    """`next_state` for a `Verdict`."""
    return next_state(
        prev,
        verdict.ok,
        verdict.rtt_ms,
        now=verdict.at,
        check=check,
        detail=verdict.detail,
        load=verdict.load,
        tau_s=tau_s,
    )


def _slow(ewma: float | None, baseline: float | None, samples: int, check: Check, *, leaving: bool) -> bool:
    """Whether the EWMA is over a degraded threshold (the lower exit line when `leaving`)."""
    if ewma is None:
        return False
    if check.degraded_rtt_ms is not None:
        limit = check.degraded_rtt_ms * (DEGRADED_EXIT_FACTOR if leaving else 1.0)
        if ewma > limit:
            return True
    ratio = check.degraded_ratio
    if ratio is not None and baseline is not None and baseline > 0 and samples >= BASELINE_MIN_SAMPLES:
        if leaving and ratio > 1.0:
            ratio = 1.0 + (ratio - 1.0) * DEGRADED_EXIT_FACTOR
        if ewma > ratio * baseline:
            return True
    return False
