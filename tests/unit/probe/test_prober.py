"""The prober loop with a scripted checker: hysteresis, errors, timeouts, batching, store outages."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from types import TracebackType
from typing import Self

import pytest

from gslb.config.model import Check, CheckKind, IPAddress, ProberConfig
from gslb.errors import StateError
from gslb.health.tracker import EndpointState
from gslb.health.view import Health
from gslb.probe.checks import CheckResult
from gslb.probe.prober import Prober, default_prober_id, plan_targets
from gslb.state.store import MemoryStore
from gslb.state.sync import HealthSync
from tests.unit.probe.configs import config_with

FAST = Check(kind=CheckKind.TCP, port=80, interval_s=0.02, timeout_s=0.05, rise=2, fall=2)
FAST_PROBER = ProberConfig(heartbeat_interval_s=0.02)

Behaviour = Callable[[], CheckResult]


class ScriptedChecker:
    """Answers checks per address from `behaviours` (ok by default)."""

    def __init__(self) -> None:
        self.behaviours: dict[IPAddress, Behaviour] = {}
        self.calls: dict[IPAddress, int] = {}
        self.delay_s: dict[IPAddress, float] = {}

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
        self.calls[address] = self.calls.get(address, 0) + 1
        if address in self.delay_s:
            await asyncio.sleep(self.delay_s[address])
        behaviour = self.behaviours.get(address)
        return behaviour() if behaviour else CheckResult(True, 1.0, "ok")


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []  # states per write
        self.down = False

    async def write_states(
        self,
        prober_id: str,
        states: Mapping[str, EndpointState],
        *,
        heartbeat_at: float,
        changed: bool = True,
        replace: bool = False,
        publish: bool = True,
    ) -> int:
        if self.down:
            raise StateError("redis write states failed: ConnectionError")
        self.writes.append(len(states))
        return await super().write_states(
            prober_id, states, heartbeat_at=heartbeat_at, changed=changed, replace=replace, publish=publish
        )


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def fail() -> CheckResult:
    return CheckResult(False, None, "connection refused")


def test_endpoint_goes_down_and_comes_back() -> None:
    config = config_with([("192.0.2.1", FAST), ("192.0.2.2", FAST)], prober=FAST_PROBER)
    ep1, ep2 = (e.id for e in config.endpoints())
    checker = ScriptedChecker()

    async def main() -> None:
        store = MemoryStore()
        async with (
            HealthSync(store, poll_interval_s=0.02) as sync,
            Prober(config, store, "p1", checker=checker) as prober,
        ):
            checker.behaviours[ip_address("192.0.2.1")] = fail
            await wait_until(lambda: sync.current.health(ep1) is Health.DOWN)
            assert prober.states[ep1].detail == "connection refused"
            assert sync.current.health(ep2) is Health.UP
            del checker.behaviours[ip_address("192.0.2.1")]
            await wait_until(lambda: sync.current.health(ep1) is Health.UP)
            stats = prober.stats
            assert stats.targets == 2
            assert stats.checks >= 4
            assert stats.failures >= 2
            assert stats.writes >= 2

    asyncio.run(main())


def test_exceptions_and_timeouts_count_as_failures(caplog: pytest.LogCaptureFixture) -> None:
    config = config_with([("192.0.2.1", FAST), ("192.0.2.2", FAST)], prober=FAST_PROBER)
    ep1, ep2 = (e.id for e in config.endpoints())
    checker = ScriptedChecker()

    def boom() -> CheckResult:
        raise RuntimeError("checker bug")

    checker.behaviours[ip_address("192.0.2.1")] = boom
    checker.delay_s[ip_address("192.0.2.2")] = 1.0  # far beyond timeout_s

    async def main() -> None:
        store = MemoryStore()
        async with Prober(config, store, "p1", checker=checker) as prober:
            await wait_until(lambda: checker.calls.get(ip_address("192.0.2.1"), 0) >= 5)
            await wait_until(lambda: prober.states[ep2].health is Health.DOWN)
            assert prober.states[ep1].health is Health.DOWN
            assert prober.states[ep1].detail == "check error: RuntimeError: checker bug"
            assert prober.states[ep2].detail == "timeout after 0.05 s"
            assert prober.stats.errors >= 5
            assert prober.stats.timeouts >= 2

    with caplog.at_level(logging.INFO, logger="gslb.probe.prober"):
        asyncio.run(main())
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(raised) == 1  # once, not once per check
    changes = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(changes) == 2


def test_shared_backend_is_checked_once_for_all_its_endpoints() -> None:
    config = config_with([("192.0.2.1", FAST), ("192.0.2.1", FAST), ("192.0.2.3", FAST)])
    targets = plan_targets(config)
    assert [len(t.endpoint_ids) for t in targets] == [2, 1]
    other = Check(kind=CheckKind.TCP, port=81)
    assert len(plan_targets(config_with([("192.0.2.1", FAST), ("192.0.2.1", other)]))) == 2
    via = Check(kind=CheckKind.TCP, port=80, address=ip_address("198.51.100.1"))
    assert plan_targets(config_with([("192.0.2.1", via)]))[0].address == ip_address("198.51.100.1")


def test_states_are_written_in_batches() -> None:
    endpoints = [(f"192.0.2.{i}", FAST) for i in range(1, 51)]
    config = config_with(endpoints, prober=ProberConfig(heartbeat_interval_s=0.1))
    checker = ScriptedChecker()

    async def main() -> None:
        store = CountingStore()
        async with Prober(config, store, "p1", checker=checker, rng=random.Random(1)) as prober:
            await wait_until(lambda: prober.stats.checks >= 500)
        assert len(store.writes) < prober.stats.checks / 20
        assert store.writes[0] == 50  # the first write announces every endpoint

    asyncio.run(main())


def test_store_outage_is_survived_and_everything_rewritten() -> None:
    config = config_with([("192.0.2.1", FAST), ("192.0.2.2", FAST)], prober=FAST_PROBER)
    checker = ScriptedChecker()

    async def main() -> None:
        store = CountingStore()
        async with Prober(config, store, "p1", checker=checker) as prober:
            store.down = True
            checker.behaviours[ip_address("192.0.2.1")] = fail
            await wait_until(lambda: prober.stats.write_failures >= 3)
            assert prober.states[config.endpoints()[0].id].health is Health.DOWN
            store.down = False
            await wait_until(lambda: 2 in store.writes[1:])  # a full rewrite after the outage
            snap = await store.snapshot(now=0.0)
            assert snap.probers["p1"].health[config.endpoints()[0].id] is Health.DOWN

    asyncio.run(main())


class BuggyStore(CountingStore):
    """Writes fail with something that is not the store's own error: a bug, not an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.bug = False

    async def write_states(
        self,
        prober_id: str,
        states: Mapping[str, EndpointState],
        *,
        heartbeat_at: float,
        changed: bool = True,
        replace: bool = False,
        publish: bool = True,
    ) -> int:
        if self.bug:
            raise TypeError("unexpected type in a record")
        return await super().write_states(
            prober_id, states, heartbeat_at=heartbeat_at, changed=changed, replace=replace, publish=publish
        )


