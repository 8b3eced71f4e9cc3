"""tcp checks and the prober against a real local listener that closes and reopens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import ip_address

import pytest

from gslb.config.model import Check, CheckKind, ProberConfig
from gslb.health.view import Health
from gslb.probe.checks import Checker
from gslb.probe.prober import Prober
from gslb.state.store import MemoryStore
from gslb.state.sync import HealthSync
from tests.redis_fixture import free_port
from tests.unit.probe.configs import config_with

pytestmark = pytest.mark.integration

LOCALHOST = ip_address("127.0.0.1")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def listen(port: int) -> asyncio.Server:
    return await asyncio.start_server(accept, "127.0.0.1", port, reuse_address=True)


def test_tcp_check() -> None:
    async def main() -> None:
        port = free_port()
        check = Check(kind=CheckKind.TCP, port=port)
        async with Checker() as checker:
            refused = await checker.run(check, LOCALHOST)
            assert not refused.ok and refused.detail == "connection refused"
            server = await listen(port)
            try:
                ok = await checker.run(check, LOCALHOST)
                assert ok.ok and ok.rtt_ms is not None and ok.detail == "connected"
            finally:
                server.close()
                await server.wait_closed()
            no_port = await checker.run(Check(kind=CheckKind.TCP), LOCALHOST)
            assert not no_port.ok and no_port.detail == "tcp check has no port"

    asyncio.run(main())


def test_prober_follows_a_listener() -> None:
    async def main() -> None:
        port = free_port()
        check = Check(kind=CheckKind.TCP, port=port, interval_s=0.05, timeout_s=0.5, rise=2, fall=2)
        config = config_with([("127.0.0.1", check)], prober=ProberConfig(heartbeat_interval_s=0.05))
        ep = config.endpoints()[0].id
        store = MemoryStore()
        server = await listen(port)
        async with HealthSync(store, poll_interval_s=0.05) as sync, Prober(config, store, "p1") as prober:
            await wait_until(lambda: prober.stats.checks >= 3)
            assert sync.current.health(ep) is Health.UP
            server.close()
            await server.wait_closed()
            await wait_until(lambda: sync.current.health(ep) is Health.DOWN)
            server = await listen(port)
            await wait_until(lambda: sync.current.health(ep) is Health.UP)
        server.close()
        await server.wait_closed()

    asyncio.run(main())
