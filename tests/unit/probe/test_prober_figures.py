"""The prober feeds rtt and load figures through `next_state` with each endpoint's own tau."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Self

import pytest

from gslb.config.model import Check, CheckKind, Config, IPAddress, ProberConfig
from gslb.health.quorum import combine
from gslb.probe.checks import CheckResult
from gslb.probe.prober import Prober
from gslb.state.store import MemoryStore
from tests.unit.probe.configs import config_with

# One check at one address: both endpoints share a target (one check for both).
SHARED = Check(kind=CheckKind.HTTP, port=80, interval_s=0.01, timeout_s=30.0, load_header="X-Load")
STEP_S = 5.0


class StepChecker:
    """Check n answers rtt `rtts[n]` with load figure `loads[n]` and moves the clock to n × 5 s;
    after the last one it waits (forever, for this test), so the states stay put."""

    def __init__(self, rtts: list[float], loads: list[float | None], clock: list[float]) -> None:
        self.rtts, self.loads, self.clock = rtts, loads, clock
        self.calls = 0
        self.done = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def run(self, check: Check, address: IPAddress) -> CheckResult:
        if self.calls == len(self.rtts):
            self.done.set()
            await asyncio.Event().wait()
        n = self.calls
        self.calls += 1
        self.clock[0] = STEP_S * (n + 1)
        return CheckResult(True, self.rtts[n], "HTTP 200", self.loads[n])


def config_with_taus(taus: list[float]) -> Config:
    config = config_with(
        [("192.0.2.1", SHARED) for _ in taus], prober=ProberConfig(heartbeat_interval_s=0.01)
    )
    (service,) = config.services.values()
    endpoints = tuple(replace(e, ewma_tau_s=tau) for e, tau in zip(service.endpoints, taus, strict=True))
    return replace(config, services={service.name: replace(service, endpoints=endpoints)})


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def test_each_endpoint_decays_by_its_own_tau_and_keeps_the_load() -> None:
    config = config_with_taus([2.0, 20.0])
    fast, slow = (e.id for e in config.endpoints())
    clock = [0.0]
    checker = StepChecker([100.0, 10.0, 10.0], [0.5, None, 0.25], clock)

    async def main() -> None:
        store = MemoryStore()
        async with Prober(config, store, "p1", checker=checker, now=lambda: clock[0]) as prober:
            assert len(prober.targets) == 1
            await asyncio.wait_for(checker.done.wait(), 5.0)
            # Peak 100 ms at 5 s, then 10 ms at 10 s and 15 s: 10 + 90 × exp(-10 / tau).
            for endpoint_id, tau in ((fast, 2.0), (slow, 20.0)):
                state = prober.states[endpoint_id]
                assert state.cost_ms == pytest.approx(10.0 + 90.0 * math.exp(-10.0 / tau), rel=1e-12)
                assert state.cost_at == 15.0
                assert state.load == 0.25
            await prober.flush()
            view = combine(await store.snapshot(now=clock[0], details=True), now=clock[0], stale_after_s=5.0)
            assert dict(view.costs) == {fast: prober.states[fast].cost_ms, slow: prober.states[slow].cost_ms}
            assert dict(view.loads) == {fast: 0.25, slow: 0.25}

    asyncio.run(main())


def test_a_check_without_a_figure_leaves_no_load() -> None:
    config = config_with_taus([10.0])
    (ep,) = (e.id for e in config.endpoints())
    clock = [0.0]
    checker = StepChecker([10.0, 10.0], [3.0, None], clock)

    async def main() -> None:
        store = MemoryStore()
        async with Prober(config, store, "p1", checker=checker, now=lambda: clock[0]) as prober:
            await asyncio.wait_for(checker.done.wait(), 5.0)
            await wait_until(lambda: prober.states[ep].checked_at == 2 * STEP_S)
            assert prober.states[ep].load is None
            await prober.flush()
            view = combine(await store.snapshot(now=clock[0], details=True), now=clock[0], stale_after_s=5.0)
            assert ep not in view.loads
            assert view.costs[ep] == 10.0

    asyncio.run(main())
