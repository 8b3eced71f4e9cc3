"""Any bytes in -> nothing, or a reply dnspython parses with the query's ID, QR=1 and RA=0;
never an exception, never SERVFAIL and nothing logged at ERROR.

The handler turns every exception into SERVFAIL plus a logged traceback, so a property that
accepted SERVFAIL could not see a crash. The configs here have no SERVFAIL branch
(`when_all_down: fail_open`), so a SERVFAIL is a bug. `test_the_property_fails_when_build_raises`
plants a bug in `Handler._build` and shows that the property's check reports it and that a
hypothesis run of the property fails: these tests can fail.
"""

from __future__ import annotations

import logging
import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts
from gslb.zone.name import from_text
from tests.dnsfuzz import ECS_SUBNETS, PEERS, Mutator, corpus, ecs_option, judge, make_query
from tests.dnsfuzz import build_handler as build_fuzz_handler
from tests.server_fixture import EXAMPLE_CONFIG

CORPUS = corpus()


@pytest.fixture(scope="module", params=["default-config", "test-geoip-with-maps"])
def handler(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Handler:
    """The embedded default config; and the same with MaxMind's test database and compiled
    steering maps, where new ECS subnets take the shape path."""
    if request.param == "default-config":
        return build_parts(load(EXAMPLE_CONFIG), HealthView()).handler
    return build_fuzz_handler(tmp_path_factory.mktemp("maps"))


def problems(
    handler: Handler, wire: bytes, peer: str, caplog: pytest.LogCaptureFixture, *, tcp: bool = False
) -> list[str]:
    """What is wrong with the handler's answer to `wire`: [] when the property holds."""
    caplog.clear()
    try:
        reply = handler.handle(wire, peer, tcp=tcp)
    except Exception as exc:
        return [f"exception escaped the handler: {exc!r}"]
    found = []
    _outcome, problem = judge(wire, reply, tcp=tcp, udp_limit=handler.udp_payload_size)
    if problem is not None:
        found.append(problem)
    found += [
        f"logged at {r.levelname}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR
    ]
    return found


names = st.sampled_from(
    ["www.gslb.example.com.", "gslb.example.com.", "x.apps.gslb.example.com.", "api.gslb.example.com.", "a."]
)


@st.composite
def near_valid_queries(draw: st.DrawFn) -> bytes:
    """Well-formed queries with random fields, then a few random byte flips."""
    flags = draw(st.integers(0, 0xFFFF)) & ~0x8000
    counts = draw(st.tuples(st.just(1), st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)))
    wire = bytearray(struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, *counts))
    wire += from_text(draw(names)) + struct.pack("!HH", draw(st.integers(0, 300)), draw(st.integers(0, 300)))
    for _ in range(counts[3]):
        options = draw(st.binary(max_size=40))
        wire += b"\x00" + struct.pack(
            "!HHIH", 41, draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1)), len(options)
        )
        wire += options
    for _ in range(draw(st.integers(0, 3))):
        if wire:
            index = draw(st.integers(0, len(wire) - 1))
            wire[index] = draw(st.integers(0, 255))
    return bytes(wire)


@st.composite
def ecs_queries(draw: st.DrawFn) -> bytes:
    """Steered and static names with an ECS option, valid or not in one field."""
    family, source, address = draw(st.sampled_from(ECS_SUBNETS))
    if draw(st.booleans()):
        family = draw(st.sampled_from([family, family, 0, 3]))
        source = draw(st.integers(0, 255))
        address = draw(st.binary(max_size=17))
    name = draw(st.sampled_from(["www.gslb.example.com", "WWW.gslb.example.com", "api.gslb.example.com"]))
    qtype = draw(st.sampled_from([1, 28, 255, 16]))
    option = ecs_option(family, source, address, scope=draw(st.sampled_from([0, 0, 0, 24])))
    return make_query(draw(st.integers(0, 0xFFFF)), name, qtype, edns=True, options=(option,)).wire


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    """One input of the mutation fuzzer (tests/dnsfuzz.py), chosen by its seed."""
    return Mutator(random.Random(draw(st.integers(0, 2**32 - 1))), CORPUS).input()


