"""No input breaks the api or floods the log: the table of reasons, names, query parameters,
headers and bodies, each with the status and JSON message it gets, and the log without a
traceback; failed authentication and store failures logged rate-limited with a count.

Headers aiohttp's client will not send (bytes that are not UTF-8, control characters) go
through a raw socket. Time in the rate-limit tests is a fake clock: lines are counted, never
waited for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gslb.api.inputs import RequestProblem, check_text, json_text
from gslb.config.model import ApiConfig, Config
from gslb.errors import StateError
from gslb.health.view import Drain, DrainKind
from tests.unit.api.harness import AMS, IAD, OPERATE, READ, Harness, auth, running

Check = Callable[[Harness], Awaitable[None]]
DRAIN = "/v1/regions/europe/drain"
COUNT = re.compile(r"^(\d+) more ")


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def run(config: Config, check: Check, **kwargs: Any) -> None:
    async def main() -> None:
        async with running(config, **kwargs) as h:
            await check(h)

    asyncio.run(main())


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.exc_text]


def counted(records: list[logging.LogRecord]) -> int:
    """The sum of the counts in summary lines ("57 more failed authentications ...")."""
    return sum(int(m.group(1)) for r in records if (m := COUNT.match(r.getMessage())))


async def raw(h: Harness, request: bytes) -> tuple[int, Any]:
    """Send `request` as it is; (status, JSON body or None when the body is not JSON)."""
    reader, writer = await asyncio.open_connection(h.client.host, h.client.port)
    try:
        writer.write(request)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def http(method: str, path: str, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- text, without the app ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("maintenance", None),
        ("Wartung für München ☕", None),
        ("👩\u200d💻 deploy", None),  # a joiner inside an emoji is fine
        ("no\u00a0break", None),
        ("a\ud800b", "reason contains a lone surrogate (U+D800) at character 2: not Unicode text"),
        ("\udfff", "reason contains a lone surrogate (U+DFFF) at character 1: not Unicode text"),
        ("a\x00b", "reason contains a control character (U+0000) at character 2"),
        ("one\ntwo", "reason contains a control character (U+000A) at character 4"),
        ("tab\there", "reason contains a control character (U+0009) at character 4"),
        ("\x1b[31mred", "reason contains a control character (U+001B) at character 1"),
        ("del\x7f", "reason contains a control character (U+007F) at character 4"),
        ("c1\x85", "reason contains a control character (U+0085) at character 3"),
        ("line\u2028sep", "reason contains a line separator (U+2028) at character 5"),
        ("evil\u202etxt.exe", "reason contains a bidi control character (U+202E) at character 5"),
        ("x" * 10_000, "reason is longer than 500 characters (10000)"),
    ],
    ids=[
        "plain",
        "non-ascii",
        "emoji-joiner",
        "nbsp",
        "lone-high-surrogate",
        "lone-low-surrogate",
        "nul",
        "newline",
        "tab",
        "escape",
        "del",
        "c1",
        "line-separator",
        "bidi-override",
        "10kB",
    ],
)
def test_check_text(value: str, message: str | None) -> None:
    if message is None:
        assert check_text(value, "reason", max_length=500) == value
        return
    with pytest.raises(RequestProblem) as info:
        check_text(value, "reason", max_length=500)
    problem = info.value
    assert (problem.status, problem.code, problem.message, problem.extra) == (
        400,
        "bad_value",
        message,
        {"field": "reason"},
    )


def test_json_text_escapes_only_when_it_must() -> None:
    assert json_text({"r": "für"}) == '{"r": "für"}'
    text = json_text({"r": "a\ud800b", "s": "für"})
    assert text == '{"r": "a\\ud800b", "s": "f\\u00fcr"}'
    text.encode()  # never raises
    assert json.loads(text) == {"r": "a\ud800b", "s": "für"}


# -- reasons ------------------------------------------------------------------------------------

REASONS = [
    ("a\ud800b", 400, "reason contains a lone surrogate (U+D800) at character 2: not Unicode text"),
    ("\udc80", 400, "reason contains a lone surrogate (U+DC80) at character 1: not Unicode text"),
    ("a\x00b", 400, "reason contains a control character (U+0000) at character 2"),
    ("ok\r\nINFO forged line", 400, "reason contains a control character (U+000D) at character 3"),
    ("\x1b]0;title\x07", 400, "reason contains a control character (U+001B) at character 1"),
    ("\u202egnp.exe", 400, "reason contains a bidi control character (U+202E) at character 1"),
    ("x" * 10_000, 400, "reason is longer than 500 characters (10000)"),
    ("x" * 501, 400, "reason is longer than 500 characters (501)"),
    ("", 400, "reason must be a non-empty string (why, for the audit log)"),
    ("Wartung für München ☕", 200, None),
    ("x" * 500, 200, None),
]
REASON_IDS = [
    "lone-surrogate",
    "low-surrogate",
    "nul",
    "crlf",
    "osc-escape",
    "bidi",
    "10kB",
    "501",
    "empty",
    "unicode",
    "500",
]


@pytest.mark.parametrize(("reason", "status", "message"), REASONS, ids=REASON_IDS)
def test_drain_reasons(
    config: Config, caplog: pytest.LogCaptureFixture, reason: str, status: int, message: str | None
) -> None:
    caplog.set_level(logging.INFO)

    async def check(h: Harness) -> None:
        version = await h.store.version()
        # json.dumps escapes the surrogate: valid JSON, as an attacker would send it.
        body = json.dumps({"reason": reason}).encode()
        response = await h.client.post(DRAIN, data=body, headers=auth(OPERATE))
        got = await response.json()
        assert response.status == status, got
        if message is not None:
            assert got == {"error": "bad_value", "message": message, "field": "reason"}
            assert await h.store.version() == version  # nothing reached the store
            assert h.answer() == AMS
        else:
            assert got["drain"]["reason"] == reason
            assert h.answer() == IAD
        # Whatever happened, everything still answers.
        for path in ("/v1/state", "/v1/audit", "/metrics"):
            assert (await h.client.get(path, headers=auth(READ))).status == 200, path

    run(config, check)
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(("reason", "status", "message"), REASONS[:7], ids=REASON_IDS[:7])
def test_undrain_reasons(config: Config, reason: str, status: int, message: str) -> None:
    async def check(h: Harness) -> None:
        assert (await h.post(DRAIN, {"reason": "before"}))[0] == 200
        status_got, got = await h.post("/v1/regions/europe/undrain", {"reason": reason})
        assert (status_got, got) == (status, {"error": "bad_value", "message": message, "field": "reason"})
        assert h.answer() == IAD  # still drained

    run(config, check)


def test_a_reason_stored_before_checks_existed_still_reads(config: Config) -> None:
    """Defence in depth: a lone surrogate already in the store is escaped, never a 500."""

    async def check(h: Harness) -> None:
        drain = Drain(DrainKind.REGION, "europe", "a\ud800b", "old@127.0.0.1", created_at=time.time())
        version = await h.store.add_drain(drain)
        h.sync.wake()
        for _ in range(500):
            if h.sync.store_version >= version:
                break
            await asyncio.sleep(0.01)
        assert h.sync.store_version >= version
        status, state = await h.get("/v1/state")
        assert status == 200
        assert [d["reason"] for d in state["drains"]] == ["a\ud800b"]
        status, audit = await h.get("/v1/audit")
        assert (status, audit["entries"][0]["reason"]) == (200, "a\ud800b")

    run(config, check)


# -- names and query parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/datacenters/a%00b/drain", (400, "bad_value", "datacenter name contains a control")),
        ("POST", "/v1/regions/eu%0Arope/drain", (400, "bad_value", "region name contains a control")),
        ("POST", "/v1/regions/" + "r" * 300 + "/drain", (400, "bad_value", "region name is longer than 255")),
        ("POST", "/v1/endpoints/" + "e" * 2000 + "/drain", (400, "bad_value", "endpoint id is longer than")),
        ("POST", "/v1/endpoints/www%1Bx/undrain", (400, "bad_value", "endpoint id contains a control")),
        ("POST", "/v1/regions/%ED%A0%80/drain", (404, "unknown_region", 'unknown region "%ED%A0%80"')),
        ("GET", "/v1/explain?name=a%00b", (400, "bad_value", "name contains a control character (U+0000)")),
        ("GET", "/v1/explain?name=a..b", (400, "bad_value", "name is not a DNS name")),
        ("GET", "/v1/explain?name=" + "a" * 64 + ".com", (400, "bad_value", "name is not a DNS name")),
        ("GET", "/v1/explain?name=" + "a." * 600, (400, "bad_value", "name is longer than 1024")),
        ("GET", "/v1/explain?name=www.gslb.example.com&client=1.2.3.4%0A", (400, "bad_value", "client")),
        ("GET", "/v1/explain?name=www.gslb.example.com&ecs=%7F", (400, "bad_value", "ecs contains")),
        ("GET", "/v1/explain?name=www.gslb.example.com&type=A%00", (400, "bad_value", "type contains")),
        ("GET", "/v1/explain?name=www.gslb.example.com&type=" + "A" * 100, (400, "bad_value", "type is")),
        ("GET", "/v1/audit?limit=%00", (400, "bad_value", "limit contains a control character")),
        ("GET", "/v1/audit?limit=" + "9" * 5000, (400, "bad_value", "limit is longer than 64")),
        ("GET", "/v1/audit?limit=%EF%BC%91", (400, "bad_value", 'limit "１" is not a number')),
        ("GET", "/v1/nothing%00here", (404, "not_found", "no such route: GET /v1/nothing\\x00here")),
        ("GET", "/static/app%00.js", (404, "not_found", "no such route")),
    ],
    ids=[
        "dc-nul",
        "region-newline",
        "region-long",
        "endpoint-2kB",
        "endpoint-escape",
        "region-not-utf8",
        "explain-nul",
        "explain-empty-label",
        "explain-long-label",
        "explain-long-name",
        "explain-client-newline",
        "explain-ecs-del",
        "explain-type-nul",
        "explain-type-long",
        "audit-limit-nul",
        "audit-limit-long",
        "audit-limit-fullwidth",
        "route-nul",
        "static-nul",
    ],
)
def test_names_and_query_parameters(
    config: Config, caplog: pytest.LogCaptureFixture, method: str, path: str, expected: tuple[int, str, str]
) -> None:
    status, error, message = expected

    async def check(h: Harness) -> None:
        got_status, got = await raw(
            h, http(method, path, b"Authorization: Bearer " + OPERATE.encode(), body=b'{"reason": "x"}')
        )
        assert got_status == status, got
        assert got["error"] == error
        assert message in got["message"]

    run(config, check)
    assert tracebacks(caplog) == []


# -- headers --------------------------------------------------------------------------------------

MALFORMED = "malformed Authorization header: expected Bearer <token> in printable ASCII"
MISSING = "missing token: send Authorization: Bearer <token>"


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        (b"Authorization: Bearer \xff\xfe\xfd", 401, MALFORMED),
        (b"Authorization: Bearer " + OPERATE.encode() + b"\xc3\x28", 401, MALFORMED),
        (b"Authorization: \xe2\x82\xac", 401, MALFORMED),
        (b"Authorization: Bearer caf\xc3\xa9-valid-utf8", 401, MALFORMED),
        (b"Authorization: Bearer " + b"A" * 5000, 401, MALFORMED),
        (b"Authorization: Basic dXNlcjpwYXNzd29yZA==", 401, MISSING),
        (b"Authorization: Bearer", 401, MISSING),
        (b"Authorization: Bearer    ", 401, MISSING),
        (b"Authorization: Token " + OPERATE.encode(), 401, MISSING),
        (b"Authorization: " + OPERATE.encode(), 401, MISSING),
        (b"Authorization: Bearer gslb_not_a_token_at_all", 401, "invalid token"),
        (
            b"Authorization: Bearer " + READ.encode(),
            403,
            'token "reader" has the read role; this needs operate',
        ),
        (b"Authorization: bearer  " + OPERATE.encode(), 200, None),
    ],
    ids=[
        "not-utf8",
        "token-then-not-utf8",
        "only-non-ascii",
        "utf8-non-ascii",
        "5kB",
        "basic",
        "bearer-alone",
        "bearer-spaces",
        "other-scheme",
        "no-scheme",
        "unknown-token",
        "read-role",
        "lower-case-scheme",
    ],
)
def test_authorization_headers(
    config: Config, caplog: pytest.LogCaptureFixture, header: bytes, status: int, message: str | None
) -> None:
    async def check(h: Harness) -> None:
        got_status, got = await raw(h, http("POST", DRAIN, header, body=b'{"reason": "header test"}'))
        assert got_status == status, got
        if message is not None:
            assert got["message"] == message
            assert h.answer() == AMS
        else:
            assert h.answer() == IAD

    run(config, check)
    assert tracebacks(caplog) == []
    for record in caplog.records:
        assert "\ufffd" not in record.getMessage() and "\\udc" not in record.getMessage()


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer a\x01b", b"X-Whatever: \x00", b"Authorization: Bearer a\x7fb"],
    ids=["ctl-in-authorization", "nul-in-header", "del-in-authorization"],
)
def test_headers_aiohttp_cannot_parse_are_400_without_traceback(
    config: Config, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    caplog.set_level(logging.DEBUG)

    async def check(h: Harness) -> None:
        for _ in range(20):
            status, _ = await raw(h, http("POST", DRAIN, header, body=b'{"reason": "x"}'))
            assert status == 400
        assert h.answer() == AMS

    run(config, check)
    assert tracebacks(caplog) == []
    # The first in full (once per streak: an earlier test may have logged it), the rest counted.
    lines = [r for r in caplog.records if r.getMessage().startswith("malformed HTTP request from")]
    assert len(lines) <= 1
    assert all(r.levelno == logging.WARNING for r in lines)


# -- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{reason:", (400, "bad_json", "the body is not valid JSON: Expecting property name")),
        (b'{"reason": "\xff"}', (400, "bad_json", "the body is not valid JSON: 'utf-8' codec")),
        (b"[" * 50_000 + b"]" * 50_000, (413, "body_too_large", "Maximum request body size")),
        (b"[" * 30_000 + b"]" * 30_000, (400, "bad_json", "the body is not valid JSON: nested too deeply")),
        (b'{"reason": "x", "expires_in_s": 1' + b"0" * 5000 + b"}", (400, "bad_json", "4300")),
        (b'{"reason": "x", "expires_in_s": NaN}', (400, "bad_value", "expires_in_s must be a number")),
        (b'{"reason": "x", "expires_in_s": 1e999}', (400, "bad_value", "expires_in_s must be a number")),
        (b'{"reason": "x", "expires_in_s": "600"}', (400, "bad_value", "expires_in_s must be a number")),
        (b'{"reason": "x", "force": "yes"}', (400, "bad_value", "force must be true or false")),
        (b'{"reason": 5}', (400, "bad_value", "reason must be a non-empty string")),
        (b'{"reason": ["x"]}', (400, "bad_value", "reason must be a non-empty string")),
        (b'{"reason": null}', (400, "bad_value", "reason must be a non-empty string")),
        (b'{"reason": "x", "\\ud800": 1}', (400, "unknown_key", "unknown key '\\ud800'")),
        (b'{"reason": "x", "a\\u0000": 1}', (400, "unknown_key", "unknown key 'a\\x00'")),
        (b'"just a string"', (400, "bad_body", "the body must be a JSON object")),
        (b"[]", (400, "bad_body", "the body must be a JSON object")),
        (b"  ", (400, "bad_body", "a JSON body is required")),
        (b'{"reason": "' + b"x" * 100_000 + b'"}', (413, "body_too_large", "Maximum request body size")),
        # Python's json decodes bytes with "surrogatepass": CESU-8 bytes are a lone surrogate too.
        (b'{"reason": "a\xed\xa0\x80b"}', (400, "bad_value", "reason contains a lone surrogate (U+D800)")),
    ],
    ids=[
        "invalid-json",
        "not-utf8",
        "deep-100kB",
        "deep-60kB",
        "5000-digits",
        "nan",
        "infinity",
        "string-expiry",
        "string-force",
        "number-reason",
        "list-reason",
        "null-reason",
        "surrogate-key",
        "nul-key",
        "string-body",
        "array-body",
        "blank-body",
        "100kB",
        "cesu8-surrogate",
    ],
)
def test_drain_bodies(
    config: Config, caplog: pytest.LogCaptureFixture, body: bytes, expected: tuple[int, str, str]
) -> None:
    status, error, message = expected

    async def check(h: Harness) -> None:
        response = await h.client.post(
            DRAIN, data=body, headers={**auth(OPERATE), "Content-Type": "application/json"}
        )
        got = await response.json()
        assert (response.status, got["error"]) == (status, error), got
        assert message in got["message"]
        assert h.answer() == AMS

    run(config, check)
    assert tracebacks(caplog) == []


# -- rate-limited logs ----------------------------------------------------------------------------


def test_failed_authentication_is_logged_rate_limited_with_a_count(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="gslb.api")

    async def check(h: Harness) -> None:
        for i in range(200):  # 20 a second for 10 s
            if i and i % 20 == 0:
                clock.t += 1
            token = None if i % 2 else f"gslb_wrong_{i:04d}" + "w" * 30
            status, _ = await h.post(DRAIN, {"reason": "x"}, token=token)
            assert status == 401
        lines = [r for r in caplog.records if r.name == "gslb.api.app"]
        assert [r.getMessage() for r in lines if not COUNT.match(r.getMessage())] == [
            "refused POST /v1/regions/europe/drain from 127.0.0.1: unauthorized (more are counted)"
        ]
        clock.t += 1  # the first failure after the interval says how many there were
        assert (await h.get("/v1/state", token="nope" * 10))[0] == 401
        h.api_state.auth_failures.flush()
        lines = [r for r in caplog.records if r.name == "gslb.api.app"]
        assert len(lines) <= 3
        assert counted(lines) == 200  # 201 failures: one in full, 200 counted
        summary = next(r.getMessage() for r in lines if COUNT.match(r.getMessage()))
        assert "more failed authentications in the last 10 s; last: POST /v1/regions/europe/drain" in summary
        assert summary.endswith("from 127.0.0.1")

    run(config, check, clock=clock)
    assert tracebacks(caplog) == []


def test_a_non_utf8_authorization_flood_logs_one_line(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The measured flood: 2,000 such requests were 36,000 lines of tracebacks."""
    clock = Clock()

    async def check(h: Harness) -> None:
        for _ in range(200):
            status, body = await raw(h, http("GET", "/v1/state", b"Authorization: Bearer \xff\xfe"))
            assert (status, body["error"]) == (401, "unauthorized")

    run(config, check, clock=clock)
    assert tracebacks(caplog) == []
    lines = [r for r in caplog.records if r.name == "gslb.api.app"]
    assert [r.getMessage() for r in lines if not COUNT.match(r.getMessage())] == [
        "refused GET /v1/state from 127.0.0.1: unauthorized (more are counted)"
    ]
    assert len(lines) <= 2


