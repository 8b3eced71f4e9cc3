"""HealthSync over a MemoryStore: hints, polling, time-based changes, outages, snapshot files."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import MappingProxyType

import pytest

from gslb.errors import StateError
from gslb.health.quorum import Hold, Staleness
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.state.record import Poll
from gslb.state.snapshot_file import load_snapshot, save_snapshot
from gslb.state.store import MemoryStore, Subscription
from gslb.state.sync import HealthSync, staleness_change

EP = "www/ams/192.0.2.1"
DOWN = EndpointState(health=Health.DOWN, fail_streak=3)
UP = EndpointState()


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FlakyStore(MemoryStore):
    """A MemoryStore whose reads fail while `down` (as an unreachable Redis would)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.polls = 0
        self.snapshots = 0

    def _check(self) -> None:
        if self.down:
            raise StateError("redis poll failed: ConnectionError: connection refused")

    async def poll(self) -> Poll:
        self._check()
        self.polls += 1
        return await super().poll()

    async def snapshot(self, *, now: float, details: bool = False) -> Snapshot:
        self._check()
        self.snapshots += 1
        return await super().snapshot(now=now, details=details)

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._flaky_subscribe()

    @asynccontextmanager
    async def _flaky_subscribe(self) -> AsyncIterator[Subscription]:
        self._check()
        async with super().subscribe() as subscription:
            yield subscription


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def test_change_propagates_through_the_hint() -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        await store.write_states("p1", {EP: UP}, heartbeat_at=clock())
        # A poll interval far beyond the test: only the pub/sub hint can wake the sync.
        async with HealthSync(store, poll_interval_s=60.0, now=clock) as sync:
            assert sync.current.health(EP) is Health.UP
            assert sync.store_version == 1
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
            await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
            assert sync.store_version == 2

    asyncio.run(main())


def test_missed_hint_is_recovered_by_polling() -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        async with HealthSync(store, poll_interval_s=0.05, now=clock) as sync:
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock(), publish=False)
            await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
            assert sync.last_sync_at == clock()

    asyncio.run(main())


def test_view_version_moves_only_when_the_view_changes() -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        seen: list[HealthView] = []
        async with HealthSync(store, poll_interval_s=0.02, now=clock, on_change=seen.append) as sync:
            first = sync.current.version
            await store.write_states("p1", {EP: UP}, heartbeat_at=clock())  # new prober, same view
            await wait_until(lambda: sync.store_version == 1)
            polls = sync.polls  # the view was recomputed with that read; and one poll more:
            await wait_until(lambda: sync.polls > polls)
            assert sync.current.version == first
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
            await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
            assert sync.current.version == first + 1
            assert seen[-1] is sync.current

    asyncio.run(main())


def test_stale_prober_is_dropped_on_time() -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
        await store.write_states("p2", {EP: DOWN}, heartbeat_at=clock())
        async with HealthSync(store, stale_after_s=5.0, poll_interval_s=0.02, now=clock) as sync:
            assert sync.current.health(EP) is Health.DOWN
            clock.t += 6.0  # p1 stopped writing heartbeats; p2 is fresh and says up now
            await store.write_states("p2", {EP: UP}, heartbeat_at=clock())
            await wait_until(lambda: sync.current.health(EP) is Health.UP)
            assert sync.stale_probers == ("p1",)
            assert sync.staleness.hold is None
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock(), changed=False)
            await wait_until(lambda: "p1" not in sync.stale_probers)
            assert sync.current.health(EP) is Health.UP  # one of two fresh probers: no majority

    asyncio.run(main())


