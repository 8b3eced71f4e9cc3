"""Health checks: `http`/`https` (aiohttp client), `tcp` (connect), `dns` (one UDP query), `none`.

Adapter layer: the only user of the aiohttp client (with yarl, its URL type); standard
library, `gslb.config.model` and `gslb.dnswire` besides. Each check returns a
`CheckResult` (ok, rtt_ms, detail, and for http checks with `load_field`/`load_header` a
load figure) and turns the failures it expects (refused, reset, TLS, bad status, wrong
answer) into a failed result; timeouts and anything unexpected are the prober's business.
A check probes `check.address or endpoint.address` on `check.port`, or 80/443/53 by kind. A
load figure that is missing or not a number is no figure, never a failure: the endpoint
serves, it just does not say how busy it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import aiohttp
from yarl import URL

from gslb.config.model import Check, CheckKind, IPAddress
from gslb.dnswire import (
    answer_matches,
    pack_query,
    parse_reply,
    qtype_code,
    rcode_code,
    rcode_name,
)

DEFAULT_PORTS = {CheckKind.HTTP: 80, CheckKind.HTTPS: 443, CheckKind.DNS: 53}
MAX_BODY = 64 * 1024
USER_AGENT = "gslb-probe"
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    rtt_ms: float | None
    detail: str = ""
    load: float | None = None  # the load figure a passing http check read, if configured


def probe_port(check: Check) -> int | None:
    """The port a check connects to: `check.port`, else the kind's default (none for tcp)."""
    return check.port if check.port is not None else DEFAULT_PORTS.get(check.kind)


class CheckRunner(Protocol):
    """What the prober needs from a checker (tests substitute their own)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def run(self, check: Check, address: IPAddress) -> CheckResult: ...


class Checker:
    """Runs checks; owns the aiohttp session (keep-alive pool) shared by every http check."""

    def __init__(self, *, max_connections: int = 256, rng: random.Random | None = None) -> None:
        self._max_connections = max_connections
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Checker:
        connector = aiohttp.TCPConnector(limit=self._max_connections, use_dns_cache=False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, check: Check, address: IPAddress) -> CheckResult:
        """Run one check against `address` (no timeout here: the caller bounds it)."""
        port = probe_port(check)
        if check.kind is CheckKind.NONE:
            return CheckResult(True, None, "no check")
        if port is None:
            return CheckResult(False, None, f"{check.kind.value} check has no port")
        if check.kind is CheckKind.TCP:
            return await check_tcp(address, port)
        if check.kind is CheckKind.DNS:
            return await check_dns(check, address, port, query_id=self._rng.getrandbits(16))
        if self._session is None:
            raise RuntimeError("Checker used outside 'async with'")
        return await check_http(self._session, check, address, port)


async def check_http(
    session: aiohttp.ClientSession, check: Check, address: IPAddress, port: int
) -> CheckResult:
    """Request `check.path`; ok when the status is in range (and the body has the text)."""
    scheme = "https" if check.kind is CheckKind.HTTPS else "http"
    path, _, query = check.path.partition("?")
    url = URL.build(scheme=scheme, host=str(address), port=port, path=path or "/", query_string=query)
    headers = {"Host": check.host} if check.host else None
    server_hostname = check.host if scheme == "https" and check.host else None
    low, high = check.expect_status
    started = time.perf_counter()
    try:
        async with session.request(
            check.method,
            url,
            headers=headers,
            allow_redirects=False,
            ssl=check.verify_tls,  # True: verify against the system CAs; False: no checks
            server_hostname=server_hostname,
        ) as response:
            body = await response.content.read(MAX_BODY)
            rtt_ms = (time.perf_counter() - started) * 1000.0
            status = response.status
            response_headers = response.headers
    except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as e:
        return CheckResult(False, None, _describe(e))
    if not low <= status <= high:
        return CheckResult(False, rtt_ms, f"HTTP {status}, expected {low}-{high}")
    if check.body_contains is not None and check.body_contains not in body.decode("utf-8", "replace"):
        return CheckResult(False, rtt_ms, f"HTTP {status}, body lacks {check.body_contains!r}")
    if check.load_field is None and check.load_header is None:
        return CheckResult(True, rtt_ms, f"HTTP {status}")
    load, missing = read_load(check, body, response_headers)
    return CheckResult(
        True, rtt_ms, f"HTTP {status}" + (f", no load figure: {missing}" if missing else ""), load
    )


def read_load(check: Check, body: bytes, headers: Mapping[str, str]) -> tuple[float | None, str]:
    """The load figure of a response (`check.load_field` or `load_header`) and, when there is
    none, a short reason for the check's detail. `headers` is aiohttp's case-insensitive
    mapping, so the header's name matches in any case."""
    if check.load_header is not None:
        value = headers.get(check.load_header)
        if value is None:
            return None, f"header {check.load_header} missing"
        figure = load_number(value)
        if figure is None:
            return None, f"header {check.load_header} is not a number: {value[:40]!r}"
        return figure, ""
    if check.load_field is None:
        return None, ""
    try:
        found: object = json.loads(body)
    except ValueError:  # bad JSON, bad UTF-8, or a body cut at MAX_BODY
        return None, "body is not JSON"
    for name in check.load_field.split("."):
        if not isinstance(found, dict) or name not in found:
            return None, f"field {check.load_field} missing"
        found = found[name]
    figure = load_number(found)
    if figure is None:
        return None, f"field {check.load_field} is not a number: {str(found)[:40]!r}"
    return figure, ""


