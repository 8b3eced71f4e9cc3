"""The aiohttp application of the ops api: routes, JSON errors, auth, drains, state, metrics.

Adapter layer: the aiohttp server lives here and in `gslb.api.server` only. Every route is
in `routes()` with the role it needs (`None`: open); the OpenAPI spec (`gslb.api.openapi`)
describes the same table and a test holds them equal. Every error, including unknown routes,
wrong methods, bad JSON and failures of the state store, is a JSON body
`{"error": CODE, "message": TEXT, ...}`.

Drains are serialised by one lock (the 409 rule reads the drains in force, then writes), go
to the store (which audits them and bumps the version that every responder follows), and
are answered once this process's own health sync has seen the new version (embedded mode:
the responder in this process answers accordingly by then). Nothing is logged per request
except drains and undrains, at INFO.

No input reaches a 500 or floods the log: every string from a request is checked as text
(`gslb.api.inputs`), and what anyone can cause at line rate (failed authentication, requests
aiohttp cannot parse, a failing store, a bug) is logged through `gslb.lograte`: the first in
full, the rest as one count per 10 s. Only the store's own error (`StateError`, or our
timeout) is a 503; anything else is a bug: 500, with its traceback logged once per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from gslb.api import audit
from gslb.api.audit import AuditFile, AuditRecord, iso, who
from gslb.api.auth import Caller, Tokens, authenticate
from gslb.api.context import ApiContext
from gslb.api.drains import (
    DrainRequest,
    Impact,
    check_target,
    covers,
    impact,
    parse_drain_body,
    parse_undrain_body,
    previously_empty,
    refusal,
)
from gslb.api.health import add_health_routes
from gslb.api.inputs import RequestProblem, check_text, json_text
from gslb.api.metrics import GslbCollector, registry_for
from gslb.api.openapi import spec
from gslb.api.report import SyncInfo, add_fleet, applied_split, build_state, drain_json
from gslb.api.tokens import Role
from gslb.api.traffic import TRAFFIC, TrafficHistory, sampling
from gslb.config.model import ApiConfig, Config
from gslb.errors import StateError
from gslb.explain import explain, render
from gslb.health.snapshot import Snapshot
from gslb.health.view import Drain, DrainKind
from gslb.lograte import LogRate, bug_kind, describe, printable
from gslb.nodehealth import NodeStatus
from gslb.state.record import AuditAction, AuditEntry
from gslb.state.responders import ResponderRecord
from gslb.zone import name as dnsname

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
MAX_BODY = 64 * 1024
MAX_QUERY_NAME = 1024  # a DNS name in presentation form, escapes included
MAX_PARAM = 64  # client, ecs, type, limit
STORE_FAILED = "store_unavailable"
DETAILS_MAX_AGE_S = 1.0
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request, "Caller | None"], Awaitable[web.StreamResponse]]
"""A route's handler gets the authenticated caller (None on open routes)."""


@dataclass
class ApiState:
    """What the handlers share, besides the context: tokens, audit file, metrics, a clock."""

    settings: ApiConfig
    context: ApiContext
    tokens: Tokens
    audit_file: AuditFile
    collector: GslbCollector
    registry: CollectorRegistry
    clock: Callable[[], float]
    drain_lock: asyncio.Lock
    bugs: LogRate
    auth_failures: LogRate
    forbidden: LogRate
    store_failures: LogRate
    details: Snapshot | None = None
    details_at: float = 0.0
    responders: tuple[ResponderRecord, ...] | None = None
    responders_at: float = 0.0

    @property
    def config(self) -> Config:
        return self.context.parts().config

    @property
    def timeout_s(self) -> float:
        return max(1.0, self.config.state.redis_timeout_s * 4)


STATE = web.AppKey("state", ApiState)


# -- plumbing -----------------------------------------------------------------------------------


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json_text(data, indent=1),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_response(problem: RequestProblem) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="gslb"'} if problem.status == 401 else None
    body = {"error": problem.code, "message": problem.message, **problem.extra}
    return json_response(body, problem.status, headers)