def test_a_write_bug_is_logged_once_with_its_traceback_and_probing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_with([("192.0.2.1", FAST), ("192.0.2.2", FAST)], prober=FAST_PROBER)
    checker = ScriptedChecker()

    async def main() -> None:
        store = BuggyStore()
        async with Prober(config, store, "p1", checker=checker) as prober:
            store.bug = True
            checker.behaviours[ip_address("192.0.2.1")] = fail
            await wait_until(lambda: prober.stats.write_failures >= 5)
            assert prober.states[config.endpoints()[0].id].health is Health.DOWN
            failed_at = len(store.writes)
            store.bug = False
            await wait_until(lambda: 2 in store.writes[failed_at:])  # everything rewritten once it works
            snap = await store.snapshot(now=0.0)
            assert snap.probers["p1"].health[config.endpoints()[0].id] is Health.DOWN

    with caplog.at_level(logging.INFO, logger="gslb.probe.prober"):
        asyncio.run(main())
    bugs = [r for r in caplog.records if "unexpected error writing" in r.getMessage()]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None and isinstance(bugs[0].exc_info[1], TypeError)
    assert "cannot write to the state store" not in caplog.text  # not reported as an outage
    assert sum("again after an unexpected error" in r.getMessage() for r in caplog.records) == 1


def test_a_store_outage_is_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    config = config_with([("192.0.2.1", FAST)], prober=FAST_PROBER)

    async def main() -> None:
        store = CountingStore()
        async with Prober(config, store, "p1", checker=ScriptedChecker()) as prober:
            store.down = True
            await wait_until(lambda: prober.stats.write_failures >= 5)
            store.down = False
            await wait_until(lambda: len(store.writes) >= 3)

    with caplog.at_level(logging.INFO, logger="gslb.probe.prober"):
        asyncio.run(main())
    lost = [r for r in caplog.records if "cannot write to the state store" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].exc_info is None
    assert sum("writes to the state store again" in r.getMessage() for r in caplog.records) == 1


def test_resumes_its_previous_states() -> None:
    slow = Check(kind=CheckKind.TCP, port=80, interval_s=60.0, rise=2, fall=2)
    config = config_with([("192.0.2.1", slow)], prober=FAST_PROBER)
    ep = config.endpoints()[0].id

    async def main() -> None:
        store = MemoryStore()
        down = EndpointState(health=Health.DOWN, fail_streak=9)
        await store.write_states("p1", {ep: down, "gone/endpoint": down}, heartbeat_at=1.0)
        async with Prober(config, store, "p1", checker=ScriptedChecker()) as prober:
            assert prober.states[ep].health is Health.DOWN
        snap = await store.snapshot(now=2.0, details=True)
        assert set(snap.probers["p1"].states) == {ep}  # endpoints no longer configured dropped
        async with Prober(config, MemoryStore(), "p1", checker=ScriptedChecker(), resume=False) as fresh:
            assert fresh.states[ep].health is Health.UP

    asyncio.run(main())


def test_default_prober_id() -> None:
    assert default_prober_id(config_with([], prober=ProberConfig(id="ams-1"))) == "ams-1"
    assert default_prober_id(config_with([]))
