"""Lifecycles of the api's HTTP listeners: the ops api and a responder's metrics-only port.

Adapter layer (aiohttp server). `run_api` is what `gslb serve` (embedded mode) and
`gslb api` enter on their exit stack: it loads the tokens (creating the per-user operate
token when none are configured), binds `api.listen` (127.0.0.1:8053 unless configured) and
logs where it listens and where the tokens come from — never a token. `run_metrics` serves
`GET /metrics`, `/healthz` and `/readyz` on `server.metrics_listen`, for responders.
aiohttp's access log is off: nothing is logged per request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gslb.api.app import HTTP_LOG, build_app, build_metrics_app
from gslb.api.auth import Tokens
from gslb.api.context import ApiContext
from gslb.config.model import ApiConfig, Listen
from gslb.errors import ConfigError, GslbError, ListenError
from gslb.nodehealth import NodeStatus

log = logging.getLogger(__name__)


def url_of(listen: Listen) -> str:
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"http://{host}:{listen.port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_http(listen: Listen, *, settings: str) -> socket.socket:
    """A bound TCP socket for `listen` (served later by `run_api` or `run_metrics`), so that a
    port in use is one `ListenError` naming it and `settings` before anything starts."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TCPSite(reuse_address=True)
        sock.bind((listen.host, listen.port))
    except OSError as e:
        sock.close()
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        raise ListenError.from_os_error(f"{host}:{listen.port}/tcp", e, settings=settings) from None
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def _serve(
    app: web.Application, listen: Listen, what: str, sock: socket.socket | None = None
) -> AsyncIterator[web.AppRunner]:
    # HTTP_LOG: aiohttp's lines about requests it cannot parse, rate-limited (gslb.api.app).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=HTTP_LOG)
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
            if sock is None
            else web.SockSite(runner, sock)
        )
        try:
            await site.start()
        except OSError as e:
            raise GslbError(f"{what} cannot listen on {url_of(listen)}: {e.strerror or e}") from None
        yield runner
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def run_api(
    config: ApiConfig,
    context: ApiContext,
    *,
    env: Mapping[str, str] | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[web.AppRunner]:
    """Serve the ops api on `config.listen` (on `sock` when bound already) until the block exits."""
    tokens = Tokens(config.tokens_file, env)
    if config.audit_log is not None and not config.audit_log.parent.is_dir():
        raise ConfigError(
            str(config.audit_log), [f"api.audit_log: folder {config.audit_log.parent} does not exist"]
        )
    app = build_app(config, context, tokens)
    async with _serve(app, config.listen, "the api", sock) as runner:
        if not _loopback(config.listen.host):
            log.warning(
                "the api listens on %s, beyond this host: put TLS in front of it (a reverse proxy)%s",
                url_of(config.listen),
                "" if config.metrics_require_token else "; /metrics needs no token",
            )
        log.info("api on %s; %s", url_of(config.listen), tokens.describe())
        yield runner


@contextlib.asynccontextmanager
async def run_metrics(
    listen: Listen,
    context: ApiContext,
    node: NodeStatus | None = None,
    *,
    sock: socket.socket | None = None,
) -> AsyncIterator[web.AppRunner]:
    """Serve `GET /metrics` (a responder's own counters) on `listen` (on `sock` when bound
    already); given the `node`'s status, `/healthz` and `/readyz` too (`gslb.api.health`)."""
    app = build_metrics_app(context, node=node)
    async with _serve(app, listen, "the metrics endpoint", sock) as runner:
        if node is None:
            log.info("metrics on %s/metrics", url_of(listen))
        else:
            log.info("metrics on %s/metrics, health checks on /healthz and /readyz", url_of(listen))
        yield runner