_SLUGS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def json_errors(bugs: LogRate) -> Middleware:
    """Every error as JSON; a bug is a 500 with its traceback logged once per kind (`bugs`)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestProblem as problem:
            return problem_response(problem)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = _SLUGS.get(e.status, e.reason.lower().replace(" ", "_"))
            path = printable(request.path)
            message = {
                404: f"no such route: {request.method} {path} (see /v1/openapi.json)",
                405: f"{request.method} is not allowed on {path}",
            }.get(e.status, e.text or e.reason)
            headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            return json_response({"error": code, "message": message}, e.status, headers)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            what = f"{request.method} {printable(request.path)}"
            if bugs.first(f"{what}: {describe(e)}", bug_kind(e)):
                log.exception("api bug in %s (the same bug again is counted, not logged)", what)
            return json_response({"error": "internal", "message": "internal error (logged)"}, 500)

    return middleware


class _HttpErrors(logging.Filter):
    """aiohttp's own error lines for requests that never reach a handler. Bytes that are not
    HTTP (a control character in a header, a bad request line) are the client's fault: one
    line without a traceback, rate-limited. Anything else keeps its traceback, once per kind."""

    def __init__(self) -> None:
        super().__init__()
        self.malformed = LogRate(HTTP_LOG, "malformed HTTP requests")
        self.errors = LogRate(HTTP_LOG, "errors handling requests", level=logging.ERROR)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        if isinstance(exc, HttpProcessingError):
            first_line = printable(str(exc.message).strip().split("\n", 1)[0], 120)
            if not self.malformed.first(f"from {remote}: {first_line}"):
                return False
            record.msg = "malformed HTTP request from %s: %s (more are counted)"
            record.args = (remote, first_line)
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.WARNING:  # aiohttp logs a first non-HTTP request at DEBUG
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        if record.levelno < logging.ERROR:
            return True
        return self.errors.first(f"from {remote}: {describe(exc)}", bug_kind(exc))


HTTP_LOG = logging.getLogger("gslb.api.http")
"""The logger the api's HTTP servers hand aiohttp (`web.AppRunner(..., logger=HTTP_LOG)`)."""
HTTP_ERRORS = _HttpErrors()
HTTP_LOG.addFilter(HTTP_ERRORS)


def flush_on_cleanup(app: web.Application, *rates: LogRate) -> None:
    """Log what `rates` counted when the app stops, so that the last burst is not lost."""

    async def flush(app: web.Application) -> None:
        for rate in (*rates, HTTP_ERRORS.malformed, HTTP_ERRORS.errors):
            rate.flush()

    app.on_cleanup.append(flush)


def requires(role: Role | None, handler: RouteHandler) -> Handler:
    """The aiohttp handler: check the token for `role` (None: open), then call `handler`."""

    async def checked(request: web.Request) -> web.StreamResponse:
        if role is None:
            return await handler(request, None)
        state = request.app[STATE]
        try:
            caller = authenticate(request, state.tokens.current(), role)
        except RequestProblem as problem:
            # No token in the log line, ever: only the route, the source and the outcome. Anyone
            # can send these at line rate: the first in full, then a count every 10 s.
            what = f"{request.method} {printable(request.path, 100)} from {request.remote}"
            rate = state.forbidden if problem.status == 403 else state.auth_failures
            if rate.first(what):
                log.warning("refused %s: %s (more are counted)", what, problem.code)
            raise
        return await handler(request, caller)

    checked.__name__ = getattr(handler, "__name__", "handler")
    return checked


