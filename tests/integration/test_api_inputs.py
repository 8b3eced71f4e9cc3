"""The api of a real `gslb serve` against what an attacker or a careless operator sends: raw
bytes on a socket, no client library smoothing them. The measured failures were a drain
reason with a lone surrogate (applied, then 500s on /v1/state and /v1/audit, no snapshot),
and an `Authorization` header that is not UTF-8 (a 500 and an 18-line traceback per request).

The per-case table lives in `tests/unit/api/test_inputs.py`; this checks the same inputs end
to end, with the server's own log: no traceback, a few lines where there were thousands.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration

OPERATE = "gslb_op_" + "Kq7" * 12
READ = "gslb_rd_" + "Zx4" * 12
ENV = {"GSLB_API_TOKENS": f"ops:operate:{OPERATE},viewer:read:{READ}"}
EUROPE = "89.160.20.112/28"  # Linköping in MaxMind's test database: nearest is ams
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}


def send(server: GslbProcess, request: bytes) -> tuple[int, Any]:
    """One raw HTTP request; (status, JSON body, or None when the body is not JSON)."""
    with socket.create_connection(("127.0.0.1", server.extra_ports["api"]), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), json.loads(body)
    except ValueError:
        return int(head.split(b" ", 2)[1]), None


def http(method: str, path: str, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bearer(token: str) -> bytes:
    return b"Authorization: Bearer " + token.encode()


def dig(server: GslbProcess) -> set[str]:
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(server.port),
            "www.gslb.example.com",
            "A",
            f"+subnet={EUROPE}",
            "+short",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return set(out.split())


def test_a_lone_surrogate_reason_is_400_and_everything_keeps_working(
    gslb_factory: Callable[..., GslbProcess],
) -> None:
    server = gslb_factory(BASIC_CONFIG, env=ENV)
    body = b'{"reason": "a\\ud800b"}'  # valid JSON for a string that is not Unicode text
    status, got = send(server, http("POST", "/v1/regions/europe/drain", bearer(OPERATE), body=body))
    assert (status, got) == (
        400,
        {
            "error": "bad_value",
            "message": "reason contains a lone surrogate (U+D800) at character 2: not Unicode text",
            "field": "reason",
        },
    )
    assert dig(server) == AMS  # not applied
    for path in ("/v1/state", "/v1/audit", "/metrics"):
        assert send(server, http("GET", path, bearer(READ)))[0] == 200, path
    # A drain with a proper reason still goes through, and the snapshot is saved on the way out.
    body = json.dumps({"reason": "Wartung für München"}).encode()
    status, got = send(server, http("POST", "/v1/regions/europe/drain", bearer(OPERATE), body=body))
    assert status == 200, got
    assert dig(server) == IAD
    assert server.stop() == 0
    log = server.output()
    assert "Traceback" not in log
    assert "Task exception was never retrieved" not in log


def test_header_floods_leave_a_few_lines_and_no_traceback(gslb_factory: Callable[..., GslbProcess]) -> None:
    server = gslb_factory(BASIC_CONFIG, env=ENV)
    not_utf8 = b"Authorization: Bearer \xff\xfe\xfd"
    control = b"Authorization: Bearer a\x01b"
    for _ in range(300):
        status, got = send(server, http("GET", "/v1/state", not_utf8))
        assert (status, got["error"]) == (401, "unauthorized")
        status, got = send(
            server, http("POST", "/v1/regions/europe/drain", not_utf8, body=b'{"reason": "x"}')
        )
        assert (status, got["error"]) == (401, "unauthorized")
        assert send(server, http("GET", "/v1/state", control))[0] == 400  # aiohttp cannot parse it
    assert send(server, http("GET", "/v1/state", bearer(READ)))[0] == 200
    assert server.stop() == 0
    log = server.output()
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "refused" in line or "malformed HTTP" in line]
    # 900 bad requests: the first of each sort in full, then a count per 10 s.
    assert len(lines) <= 10, "\n".join(lines)
    assert "refused GET /v1/state from 127.0.0.1: unauthorized" in log
    assert "malformed HTTP request from 127.0.0.1" in log
    # The rest counted, and the counts logged (at the latest when the api stops).
    assert counted(log, "failed authentications") == 599
    assert counted(log, "malformed HTTP requests") == 299


def counted(log: str, what: str) -> int:
    return sum(int(m.group(1)) for m in re.finditer(rf"(\d+) more {what} in the last", log))