def test_the_store_error_is_503_anything_else_a_bug_logged_once(
    config: Config, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    clock = Clock()
    audit_log = tmp_path / "audit.jsonl"

    async def check(h: Harness) -> None:
        async def down(*args: object, **kwargs: object) -> None:
            raise StateError("redis add_drain failed: ConnectionError: refused")

        async def bug(*args: object, **kwargs: object) -> None:
            raise TypeError("a bug in the store adapter")

        h.store.add_drain = down  # type: ignore[method-assign, assignment]
        for _ in range(20):
            status, body = await h.post(DRAIN, {"reason": "store down"})
            assert (status, body["error"]) == (503, "store_unavailable")
        assert tracebacks(caplog) == []
        store_lines = [r.getMessage() for r in caplog.records if "state store failed" in r.getMessage()]
        assert store_lines == [
            "state store failed during writing the drain: StateError: redis add_drain failed: "
            "ConnectionError: refused (more are counted)"
        ]

        h.store.add_drain = bug  # type: ignore[method-assign, assignment]
        for _ in range(20):
            status, body = await h.post(DRAIN, {"reason": "store bug"})
            assert (status, body) == (500, {"error": "internal", "message": "internal error (logged)"})
        (record,) = tracebacks(caplog)
        assert record.getMessage().startswith("api bug in POST /v1/regions/europe/drain")
        assert record.exc_info is not None and record.exc_info[0] is TypeError
        assert h.answer() == AMS

    run(config, check, clock=clock, settings=ApiConfig(audit_log=audit_log))
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [(x["reason"], x["result"]) for x in lines] == [("store down", "store_unavailable")] * 20 + [
        ("store bug", "error")
    ] * 20
    assert "may or may not have been stored" in lines[0]["detail"]


def test_a_refused_or_failed_drain_and_undrain_are_in_the_audit_file_while_the_store_is_down(
    config: Config, tmp_path: Path
) -> None:
    audit_log = tmp_path / "audit.jsonl"

    async def check(h: Harness) -> None:
        async def down(*args: object, **kwargs: object) -> None:
            raise StateError("redis is gone")

        # Refused (409) while auditing in the store fails: the file still has it.
        assert (await h.post("/v1/datacenters/ams/drain", {"reason": "first"}))[0] == 200
        h.store.append_audit = down  # type: ignore[method-assign]
        status, body = await h.post("/v1/datacenters/iad/drain", {"reason": "refused"})
        assert (status, body["error"]) == (409, "would_drain_everything")
        # The store cannot even be read: 503, and the file has the attempt.
        h.store.snapshot = down  # type: ignore[method-assign, assignment]
        status, body = await h.post("/v1/datacenters/sin/drain", {"reason": "failed"})
        assert (status, body["error"]) == (503, "store_unavailable")
        status, body = await h.post("/v1/datacenters/ams/undrain", {"reason": "failed too"})
        assert (status, body["error"]) == (503, "store_unavailable")

    run(config, check, settings=ApiConfig(audit_log=audit_log))
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [(x["action"], x["target"], x["reason"], x["result"]) for x in lines] == [
        ("drain", "datacenter:ams", "first", "applied"),
        ("drain", "datacenter:iad", "refused", "refused"),
        ("drain", "datacenter:sin", "failed", "store_unavailable"),
        ("undrain", "datacenter:ams", "failed too", "store_unavailable"),
    ]
    assert lines[2]["detail"] == "the state store is unavailable (reading drains); nothing was changed"
