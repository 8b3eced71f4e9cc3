"""Lifecycles of the api's HTTP listeners: the ops api and a responder's metrics-only port.

Adapter layer (aiohttp server). `run_api` is what `gslb serve` (embedded mode) and
`gslb api` enter on their exit stack: it loads the tokens (creating the per-user operate
token when none are configured), binds `api.listen` (127.0.0.1:8053 unless configured) and
logs where it listens and where the tokens come from — never a token. `run_metrics` serves
only `GET /metrics` on `server.metrics_listen`, for responders in distributed mode.
aiohttp's access log is off: nothing is logged per request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gslb.api.app import HTTP_LOG, build_app, build_metrics_app
from gslb.api.auth import Tokens
from gslb.api.context import ApiContext
from gslb.config.model import ApiConfig, Listen
from gslb.errors import ConfigError, GslbError

log = logging.getLogger(__name__)


def url_of(listen: Listen) -> str:
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"http://{host}:{listen.port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.asynccontextmanager
async def _serve(app: web.Application, listen: Listen, what: str) -> AsyncIterator[web.AppRunner]:
    # HTTP_LOG: aiohttp's lines about requests it cannot parse, rate-limited (gslb.api.app).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=HTTP_LOG)
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            raise GslbError(f"{what} cannot listen on {url_of(listen)}: {e.strerror or e}") from None
        yield runner
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def run_api(
    config: ApiConfig, context: ApiContext, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[web.AppRunner]:
    """Serve the ops api on `config.listen` until the block exits."""
    tokens = Tokens(config.tokens_file, env)
    if config.audit_log is not None and not config.audit_log.parent.is_dir():
        raise ConfigError(
            str(config.audit_log), [f"api.audit_log: folder {config.audit_log.parent} does not exist"]
        )
    app = build_app(config, context, tokens)
    async with _serve(app, config.listen, "the api") as runner:
        if not _loopback(config.listen.host):
            log.warning(
                "the api listens on %s, beyond this host: put TLS in front of it (a reverse proxy)%s",
                url_of(config.listen),
                "" if config.metrics_require_token else "; /metrics needs no token",
            )
        log.info("api on %s; %s", url_of(config.listen), tokens.describe())
        yield runner


@contextlib.asynccontextmanager
async def run_metrics(listen: Listen, context: ApiContext) -> AsyncIterator[web.AppRunner]:
    """Serve `GET /metrics` only (a responder's own counters) on `listen`."""
    async with _serve(build_metrics_app(context), listen, "the metrics endpoint") as runner:
        log.info("metrics on %s/metrics", url_of(listen))
        yield runner
