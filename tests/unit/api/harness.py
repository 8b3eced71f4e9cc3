"""An in-process api over a MemoryStore and a live responder, for the api's unit tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import dns.edns
import dns.message
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gslb.api.app import HTTP_LOG, STATE, ApiState, build_app
from gslb.api.auth import Tokens
from gslb.api.context import ApiContext
from gslb.config.model import ApiConfig, Config
from gslb.responder import Responder
from gslb.state.store import MemoryStore
from gslb.state.sync import HealthSync

READ = "gslb_read_" + "r" * 32
OPERATE = "gslb_operate_" + "o" * 32
ENV = {"GSLB_API_TOKENS": f"reader:read:{READ},operator:operate:{OPERATE}"}
EUROPE_ECS = "89.160.20.112/28"  # Linköping in MaxMind's test database: nearest is ams
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}
SIN = {"203.0.113.10", "203.0.113.11"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Harness:
    client: TestClient[Any, Any]
    store: MemoryStore
    sync: HealthSync
    responder: Responder

    @property
    def api_state(self) -> ApiState:
        """What the api's handlers share (its collector, its log rates)."""
        app: web.Application | None = self.client.app
        assert app is not None
        return app[STATE]

    def answer(
        self, ecs: str = EUROPE_ECS, name: str = "www.gslb.example.com", rdtype: str = "A"
    ) -> set[str]:
        """What the responder in this process answers now (straight through the handler)."""
        address, prefix = ecs.split("/")
        query = dns.message.make_query(
            name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))]
        )
        wire = self.responder.parts.handler.handle(query.to_wire(), "127.0.0.1")
        assert wire is not None
        reply = dns.message.from_wire(wire)
        return {
            r.to_text() for rrset in reply.answer for r in rrset if rrset.rdtype == query.question[0].rdtype
        }

    async def post(self, path: str, body: object = None, token: str | None = OPERATE) -> tuple[int, Any]:
        headers = auth(token) if token else {}
        response = await self.client.post(path, json=body, headers=headers)
        return response.status, await response.json()

    async def get(self, path: str, token: str | None = READ) -> tuple[int, Any]:
        response = await self.client.get(path, headers=auth(token) if token else {})
        return response.status, await response.json()


@asynccontextmanager
async def running(
    config: Config,
    *,
    settings: ApiConfig | None = None,
    env: dict[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Harness]:
    store = MemoryStore()
    responder = Responder(config)
    settings = settings or config.api
    async with HealthSync.from_config(store, config, on_change=responder.apply_view) as sync:
        responder.apply_view(sync.current)
        context = ApiContext(lambda: responder.parts, store, sync, None, responder_local=True)
        app = build_app(
            settings, context, Tokens(settings.tokens_file, ENV if env is None else env), clock=clock
        )
        server = TestServer(app)
        await server.start_server(logger=HTTP_LOG)  # as gslb.api.server runs it
        async with TestClient(server) as client:
            yield Harness(client, store, sync, responder)
