"""Load figures and latency costs from a real aiohttp server, through real probers and a real
store (memory and redis-server), out as `HealthView.loads` and `.costs`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest
from aiohttp import web

from gslb.config.model import Check, CheckKind, Config, ProberConfig, StateConfig
from gslb.health.quorum import combine
from gslb.health.view import Health, HealthView
from gslb.probe.prober import Prober
from gslb.state.store import Store, open_store
from tests.redis_fixture import RedisServer, free_port
from tests.unit.probe.configs import config_with

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0


@dataclass
class Figures:
    """What the test server reports, changeable while it runs."""

    json_load: object = 0.25
    header_load: str | None = "3"
    delay_s: float = 0.0


class LoadServer:
    """`/json` answers {"stats": {"load": ...}}; `/header` answers with an X-Load header."""

    def __init__(self, figures: Figures, port: int) -> None:
        self.figures = figures
        self.port = port
        self.runner: web.AppRunner | None = None

    async def json_handler(self, request: web.Request) -> web.Response:
        if self.figures.delay_s:
            await asyncio.sleep(self.figures.delay_s)
        return web.Response(
            text=json.dumps({"status": "ok", "stats": {"load": self.figures.json_load}}),
            content_type="application/json",
        )

    async def header_handler(self, request: web.Request) -> web.Response:
        headers = {} if self.figures.header_load is None else {"x-load": self.figures.header_load}
        return web.Response(text="ok", headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/json", self.json_handler)
        app.router.add_get("/header", self.header_handler)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@asynccontextmanager
async def serving(figures: Figures) -> AsyncIterator[LoadServer]:
    server = LoadServer(figures, free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def load_config(port: int, state: StateConfig) -> Config:
    base = Check(kind=CheckKind.HTTP, port=port, interval_s=0.05, timeout_s=TIMEOUT_S)
    by_field = replace(base, path="/json", load_field="stats.load")
    by_header = replace(base, path="/header", load_header="X-Load")
    return config_with(
        [("127.0.0.1", by_field), ("127.0.0.1", by_header)],
        state=state,
        prober=ProberConfig(heartbeat_interval_s=0.05),
    )


async def wait_for_view(
    store: Store, predicate: Callable[[HealthView], bool], timeout_s: float = 10.0
) -> HealthView:
    """Read the store with details and combine it, until the view says what we wait for."""
    async with asyncio.timeout(timeout_s):
        while True:
            now = time.time()
            view = combine(await store.snapshot(now=now, details=True), now=now, stale_after_s=5.0)
            if predicate(view):
                return view
            await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "redis"])
def state_config(request: pytest.FixtureRequest) -> StateConfig:
    if request.param == "memory":
        return StateConfig()
    server: RedisServer = request.getfixturevalue("redis_server")
    return StateConfig(redis_url=server.url)


def test_loads_and_costs_reach_the_view(state_config: StateConfig) -> None:
    async def main() -> None:
        figures = Figures()
        async with serving(figures) as server, open_store(state_config) as store:
            config = load_config(server.port, state_config)
            by_field, by_header = (e.id for e in config.endpoints())
            async with Prober(config, store, "p1") as p1, Prober(config, store, "p2"):
                # Both figures, from two fresh probers (the median of equal figures).
                view = await wait_for_view(store, lambda v: dict(v.loads) == {by_field: 0.25, by_header: 3.0})
                assert set(view.costs) == {by_field, by_header}
                assert all(0.0 < cost < TIMEOUT_S * 1000.0 for cost in view.costs.values())

                # A new figure, and one that is not a number: no figure, but the check passes.
                figures.json_load, figures.header_load = 0.75, "busy"
                await wait_for_view(store, lambda v: dict(v.loads) == {by_field: 0.75})
                assert p1.states[by_header].health is Health.UP
                assert p1.states[by_header].last_ok is True
                assert (
                    p1.states[by_header].detail
                    == "HTTP 200, no load figure: header X-Load is not a number: 'busy'"
                )

                figures.json_load, figures.header_load = {"nested": 1}, None
                await wait_for_view(store, lambda v: dict(v.loads) == {})
                assert p1.states[by_field].last_ok is True
                assert p1.states[by_field].detail.startswith("HTTP 200, no load figure: field stats.load")
                assert p1.states[by_header].detail == "HTTP 200, no load figure: header X-Load missing"

                # A slow answer is a peak: the cost jumps to at least the delay at once.
                figures.json_load, figures.delay_s = 1, 0.3
                view = await wait_for_view(store, lambda v: v.costs.get(by_field, 0.0) >= 300.0)
                assert view.loads[by_field] == 1.0

                # A failing endpoint costs a full timeout, and reports no load.
                figures.delay_s = 0.0
                await server.stop()
                view = await wait_for_view(
                    store, lambda v: dict(v.costs) == {by_field: 1000.0, by_header: 1000.0}
                )
                assert dict(view.loads) == {}

    asyncio.run(main())