async def read_json(request: web.Request, *, required: bool) -> Any:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise RequestProblem(400, "bad_body", 'a JSON body is required, e.g. {"reason": "..."}')
        return None
    try:
        return json.loads(raw)
    # ValueError: bad JSON, not UTF-8, or an integer over 4300 digits; RecursionError: [[[[...
    except (ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else printable(str(e), 200)
        raise RequestProblem(400, "bad_json", f"the body is not valid JSON: {detail}") from None


@contextlib.asynccontextmanager
async def store_call(state: ApiState, what: str, *, writing: bool = False) -> AsyncIterator[None]:
    """Map a slow or failing state store (its `StateError`, or our timeout) to 503, with one
    log line without traceback (rate-limited). Anything else is a bug and goes on up."""
    try:
        async with asyncio.timeout(state.timeout_s):
            yield
    except (StateError, TimeoutError) as e:
        text = describe(e) if isinstance(e, StateError) else f"no answer within {state.timeout_s:g} s"
        if state.store_failures.first(f"{what}: {text}"):
            log.warning("state store failed during %s: %s (more are counted)", what, text)
        # A write that timed out may still have happened: say so rather than guess.
        outcome = "it may or may not have been stored: check gslb state" if writing else "nothing was changed"
        raise RequestProblem(
            503, STORE_FAILED, f"the state store is unavailable ({what}); {outcome}"
        ) from None


async def detailed_snapshot(state: ApiState) -> Snapshot | None:
    """The store's snapshot with per-prober details, at most DETAILS_MAX_AGE_S old; None if the
    store cannot be read (the caller falls back to the health sync's picture)."""
    now = state.clock()
    if state.details is not None and now - state.details_at < DETAILS_MAX_AGE_S:
        return state.details
    try:
        async with asyncio.timeout(state.timeout_s):
            details = await state.context.store.snapshot(now=now, details=True)
    except (StateError, TimeoutError) as e:
        log.debug("no detailed snapshot: %s", describe(e))
        return None
    except Exception as e:
        # A bug: the page still shows the health sync's picture, and the traceback is logged once.
        if state.bugs.first(f"reading the detailed snapshot: {describe(e)}", bug_kind(e)):
            log.exception("api bug reading the detailed snapshot (the same bug again is counted)")
        return None
    state.details, state.details_at = details, now
    return details


async def fleet_records(state: ApiState, *, fresh: bool = False) -> tuple[ResponderRecord, ...] | None:
    """Every responder's registration, at most DETAILS_MAX_AGE_S old (`fresh`: read now);
    None if the store cannot be read (the fleet is then shown as unknown)."""
    now = state.clock()
    if not fresh and state.responders is not None and now - state.responders_at < DETAILS_MAX_AGE_S:
        return state.responders
    try:
        async with asyncio.timeout(state.timeout_s):
            records = await state.context.store.responders()
    except (StateError, TimeoutError) as e:
        log.debug("no responder records: %s", describe(e))
        return None
    except Exception as e:
        if state.bugs.first(f"reading the responders: {describe(e)}", bug_kind(e)):
            log.exception("api bug reading the responders (the same bug again is counted)")
        return None
    state.responders, state.responders_at = records, now
    return records


def sync_info(state: ApiState, details: bool) -> SyncInfo:
    sync = state.context.sync
    return SyncInfo(
        mode="embedded" if state.context.responder_local else "distributed",
        connected=sync.connected,
        last_sync_at=sync.last_sync_at,
        store_version=sync.store_version,
        view_version=sync.current.version,
        stale_probers=sync.stale_probers,
        poll_interval_s=state.config.state.poll_interval_s,
        details=details,
    )


# -- read routes ------------------------------------------------------------------------------


async def get_state(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    state = request.app[STATE]
    details = await detailed_snapshot(state)
    records = await fleet_records(state)
    sync = state.context.sync
    now = state.clock()
    body = build_state(
        state.config,
        sync.current,
        sync.snapshot,
        details,
        sync_info(state, details is not None),
        now=now,
    )
    poll = state.config.state.poll_interval_s
    add_fleet(body, records, sync.current.drains, now=now, poll_interval_s=poll)
    return json_response(body)


async def get_traffic(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    """Answers per second by datacenter and responder over the last 15 minutes (`gslb.api.traffic`)."""
    state = request.app[STATE]
    records = await fleet_records(state)
    return json_response(request.app[TRAFFIC].to_json(state.config, records, now=state.clock()))


async def get_explain(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    state = request.app[STATE]
    query = request.query
    name = check_text(query.get("name", ""), "name", max_length=MAX_QUERY_NAME).strip()
    if not name:
        raise RequestProblem(
            400, "bad_value", "name is required, e.g. ?name=www.gslb.example.com", field="name"
        )
    try:
        dnsname.from_text(name.rstrip(".") + ".")
    except ValueError as e:
        raise RequestProblem(400, "bad_value", f"name is not a DNS name: {e}", field="name") from None
    client = check_text(query.get("client", ""), "client", max_length=MAX_PARAM)
    client = client or request.remote or "127.0.0.1"
    try:
        ip_address(client)
    except ValueError:
        raise RequestProblem(
            400, "bad_value", f'client "{client}" is not an IP address', field="client"
        ) from None
    ecs = check_text(query.get("ecs", ""), "ecs", max_length=MAX_PARAM) or None
    if ecs is not None:
        try:
            ip_network(ecs, strict=False)
        except ValueError:
            raise RequestProblem(
                400, "bad_value", f'ecs "{ecs}" is not a network like 193.0.14.0/24', field="ecs"
            ) from None
    qtype = check_text(query.get("type", "A"), "type", max_length=MAX_PARAM).upper()
    if qtype not in ("A", "AAAA"):
        raise RequestProblem(400, "bad_value", f'type "{qtype}" is not A or AAAA', field="type")
    sync = state.context.sync
    version = sync.store_version
    result = explain(
        state.context.parts(), sync.current, name, client, ecs=ecs, qtype=qtype, state_version=version
    )
    return json_response({**result.to_json(), "text": render(result)})


async def get_audit(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    state = request.app[STATE]
    text = check_text(request.query.get("limit", "100"), "limit", max_length=MAX_PARAM)
    limit = int(text) if text.isascii() and text.isdigit() else -1
    if not 1 <= limit <= 1000:
        raise RequestProblem(
            400, "bad_value", f'limit "{text}" is not a number from 1 to 1000', field="limit"
        )
    async with store_call(state, "reading the audit"):
        entries = await state.context.store.recent_audit(limit)
    return json_response({"entries": [audit.entry_json(e) for e in entries]})


async def get_whoami(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    assert caller is not None
    return json_response({"token": caller.name, "role": caller.role.value, "source": caller.source})


async def get_metrics(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    state = request.app[STATE]
    state.collector.details = await detailed_snapshot(state)
    state.collector.responders = await fleet_records(state)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(state.registry)
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


async def get_openapi(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    return json_response(spec())


async def get_page(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    return _static_file("index.html")


async def get_static(request: web.Request, caller: Caller | None) -> web.StreamResponse:
    return _static_file(request.match_info["name"])


def _static_file(name: str) -> web.StreamResponse:
    if not name.isascii() or not name.isprintable():
        raise web.HTTPNotFound()
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    # Only plain files directly in static/ with a known type: no path tricks possible.
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if kind == "text/html":
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
    return web.Response(body=path.read_bytes(), content_type=kind, headers=headers)


# -- drains -----------------------------------------------------------------------------------


def _target(request: web.Request, kind: DrainKind) -> str:
    return request.match_info["name"] if kind is not DrainKind.ENDPOINT else request.match_info["id"]


async def _wait_applied(state: ApiState, version: int) -> float | None:
    """When this process's health sync has the new version (None: not within the wait)."""
    sync = state.context.sync
    sync.wake()
    deadline = time.monotonic() + max(2.0, 2 * state.config.state.poll_interval_s)
    while sync.store_version < version:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.005)
    return state.clock()


async def _wait_responders(state: ApiState, version: int) -> tuple[dict[str, Any] | None, float | None]:
    """Which responders answer from `version` on (their registrations say so within
    milliseconds of applying it): waits until none is pending, for at most about one poll
    interval and a heartbeat. Also when the last of them applied it, if every live responder
    did and none is silent. (None, None) when the store cannot tell."""
    deadline = time.monotonic() + state.config.state.poll_interval_s + 1.0
    while True:
        records = await fleet_records(state, fresh=True)
        if records is None:
            return None, None
        split = applied_split(records, version, now=state.clock())
        if not split["pending"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    applied = {a["id"] for a in split["applied"]}
    times = [r.state_applied_at for r in records if r.id in applied]
    everyone = applied and not split["pending"] and not split["not_reporting"]
    if not everyone or any(t is None for t in times):
        return split, None
    return split, max(t for t in times if t is not None)


def _timing(
    state: ApiState,
    written_at: float,
    applied_at: float | None,
    ttl: int,
    version: int,
    *,
    fleet: tuple[dict[str, Any] | None, float | None] = (None, None),
) -> dict[str, Any]:
    """When the change holds everywhere, and when resolver caches have let go of the old answers.

    `responders_by` is reported (`responders_reported`: true) when every live responder has
    said it applies the version; otherwise it is predicted from the poll interval."""
    poll = state.config.state.poll_interval_s
    # Embedded: the only responder is this process, and it has applied the change already.
    local = state.context.responder_local and applied_at is not None
    responders_by = applied_at if local and applied_at is not None else written_at + poll
    responders, reported_by = fleet
    if reported_by is not None:
        responders_by = reported_by
    return {
        "state_version": version,
        "effective_at": iso(written_at),
        "responders_by": iso(responders_by),
        "responders_reported": reported_by is not None,
        "responders": responders,
        "caches_clear_by": iso(responders_by + ttl),
        "caches_clear_in_s": round(responders_by + ttl - state.clock(), 3),
        "ttl": ttl,
    }


async def _audit_unapplied(
    state: ApiState,
    caller: Caller,
    action: AuditAction,
    target: str,
    *,
    reason: str,
    result: str,
    detail: str,
) -> None:
    """Audit a request that changed nothing (refused, or nothing to undrain): in the file
    first, which holds it even when the store is down, then in the store."""
    now = state.clock()
    await state.audit_file.append(
        AuditRecord(now, caller.name, caller.source, action.value, target, reason, result, detail=detail)
    )
    entry = AuditEntry(
        now, who(caller.name, caller.source), action, target, reason, f"result={result}; {detail}"
    )
    with contextlib.suppress(RequestProblem):
        async with store_call(state, "auditing"):
            await state.context.store.append_audit(entry)


async def _audit_failed(
    state: ApiState, caller: Caller, action: AuditAction, target: str, *, reason: str, error: Exception
) -> None:
    """Audit, in the file only, a drain or undrain the store could not take (or a bug stopped):
    the store cannot hold it, and who tried what, when, is worth keeping all the same."""
    if isinstance(error, RequestProblem):
        if error.status != 503:
            return  # refusals are audited where they are made; other 4xx are bad requests
        result, detail = STORE_FAILED, error.message
    else:
        result, detail = "error", f"internal error: {type(error).__name__}"
    await state.audit_file.append(
        AuditRecord(
            state.clock(), caller.name, caller.source, action.value, target, reason, result, detail=detail
        )
    )


def drain_handler(kind: DrainKind) -> RouteHandler:
    async def drain(request: web.Request, caller: Caller | None) -> web.StreamResponse:
        assert caller is not None  # an operate route
        state = request.app[STATE]
        target = _target(request, kind)
        body = parse_drain_body(await read_json(request, required=True))
        config = state.config
        check_target(config, kind, target)
        key = f"{kind.value}:{target}"
        try:
            drain, effect, replaced, version, written_at = await _apply_drain(
                state, caller, kind, target, body
            )
        except Exception as e:
            await _audit_failed(state, caller, AuditAction.DRAIN, key, reason=body.reason, error=e)
            raise
        applied_at = await _wait_applied(state, version)
        fleet = await _wait_responders(state, version)
        state.collector.api_requests[("drain", "applied")] += 1
        expiry = f", expires {iso(drain.expires_at)}" if drain.expires_at else ""
        forced = " (forced: leaves nothing to answer)" if effect.emptied else ""
        log.info(
            "drained %s by %s: %r%s%s; state version %d",
            key,
            drain.who,
            drain.reason,
            expiry,
            forced,
            version,
        )
        await state.audit_file.append(
            AuditRecord(
                written_at,
                caller.name,
                caller.source,
                "drain",
                key,
                drain.reason,
                "applied",
                version=version,
                expires_at=drain.expires_at,
                detail="forced" if effect.emptied else "",
            )
        )
        body_out = {
            "action": "drain",
            "target": {"kind": kind.value, "name": target},
            "drain": drain_json(drain),
            "replaced": drain_json(replaced) if replaced else None,
            "forced": bool(effect.emptied),
            "emptied": [{"service": e.service, "family": e.family} for e in effect.emptied],
            "affected_services": list(effect.services),
            "affected_datacenters": list(effect.datacenters),
            "affected_endpoints": effect.endpoints,
            **_timing(state, written_at, applied_at, effect.max_ttl(config), version, fleet=fleet),
        }
        return json_response(body_out)

    drain.__name__ = f"drain_{kind.value}"
    return drain


async def _apply_drain(
    state: ApiState, caller: Caller, kind: DrainKind, target: str, body: DrainRequest
) -> tuple[Drain, Impact, Drain | None, int, float]:
    """Under the drain lock: refuse (409, audited) or write the drain; (drain, its impact, the
    drain it replaced, the store version, when it was written)."""
    config = state.config
    key = f"{kind.value}:{target}"
    async with state.drain_lock:
        now = state.clock()
        async with store_call(state, "reading drains"):
            existing = (await state.context.store.snapshot(now=now)).drains
        drain = Drain(
            kind,
            target,
            body.reason,
            who(caller.name, caller.source),
            created_at=now,
            expires_at=None if body.expires_in_s is None else now + body.expires_in_s,
        )
        effect = impact(config, existing, drain, now=now)
        if effect.emptied and not body.force:
            problem = refusal(effect)
            state.collector.api_requests[("drain", "refused")] += 1
            log.warning("refused drain %s by %s: %s", key, drain.who, problem.message)
            await _audit_unapplied(
                state,
                caller,
                AuditAction.DRAIN,
                key,
                reason=body.reason,
                result="refused",
                detail=problem.message,
            )
            raise problem
        replaced = next(
            (d for d in existing if d.kind is kind and d.target == target and d.active(now)), None
        )
        async with store_call(state, "writing the drain", writing=True):
            version = await state.context.store.add_drain(drain)
        return drain, effect, replaced, version, state.clock()


def undrain_handler(kind: DrainKind) -> RouteHandler:
    async def undrain(request: web.Request, caller: Caller | None) -> web.StreamResponse:
        assert caller is not None  # an operate route
        state = request.app[STATE]
        target = _target(request, kind)
        reason = parse_undrain_body(await read_json(request, required=False))
        config = state.config
        check_target(config, kind, target)
        key = f"{kind.value}:{target}"
        now = state.clock()
        try:
            async with state.drain_lock:
                async with store_call(state, "reading drains"):
                    existing = (await state.context.store.snapshot(now=now)).drains
                async with store_call(state, "removing the drain", writing=True):
                    removed = await state.context.store.remove_drain(
                        kind, target, who=who(caller.name, caller.source), now=now, reason=reason
                    )
                    version = await state.context.store.version()
                written_at = state.clock()
        except Exception as e:
            await _audit_failed(state, caller, AuditAction.UNDRAIN, key, reason=reason, error=e)
            raise
        remaining = [d for d in existing if d.active(now) and not (d.kind is kind and d.target == target)]
        covered = [e for e in config.endpoints() if covers(config, Drain(kind, target, ""), e)]
        still = [d for d in remaining if any(covers(config, d, e) for e in covered)]
        services = sorted({e.service for e in covered})
        base: dict[str, Any] = {
            "action": "undrain",
            "target": {"kind": kind.value, "name": target},
            "still_drained_by": [drain_json(d) for d in still],
            "affected_services": services,
            "affected_datacenters": sorted({e.datacenter for e in covered}),
        }
        if removed is None:
            state.collector.api_requests[("undrain", "not_drained")] += 1
            await _audit_unapplied(
                state,
                caller,
                AuditAction.UNDRAIN,
                key,
                reason=reason,
                result="not_drained",
                detail="nothing to undrain",
            )
            return json_response(
                {
                    **base,
                    "removed": None,
                    "message": f"{kind.value} {target} was not drained",
                    "state_version": version,
                }
            )
        applied_at = await _wait_applied(state, version)
        fleet = await _wait_responders(state, version)
        ttl = max((config.services[s].ttl for s in services), default=0)
        negative = 0
        for name in previously_empty(config, remaining, removed, now=now):
            zone = state.context.parts().find_zone(name)
            if zone is not None:
                negative = max(negative, zone.negative_ttl)
        state.collector.api_requests[("undrain", "applied")] += 1
        log.info(
            "undrained %s by %s: %r; state version %d", key, who(caller.name, caller.source), reason, version
        )
        await state.audit_file.append(
            AuditRecord(
                written_at, caller.name, caller.source, "undrain", key, reason, "applied", version=version
            )
        )
        return json_response(
            {
                **base,
                "removed": drain_json(removed),
                "negative_ttl": negative or None,
                **_timing(state, written_at, applied_at, max(ttl, negative), version, fleet=fleet),
            }
        )

    undrain.__name__ = f"undrain_{kind.value}"
    return undrain


# -- the route table --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # aiohttp pattern; OpenAPI uses the same path without the regex parts
    handler: RouteHandler
    role: Role | None


def routes(settings: ApiConfig) -> tuple[Route, ...]:
    metrics_role = Role.READ if settings.metrics_require_token else None
    table = [
        Route("GET", "/", get_page, None),
        Route("GET", "/static/{name}", get_static, None),
        Route("GET", "/v1/openapi.json", get_openapi, None),
        Route("GET", "/metrics", get_metrics, metrics_role),
        Route("GET", "/v1/whoami", get_whoami, Role.READ),
        Route("GET", "/v1/state", get_state, Role.READ),
        Route("GET", "/v1/traffic", get_traffic, Role.READ),
        Route("GET", "/v1/explain", get_explain, Role.READ),
        Route("GET", "/v1/audit", get_audit, Role.READ),
    ]
    for kind, prefix in (
        (DrainKind.REGION, "/v1/regions/{name}"),
        (DrainKind.DATACENTER, "/v1/datacenters/{name}"),
        (DrainKind.ENDPOINT, "/v1/endpoints/{id:.+}"),
    ):
        table.append(Route("POST", f"{prefix}/drain", drain_handler(kind), Role.OPERATE))
        table.append(Route("POST", f"{prefix}/undrain", undrain_handler(kind), Role.OPERATE))
    return tuple(table)


def build_app(
    settings: ApiConfig,
    context: ApiContext,
    tokens: Tokens,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The ops api application (started by `gslb.api.server.run_api`)."""
    bugs = LogRate(log, "api bugs of a kind already logged", level=logging.ERROR, clock=clock)
    app = web.Application(middlewares=[json_errors(bugs)], client_max_size=MAX_BODY)
    collector = GslbCollector(context, clock=clock)
    app[STATE] = ApiState(
        settings=settings,
        context=context,
        tokens=tokens,
        audit_file=AuditFile(settings.audit_log),
        collector=collector,
        registry=registry_for(collector),
        clock=clock,
        drain_lock=asyncio.Lock(),
        bugs=bugs,
        auth_failures=LogRate(log, "failed authentications", clock=clock),
        forbidden=LogRate(log, "requests refused for the token's role", clock=clock),
        store_failures=LogRate(log, "state store failures", clock=clock),
    )
    for route in routes(settings):
        app.router.add_route(route.method, route.path, requires(route.role, route.handler))
    state = app[STATE]
    app[TRAFFIC] = TrafficHistory()
    app.cleanup_ctx.append(sampling(app[TRAFFIC], lambda: fleet_records(state, fresh=True), clock=clock))
    flush_on_cleanup(app, bugs, state.auth_failures, state.forbidden, state.store_failures)
    return app


def build_metrics_app(
    context: ApiContext, *, node: NodeStatus | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """`GET /metrics` (and, given the `node`'s status, `/healthz` and `/readyz`:
    `gslb.api.health`), for a responder's `server.metrics_listen` (no tokens, no drains)."""
    bugs = LogRate(log, "api bugs of a kind already logged", level=logging.ERROR, clock=clock)
    app = web.Application(middlewares=[json_errors(bugs)], client_max_size=MAX_BODY)
    collector = GslbCollector(context, clock=clock)

    async def metrics(request: web.Request) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encoder(registry), headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    registry = registry_for(collector)
    app.router.add_route("GET", "/metrics", metrics)
    if node is not None:
        add_health_routes(app, context, node, clock=clock)
    flush_on_cleanup(app, bugs)
    return app