def load_number(value: object) -> float | None:
    """A finite number from JSON (a number, or a string holding one) or from a header.

    Not finite is no figure: NaN would sort anywhere, and state records hold finite numbers.
    """
    if isinstance(value, bool):  # JSON true is not 1
        return None
    if isinstance(value, int | float):
        figure = float(value)
    elif isinstance(value, str):
        try:
            figure = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return figure if math.isfinite(figure) else None


async def check_tcp(address: IPAddress, port: int) -> CheckResult:
    """Connect and reset: ok when the handshake completes."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        transport, _ = await loop.create_connection(asyncio.Protocol, str(address), port)
    except OSError as e:
        return CheckResult(False, None, _describe(e))
    rtt_ms = (time.perf_counter() - started) * 1000.0
    # Close with RST, as HAProxy does: a check should not leave TIME_WAIT sockets behind.
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.close()
    return CheckResult(True, rtt_ms, "connected")


async def check_dns(check: Check, address: IPAddress, port: int, *, query_id: int) -> CheckResult:
    """One UDP query; ok when the rcode (and, if asked, one answer) is as expected."""
    try:
        qtype = qtype_code(check.query_type)
        expect = rcode_code(check.expect_rcode)
        query = pack_query(check.query_name or ".", qtype, query_id)
    except ValueError as e:
        return CheckResult(False, None, f"bad dns check: {e}")
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _DnsClient(query_id), remote_addr=(str(address), port)
        )
    except OSError as e:
        return CheckResult(False, None, _describe(e))
    try:
        transport.sendto(query)
        wire = await protocol.reply
    except OSError as e:
        return CheckResult(False, None, _describe(e))
    finally:
        transport.close()
    rtt_ms = (time.perf_counter() - started) * 1000.0
    try:
        reply = parse_reply(wire)
    except ValueError as e:
        return CheckResult(False, rtt_ms, f"malformed reply: {e}")
    if reply.rcode != expect:
        return CheckResult(False, rtt_ms, f"{rcode_name(reply.rcode)}, expected {rcode_name(expect)}")
    if check.expect_answer is not None and not answer_matches(check.expect_answer, reply.answers):
        got = ", ".join(reply.answers) or ("truncated" if reply.truncated else "no answer")
        return CheckResult(False, rtt_ms, f"answer lacks {check.expect_answer!r} (got {got})")
    return CheckResult(True, rtt_ms, rcode_name(reply.rcode))


class _DnsClient(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self._id = query_id.to_bytes(2, "big")
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # Anything without our ID is not our answer (late or spoofed): keep waiting.
        if data[:2] == self._id and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.cancel()  # nobody is waiting any more


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, ConnectionRefusedError) or "Connect call failed" in text:
        return "connection refused"
    return f"{type(error).__name__}: {text}"
