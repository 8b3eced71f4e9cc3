"""`p2c_ewma` and `least_load` end to end: real http endpoints, the embedded prober's checks,
the health sync's figures, and the answers of a running `gslb serve` over UDP.

Two endpoints of one datacenter are two aiohttp servers on loopback addresses. With two
endpoints p2c always draws both, so the cheaper one answers every time once the probes'
costs reach the view (without them both cost the same and the first drawn wins: half the
answers each). least_load answers the endpoint whose check reports the lower figure, and
follows the figures when they change.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import dns.message
import dns.query
import pytest
from aiohttp import web

from tests.server_fixture import GslbProcess, free_ports, start_gslb

pytestmark = pytest.mark.integration

FAST, SLOW = "127.0.0.61", "127.0.0.62"

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  rrl: {{enabled: false}}
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
geoip:
  database: {geoip}/GeoIP2-City-Test.mmdb
services:
  p2c.gslb.example.com:
    ttl: 1
    pick: {{policy: p2c_ewma, max_records: 1, ewma_tau_s: 1}}
    check: {{type: http, port: HTTP_PORT, path: /slow-or-fast, interval_s: 0.5, timeout_s: 0.5}}
    datacenters:
      ams: [FAST, SLOW]
  load.gslb.example.com:
    ttl: 1
    pick: {{policy: least_load, max_records: 1}}
    check: {{type: http, port: HTTP_PORT, path: /load, interval_s: 0.5, timeout_s: 0.5, load_header: X-Load}}
    datacenters:
      ams: [FAST, SLOW]
"""


class Endpoints:
    """One aiohttp app on FAST and SLOW: /slow-or-fast answers SLOW after 150 ms, /load
    reports each address's figure in X-Load."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loads = {FAST: 0.9, SLOW: 0.1}
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def slow_or_fast(self, request: web.Request) -> web.Response:
        if request.transport is not None and request.transport.get_extra_info("sockname")[0] == SLOW:
            await asyncio.sleep(0.15)
        return web.Response(text="ok")

    async def load(self, request: web.Request) -> web.Response:
        address = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        return web.Response(text="ok", headers={"X-Load": str(self.loads.get(address, 0.5))})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/slow-or-fast", self.slow_or_fast)
        app.router.add_get("/load", self.load)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        for address in (FAST, SLOW):
            await web.TCPSite(self.runner, address, self.port).start()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    (port,) = free_ports(1)
    served = Endpoints(port)
    served.start()
    yield served
    served.stop()


@pytest.fixture
def server(tmp_path: object, endpoints: Endpoints) -> Iterator[GslbProcess]:
    text = CONFIG.replace("HTTP_PORT", str(endpoints.port)).replace("FAST", FAST).replace("SLOW", SLOW)
    process = start_gslb(tmp_path, text)  # type: ignore[arg-type]
    yield process
    process.stop()


def answer(server: GslbProcess, name: str) -> str:
    host, port = server.address
    reply = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=2)
    (rrset,) = reply.answer
    (record,) = rrset
    return str(record)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 45.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def only(server: GslbProcess, name: str, address: str, times: int = 30) -> bool:
    return all(answer(server, name) == address for _ in range(times))


def test_p2c_answers_the_endpoint_with_the_lower_latency_cost(server: GslbProcess) -> None:
    # Both drawn every time: once the costs are in the view, only FAST answers (30 in a row;
    # without costs each answer is a coin flip).
    wait_until(lambda: only(server, "p2c.gslb.example.com", FAST), "p2c to answer only the fast endpoint")


def test_least_load_follows_the_load_figures(server: GslbProcess, endpoints: Endpoints) -> None:
    wait_until(lambda: only(server, "load.gslb.example.com", SLOW), "the less loaded endpoint (SLOW, 0.1)")
    endpoints.loads = {FAST: 0.2, SLOW: 0.8}
    wait_until(lambda: only(server, "load.gslb.example.com", FAST), "the answer to follow the new figures")