def run_property(
    strategy: st.SearchStrategy[bytes],
    handler: Handler,
    caplog: pytest.LogCaptureFixture,
    max_examples: int,
    **extra: Any,
) -> None:
    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), **extra)
    @given(strategy, st.booleans(), st.sampled_from(PEERS))
    def check(wire: bytes, tcp: bool, peer: str) -> None:
        found = problems(handler, wire, peer, caplog, tcp=tcp)
        assert not found, found

    check()


def test_random_bytes(handler: Handler, caplog: pytest.LogCaptureFixture) -> None:
    run_property(st.binary(max_size=600), handler, caplog, 1000)


def test_near_valid_queries(handler: Handler, caplog: pytest.LogCaptureFixture) -> None:
    run_property(near_valid_queries(), handler, caplog, 2000)


def test_ecs_queries(handler: Handler, caplog: pytest.LogCaptureFixture) -> None:
    run_property(ecs_queries(), handler, caplog, 1000)


def test_mutated_queries(handler: Handler, caplog: pytest.LogCaptureFixture) -> None:
    run_property(mutated_queries(), handler, caplog, 2000)


def test_the_property_fails_when_build_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A test of the test. With a bug planted in `Handler._build` (it raises), the handler
    still replies (SERVFAIL) and logs the exception; the property's check must report it, and
    a hypothesis run of the property must fail rather than pass as the old one did, which
    accepted any rcode. A fresh handler, so that no cached reply hides the bug."""
    handler = build_parts(load(EXAMPLE_CONFIG), HealthView()).handler

    def broken(self: Handler, *args: object) -> object:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(Handler, "_build", broken)
    found = problems(handler, make_query(7, "www.gslb.example.com", 1).wire, "192.0.2.1", caplog)
    assert any("SERVFAIL" in problem for problem in found), found
    with pytest.raises(AssertionError, match="SERVFAIL"):
        run_property(near_valid_queries(), handler, caplog, 300, database=None)
    with pytest.raises(AssertionError, match="SERVFAIL"):
        run_property(mutated_queries(), handler, caplog, 300, database=None)


def test_the_property_fails_on_an_error_logged_with_a_good_reply(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A test of the test: a reply that is fine but comes with an ERROR record (a bug that
    was caught and logged somewhere on the way) also fails the property."""
    handler = build_parts(load(EXAMPLE_CONFIG), HealthView()).handler
    original = Handler._build

    def noisy(self: Handler, *args: Any) -> Any:
        logging.getLogger("tests.planted").error("planted error")
        return original(self, *args)

    monkeypatch.setattr(Handler, "_build", noisy)
    found = problems(handler, make_query(8, "static.gslb.example.com", 1).wire, "192.0.2.1", caplog)
    assert found == ["logged at ERROR: planted error"]


def test_judge_rejects_what_the_property_forbids() -> None:
    """The reply checks one by one, on hand-made replies to one query."""
    query = make_query(0x1234, "static.gslb.example.com", 1).wire
    good = bytearray(query)
    good[2] |= 0x84  # QR, AA
    assert judge(query, bytes(good), tcp=False) == ("NOERROR", None)
    assert judge(query, None, tcp=False) == ("drop", None)
    wrong_id = b"\x12\x35" + bytes(good[2:])
    servfail = bytes(good[:3]) + bytes([good[3] | 2]) + bytes(good[4:])
    no_qr = bytes(good[:2]) + bytes([good[2] & 0x7F]) + bytes(good[3:])
    with_ra = bytes(good[:3]) + bytes([good[3] | 0x80]) + bytes(good[4:])
    cases = {
        wrong_id: "ID",
        servfail: "SERVFAIL",
        no_qr: "QR=0",
        with_ra: "RA=1",
        bytes(good) + b"\x00": "parse",
        bytes(good[:20]): "parse",
    }
    for reply, expected in cases.items():
        problem = judge(query, reply, tcp=False)[1]
        assert problem is not None and expected in problem, (reply.hex(), problem)
    padded = make_query(0x1234, "static.gslb.example.com", 1, edns=True, options=((12, bytes(1300)),)).wire
    big = bytes([padded[0], padded[1], padded[2] | 0x80]) + padded[3:]
    assert "UDP" in (judge(padded, big, tcp=False)[1] or "")
    assert judge(padded, big, tcp=True)[1] is None
