"""RedisStore and HealthSync against a real redis-server: hints, polling, outages, Sentinel."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gslb.config.model import Check, ProberConfig, StateConfig
from gslb.errors import StateError
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.probe.prober import Prober
from gslb.state.redis_store import RedisStore, parse_sentinel_url
from gslb.state.snapshot_file import load_snapshot
from gslb.state.store import open_store
from gslb.state.sync import HealthSync
from tests.redis_fixture import REDIS_SERVER, RedisServer, free_port
from tests.unit.probe.configs import config_with

pytestmark = pytest.mark.integration

EP = "www/ams/192.0.2.1"
DOWN = EndpointState(health=Health.DOWN, fail_streak=3)
UP = EndpointState()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def test_key_layout(redis_server: RedisServer) -> None:
    async def main() -> None:
        store = RedisStore.from_url(redis_server.url, key_prefix="gslb")
        try:
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=1.0)
            await store.add_drain(Drain(DrainKind.REGION, "eu", "x", "ops", 2.0))
            client = store._client
            keys = sorted(await client.keys("*"))
            assert keys == [
                "{gslb}:audit",
                "{gslb}:drains",
                "{gslb}:health:p1",
                "{gslb}:probers",
                "{gslb}:states:p1",
                "{gslb}:version",
            ]
            assert await client.get("{gslb}:version") == "2"
            assert list(await client.hgetall("{gslb}:drains")) == ["region:eu"]
        finally:
            await store.aclose()

    asyncio.run(main())


def test_unreachable_redis_raises_state_error_quickly() -> None:
    async def main() -> None:
        store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        try:
            with pytest.raises(StateError, match="redis poll failed"):
                await store.poll()
            with pytest.raises(StateError):
                await store.write_states("p1", {EP: UP}, heartbeat_at=1.0)
            with pytest.raises(StateError):
                async with store.subscribe():
                    pass
        finally:
            await store.aclose()

    asyncio.run(main())


def test_change_propagates_via_pubsub(redis_server: RedisServer) -> None:
    async def main() -> None:
        writer = RedisStore.from_url(redis_server.url)
        reader = RedisStore.from_url(redis_server.url)
        try:
            await writer.write_states("p1", {EP: UP}, heartbeat_at=time.time())
            # Polling far beyond the test: only the published hint can wake the reader.
            async with HealthSync(reader, poll_interval_s=60.0) as sync:
                await asyncio.sleep(0.2)  # let the subscription settle
                await writer.write_states("p1", {EP: DOWN}, heartbeat_at=time.time())
                await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
                await writer.add_drain(Drain(DrainKind.DATACENTER, "ams", "x", "ops", time.time()))
                await wait_until(lambda: len(sync.current.drains) == 1)
        finally:
            await writer.aclose()
            await reader.aclose()

    asyncio.run(main())


def test_missed_message_is_recovered_by_poll(redis_server: RedisServer) -> None:
    async def main() -> None:
        store = RedisStore.from_url(redis_server.url)
        try:
            async with HealthSync(store, poll_interval_s=0.1) as sync:
                await store.write_states("p1", {EP: DOWN}, heartbeat_at=time.time(), publish=False)
                await wait_until(lambda: sync.current.health(EP) is Health.DOWN)
                await store.add_drain(Drain(DrainKind.REGION, "eu", "x", "ops", time.time()), publish=False)
                await wait_until(lambda: len(sync.current.drains) == 1)
        finally:
            await store.aclose()

    asyncio.run(main())


def test_redis_outage_keeps_view_and_converges_after_restart(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot_path = tmp_path / "state.json"

    async def main() -> None:
        writer = RedisStore.from_url(redis_server.url, timeout_s=0.2)
        reader = RedisStore.from_url(redis_server.url, timeout_s=0.2)
        try:
            beat = time.time()
            await writer.write_states("p1", {EP: DOWN}, heartbeat_at=beat)
            async with HealthSync(
                reader, poll_interval_s=0.1, stale_after_s=1.0, snapshot_path=snapshot_path
            ) as sync:
                assert sync.current.health(EP) is Health.DOWN
                redis_server.stop()
                await wait_until(lambda: not sync.connected)
                # every failed poll recomputes the view: wait for one made after the heartbeat
                # grew older than stale_after_s (a positive signal); nobody may turn stale
                await wait_until(lambda: time.time() > beat + 1.5)
                failed = sync.errors
                await wait_until(lambda: sync.errors > failed)
                assert sync.current.health(EP) is Health.DOWN
                assert sync.stale_probers == ()
                redis_server.start()  # empty: this Redis keeps nothing on disk
                await wait_until(lambda: sync.connected)
                await writer.write_states("p1", {EP: DOWN, "other": DOWN}, heartbeat_at=time.time())
                await wait_until(lambda: sync.current.health("other") is Health.DOWN)
                assert sync.current.health(EP) is Health.DOWN
        finally:
            await writer.aclose()
            await reader.aclose()

    with caplog.at_level(logging.WARNING, logger="gslb.state.sync"):
        asyncio.run(main())
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1
    saved = load_snapshot(snapshot_path)
    assert saved is not None and "other" in saved.probers["p1"].health


def test_cold_start_from_snapshot_with_redis_down(redis_server: RedisServer, tmp_path: Path) -> None:
    snapshot_path = tmp_path / "state.json"

    async def first_run() -> None:
        store = RedisStore.from_url(redis_server.url)
        try:
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=time.time())
            await store.add_drain(Drain(DrainKind.REGION, "eu", "maintenance", "ops", time.time()))
            async with HealthSync(store, snapshot_path=snapshot_path, poll_interval_s=0.05) as sync:
                await wait_until(lambda: load_snapshot(snapshot_path) is not None)
                assert sync.current.health(EP) is Health.DOWN
        finally:
            await store.aclose()

    async def second_run() -> None:
        store = RedisStore.from_url(redis_server.url, timeout_s=0.2)
        try:
            async with HealthSync(store, snapshot_path=snapshot_path, poll_interval_s=0.05) as sync:
                assert not sync.connected
                assert sync.current.health(EP) is Health.DOWN
                assert [d.target for d in sync.current.drains] == ["eu"]
        finally:
            await store.aclose()

    asyncio.run(first_run())
    redis_server.stop()
    asyncio.run(second_run())


def test_prober_rewrites_its_states_after_redis_loses_them(redis_server: RedisServer) -> None:
    config = config_with(
        [("192.0.2.1", Check(interval_s=60.0)), ("192.0.2.2", Check(interval_s=60.0))],
        state=StateConfig(redis_url=redis_server.url, redis_timeout_s=0.2),
        prober=ProberConfig(heartbeat_interval_s=0.05),
    )

    async def main() -> None:
        async with open_store(config.state) as store, Prober(config, store, "p1"):
            await wait_until(redis_server.ping)
            assert len((await store.snapshot(now=time.time(), details=True)).probers["p1"].states) == 2
            redis_server.stop()
            await asyncio.sleep(0.3)
            redis_server.start()

            async def states() -> int:
                try:
                    snap = await store.snapshot(now=time.time(), details=True)
                except StateError:
                    return 0
                report = snap.probers.get("p1")
                return 0 if report is None else len(report.states)

            async with asyncio.timeout(10):
                while await states() != 2:
                    await asyncio.sleep(0.05)

    asyncio.run(main())


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
    )
    process = subprocess.Popen(
        [REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"SENTINEL get-master-addr-by-name mymaster\r\n")
                    if str(redis_server.port).encode() in s.recv(256):
                        break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("redis sentinel did not start")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_sentinel_url(sentinel: int) -> None:
    async def main() -> None:
        url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster"
        async with open_store(StateConfig(redis_url=url)) as store:
            await store.write_states("p1", {EP: DOWN}, heartbeat_at=1.0)
            snap = await store.snapshot(now=2.0, details=True)
            assert snap.probers["p1"].states[EP] == DOWN

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://h1:26379/mymaster", ([("h1", 26379)], "mymaster", 0, None, None)),
        (
            "redis+sentinel://:s3cret@h1:1,h2:2/svc/3?sentinel_password=x",
            ([("h1", 1), ("h2", 2)], "svc", 3, "s3cret", "x"),
        ),
        ("redis+sentinel://[::1]:26379/m", ([("::1", 26379)], "m", 0, None, None)),
    ],
)
def test_parse_sentinel_url(
    url: str, expected: tuple[list[tuple[str, int]], str, int, str | None, str | None]
) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1/m",
        "redis+sentinel://h1:1/",
        "redis+sentinel://:pw@h1:x/m",
        "redis+sentinel://h:1/m/x",
    ],
)
def test_bad_sentinel_url(url: str) -> None:
    with pytest.raises(StateError) as info:
        parse_sentinel_url(url)
    assert "pw" not in str(info.value)
