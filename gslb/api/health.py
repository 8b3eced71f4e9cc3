"""`/healthz` and `/readyz` on a responder's metrics listener (`server.metrics_listen`).

Adapter layer (aiohttp server). `/healthz` answers 200 "ok" whenever the event loop runs
(liveness: a stuck loop cannot answer). `/readyz` answers 200 "ready" or 503 with one line,
"not ready: <reason>", as decided by `gslb.nodehealth.decide` from the facts gathered here;
with `?format=json` or `Accept: application/json` it gives every condition as JSON (what
`gslb healthcheck` reads). No tokens: these say nothing an anycast neighbour cannot see.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from gslb.api.context import ApiContext
from gslb.nodehealth import NodeFacts, NodeStatus, Readiness, decide
from gslb.zone.zone import Zone


def node_facts(context: ApiContext, node: NodeStatus, *, now: float) -> NodeFacts:
    """What the responder knows about itself at `now`."""
    parts = context.parts()
    sync = context.sync
    embedded = parts.config.state.redis_url is None
    loaded = sum(1 for zone in parts.config.zones if _loaded(parts.find_zone(zone.origin), zone.origin))
    synced = sync.last_sync_at is not None
    # Never read from the store but holding a snapshot: the one loaded from disk at start.
    snapshot_loaded = not synced and sync.snapshot.read_at > 0
    if synced:
        age: float | None = max(0.0, now - (sync.last_sync_at or now))
    elif snapshot_loaded:
        age = max(0.0, now - sync.snapshot.read_at)
    else:
        age = None
    return NodeFacts(
        listening=node.listening,
        draining=node.draining,
        zones_configured=len(parts.config.zones),
        zones_loaded=loaded,
        embedded=embedded,
        synced=synced,
        snapshot_loaded=snapshot_loaded,
        connected=sync.connected,
        state_age_s=age,
    )


def _loaded(zone: Zone | None, origin: str) -> bool:
    return zone is not None and zone.origin_text.lower().rstrip(".") == origin.lower().rstrip(".")


def readiness(context: ApiContext, node: NodeStatus, *, now: float) -> Readiness:
    facts = node_facts(context, node, now=now)
    return decide(facts, max_state_age_s=context.parts().config.server.max_state_age_s)


def add_health_routes(
    app: web.Application,
    context: ApiContext,
    node: NodeStatus,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Add `GET /healthz` and `GET /readyz` to `app`."""

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})

    async def readyz(request: web.Request) -> web.StreamResponse:
        verdict = readiness(context, node, now=clock())
        status = 200 if verdict.ready else 503
        headers = {"Cache-Control": "no-store"}
        wants_json = request.query.get("format") == "json" or "application/json" in request.headers.get(
            "Accept", ""
        )
        if wants_json:
            return web.json_response(verdict.to_json(), status=status, headers=headers)
        return web.Response(text=verdict.line + "\n", status=status, headers=headers)

    app.router.add_route("GET", "/healthz", healthz)
    app.router.add_route("GET", "/readyz", readyz)
