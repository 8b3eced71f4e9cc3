"""http/https checks and the prober against real local aiohttp servers that fail, return, slow down."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest
from aiohttp import web

from gslb.config.model import Check, CheckKind, ProberConfig
from gslb.health.view import Health
from gslb.probe.checks import Checker, CheckResult
from gslb.probe.prober import Prober
from gslb.state.store import MemoryStore
from gslb.state.sync import HealthSync
from tests.redis_fixture import free_port
from tests.unit.probe.configs import config_with

pytestmark = pytest.mark.integration

LOCALHOST = ip_address("127.0.0.1")


@dataclass
class Backend:
    """What the test server answers, changeable while it runs."""

    status: int = 200
    body: str = "all good"
    delay_s: float = 0.0
    hosts: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Server:
    def __init__(self, backend: Backend, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.backend = backend
        self.port = port
        self.ssl_context = ssl_context
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.backend.hosts.append(request.headers.get("Host", ""))
        self.backend.requests.append(f"{request.method} {request.path_qs}")
        if self.backend.delay_s:
            await asyncio.sleep(self.backend.delay_s)
        if request.path == "/redirect":
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=self.backend.status, text=self.backend.body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@asynccontextmanager
async def serving(backend: Backend, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(backend, free_port(), ssl_context)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def http(
    port: int,
    *,
    path: str = "/",
    method: str = "GET",
    host: str | None = None,
    body_contains: str | None = None,
    expect_status: tuple[int, int] = (200, 399),
) -> Check:
    return Check(
        kind=CheckKind.HTTP,
        port=port,
        path=path,
        method=method,
        host=host,
        body_contains=body_contains,
        expect_status=expect_status,
    )


def test_http_check_results() -> None:
    async def main() -> None:
        backend = Backend()
        async with serving(backend) as server, Checker() as checker:
            port = server.port
            ok = await checker.run(http(port, path="/health?full=1", host="www.example.com"), LOCALHOST)
            assert ok.ok and ok.detail == "HTTP 200" and ok.rtt_ms is not None
            assert backend.hosts[-1] == "www.example.com"
            assert backend.requests[-1] == "GET /health?full=1"
            assert (await checker.run(http(port, method="HEAD"), LOCALHOST)).ok
            assert backend.requests[-1] == "HEAD /"
            redirect = await checker.run(http(port, path="/redirect"), LOCALHOST)
            assert redirect.ok and redirect.detail == "HTTP 302"  # in 200-399, and not followed
            assert not (
                await checker.run(http(port, path="/redirect", expect_status=(200, 299)), LOCALHOST)
            ).ok
            body = await checker.run(http(port, body_contains="good"), LOCALHOST)
            assert body.ok
            nobody = await checker.run(http(port, body_contains="great"), LOCALHOST)
            assert not nobody.ok and nobody.detail == "HTTP 200, body lacks 'great'"
            backend.status = 503
            failed = await checker.run(http(port), LOCALHOST)
            assert not failed.ok and failed.detail == "HTTP 503, expected 200-399"
            assert failed.rtt_ms is not None
        refused = await checker_once(http(port))
        assert not refused.ok and refused.detail == "connection refused"

    asyncio.run(main())


async def checker_once(check: Check) -> CheckResult:
    async with Checker() as checker:
        return await checker.run(check, LOCALHOST)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=svc.test", "-addext", "subjectAltName=DNS:svc.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def test_https_verifies_by_default_and_sends_sni(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    context.sni_callback = sni

    async def main() -> None:
        async with serving(Backend(), context) as server, Checker() as checker:
            https = Check(kind=CheckKind.HTTPS, port=server.port, host="svc.test", timeout_s=2.0)
            verified = await checker.run(https, LOCALHOST)
            assert not verified.ok
            assert "certificate" in verified.detail.lower()
            unverified = await checker.run(
                Check(kind=CheckKind.HTTPS, port=server.port, host="svc.test", verify_tls=False), LOCALHOST
            )
            assert unverified.ok, unverified.detail
            assert seen_sni[-1] == "svc.test"

    asyncio.run(main())


def test_prober_sees_server_die_return_and_slow_down() -> None:
    async def main() -> None:
        backend = Backend()
        port = free_port()
        check = Check(
            kind=CheckKind.HTTP,
            port=port,
            interval_s=0.05,
            timeout_s=1.0,
            rise=2,
            fall=2,
            ewma_alpha=0.5,
            degraded_rtt_ms=80.0,
        )
        config = config_with([("127.0.0.1", check)], prober=ProberConfig(heartbeat_interval_s=0.05))
        ep = config.endpoints()[0].id
        server = Server(backend, port)
        await server.start()
        store = MemoryStore()
        try:
            async with (
                HealthSync(store, poll_interval_s=0.05) as sync,
                Prober(config, store, "p1") as prober,
            ):
                await wait_until(lambda: prober.stats.checks >= 3)
                assert sync.current.health(ep) is Health.UP
                await server.stop()
                await wait_until(lambda: sync.current.health(ep) is Health.DOWN)
                await server.start()
                await wait_until(lambda: sync.current.health(ep) is Health.UP)
                backend.delay_s = 0.2
                await wait_until(lambda: sync.current.health(ep) is Health.DEGRADED)
                backend.delay_s = 0.0
                await wait_until(lambda: sync.current.health(ep) is Health.UP)
                backend.status = 500
                await wait_until(lambda: sync.current.health(ep) is Health.DOWN)
                assert prober.states[ep].detail == "HTTP 500, expected 200-399"
        finally:
            await server.stop()

    asyncio.run(main())