def test_the_only_prober_going_stale_holds_its_verdicts(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
        async with HealthSync(store, stale_after_s=5.0, poll_interval_s=0.01, now=clock) as sync:
            version = sync.current.version
            clock.t += 6.0  # the prober died
            await wait_until(lambda: sync.staleness.hold is not None)
            polls = sync.polls
            await wait_until(lambda: sync.polls >= polls + 20)  # many polls: one log line, not one each
            assert sync.current.health(EP) is Health.DOWN
            assert sync.current.version == version  # nothing came back: the view did not even change
            assert sync.stale_probers == ("p1",)
            assert dict(sync.staleness.held) == {EP: Health.DOWN}
            clock.t += 86_400.0  # a day later: still held (hold_stale_s is None: forever)
            await wait_until(lambda: sync.polls >= polls + 40)
            assert sync.current.health(EP) is Health.DOWN
            await store.write_states("p1", {EP: UP}, heartbeat_at=clock())  # a prober is back
            await wait_until(lambda: sync.current.health(EP) is Health.UP)
            assert sync.staleness.hold is None

    with caplog.at_level(logging.INFO, logger="gslb.state.sync"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "prober" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("prober stale (p1 since ")
    assert "holding the last verdicts of p1 forever; 1 endpoint held: www/ams/192.0.2.1 down" in lines[0]
    assert lines[1].startswith("prober p1 fresh again; verdicts no longer held (held since ")
    endpoint = [r.getMessage() for r in caplog.records if r.getMessage().startswith("endpoint ")]
    # down at start, and up again only once a prober said so: never by the prober's death
    assert endpoint == [
        "endpoint www/ams/192.0.2.1 is down (was up)",
        "endpoint www/ams/192.0.2.1 is up (was down)",
    ]


def test_hold_stale_s_releases_once_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
        async with HealthSync(
            store, stale_after_s=5.0, hold_stale_s=60.0, poll_interval_s=0.01, now=clock
        ) as sync:
            clock.t += 6.0
            await wait_until(lambda: sync.staleness.hold is not None)
            assert sync.current.health(EP) is Health.DOWN
            clock.t += 60.0
            await wait_until(lambda: sync.current.health(EP) is Health.UP)
            polls = sync.polls
            await wait_until(lambda: sync.polls >= polls + 20)
            hold = sync.staleness.hold
            assert hold is not None and hold.released
            assert dict(sync.staleness.held) == {}

    with caplog.at_level(logging.INFO, logger="gslb.state.sync"):
        asyncio.run(main())
    released = [r for r in caplog.records if "longer than prober.hold_stale_s" in r.getMessage()]
    assert len(released) == 1
    assert released[0].levelno == logging.WARNING
    assert "released: www/ams/192.0.2.1 (was down)" in released[0].getMessage()
    assert "holding the last verdicts of p1 for at most 60 s" in caplog.text


def test_drain_expiry_recomputes_the_view_without_any_write() -> None:
    async def main() -> None:
        store = MemoryStore()
        now = time.time()
        drain = Drain(DrainKind.DATACENTER, "ams", "blip", "ops", now, now + 0.2)
        await store.add_drain(drain)
        async with HealthSync(store, poll_interval_s=60.0) as sync:
            assert sync.current.drains == (drain,)
            await wait_until(lambda: sync.current.drains == ())

    asyncio.run(main())


def test_store_outage_keeps_the_view_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = FlakyStore()
        clock = Clock()
        await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
        async with HealthSync(store, stale_after_s=5.0, poll_interval_s=0.02, now=clock) as sync:
            assert sync.current.health(EP) is Health.DOWN
            store.down = True
            clock.t += 60.0  # long outage: we cannot see heartbeats, so nobody turns stale
            await wait_until(lambda: sync.errors >= 5)
            assert not sync.connected
            assert sync.current.health(EP) is Health.DOWN
            assert sync.stale_probers == ()
            store.down = False
            await store.write_states("p1", {EP: UP}, heartbeat_at=clock())
            await wait_until(lambda: sync.current.health(EP) is Health.UP)
            assert sync.connected

    with caplog.at_level(logging.WARNING, logger="gslb.state.sync"):
        asyncio.run(main())
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert (len(lost), len(back)) == (1, 1)  # one line per state change, not per poll


def test_heartbeat_only_polls_are_cheap() -> None:
    async def main() -> None:
        store = FlakyStore()
        clock = Clock()
        await store.write_states("p1", {EP: UP}, heartbeat_at=clock())
        async with HealthSync(store, poll_interval_s=0.01, now=clock) as sync:
            await wait_until(lambda: store.polls >= 10)
            assert store.snapshots <= 2  # start, plus at most the subscription's resync
            assert sync.syncs == store.snapshots

    asyncio.run(main())


def test_cold_start_from_snapshot_file_with_store_down(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    clock = Clock()
    saved = Snapshot(
        version=9,
        read_at=clock() - 100.0,
        probers=MappingProxyType({"p1": ProberReport.of("p1", clock() - 101.0, {EP: DOWN})}),
        drains=(Drain(DrainKind.REGION, "eu", "maintenance", "ops", 1.0),),
    )
    save_snapshot(path, saved, saved_at=clock() - 100.0)

    async def main() -> None:
        store = FlakyStore()
        store.down = True
        async with HealthSync(store, snapshot_path=path, poll_interval_s=0.02, now=clock) as sync:
            assert sync.current.health(EP) is Health.DOWN
            assert sync.current.drains == saved.drains
            assert sync.store_version == 9
            assert not sync.connected
            assert sync.last_sync_at is None

    asyncio.run(main())


def test_snapshot_file_is_saved_after_sync(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    async def main() -> None:
        store = MemoryStore()
        clock = Clock()
        async with HealthSync(store, snapshot_path=path, poll_interval_s=0.02, now=clock) as sync:
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=clock())
            await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
            await wait_until(lambda: (s := load_snapshot(path)) is not None and s.version == 1)

    asyncio.run(main())


def test_corrupt_snapshot_file_does_not_stop_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")

    async def main() -> None:
        async with HealthSync(MemoryStore(), snapshot_path=path, poll_interval_s=0.02) as sync:
            assert sync.connected

    asyncio.run(main())


def test_failing_callback_and_odd_errors_never_escape(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenStore(MemoryStore):
        async def poll(self) -> Poll:
            raise RuntimeError("bug in a store")

    def callback(view: HealthView) -> None:
        raise ValueError("bad callback")

    async def main() -> None:
        store = MemoryStore()
        await store.write_states("p1", {EP: DOWN}, heartbeat_at=time.time())
        async with HealthSync(store, on_change=callback, poll_interval_s=0.02) as sync:
            assert sync.current.health(EP) is Health.DOWN
        async with HealthSync(BrokenStore(), poll_interval_s=0.01) as broken:
            await wait_until(lambda: broken.errors >= 10)
            assert broken.current == HealthView(version=0)
            assert broken.bugs >= 10

    with caplog.at_level(logging.INFO, logger="gslb.state.sync"):
        asyncio.run(main())
    # A bug is not an outage: never "unreachable", and its traceback once, not once per poll.
    assert "unreachable" not in caplog.text
    bugs = [r for r in caplog.records if "unexpected error reading the state store" in r.getMessage()]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None and "bug in a store" in str(bugs[0].exc_info[1])


def test_a_bug_that_goes_away_is_logged_once_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    class SometimesBroken(MemoryStore):
        broken = True

        async def poll(self) -> Poll:
            if self.broken:
                raise KeyError("odd record")
            return await super().poll()

    async def main() -> None:
        store = SometimesBroken()
        async with HealthSync(store, poll_interval_s=0.01) as sync:
            await wait_until(lambda: sync.bugs >= 5)
            store.broken = False
            polls = sync.polls
            await wait_until(lambda: sync.polls >= polls + 5)

    with caplog.at_level(logging.INFO, logger="gslb.state.sync"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unexpected error reading the state store" in m for m in messages) == 1
    assert sum(m == "reading the state store works again" for m in messages) == 1


def test_staleness_lines_name_a_datacenter_not_thousands_and_forget_removed_probers() -> None:
    many = {f"www/ams/10.0.{i // 256}.{i % 256}": Health.DOWN for i in range(1000)}
    holding = Staleness(
        stale_since=MappingProxyType({"p1": 1005.0}),
        hold=Hold(since=1005.0, probers=("p1",), endpoints=MappingProxyType(many)),
    )
    line = staleness_change(Staleness(stale_since=MappingProxyType({})), holding, known={"p1"})
    assert line is not None
    level, text = line
    assert level == logging.WARNING
    assert "1000 endpoints held: www/ams/10.0.0.0 down, " in text
    assert text.endswith("and 980 more (gslb state --endpoints)")
    # The stale prober removed from the store (an audited remove_prober): not "fresh again".
    gone = staleness_change(holding, Staleness(stale_since=MappingProxyType({})), known=set())
    assert gone == (logging.INFO, "verdicts no longer held (held since 1970-01-01T00:16:45Z)")
    assert staleness_change(holding, holding, known={"p1"}) is None
