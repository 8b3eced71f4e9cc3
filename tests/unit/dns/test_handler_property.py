"""Any bytes in -> nothing, or a reply dnspython parses with the same ID and QR=1; never an exception."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts
from gslb.zone.name import from_text as encode_name
from tests.server_fixture import EXAMPLE_CONFIG


@pytest.fixture(scope="module")
def handler() -> Handler:
    return build_parts(load(EXAMPLE_CONFIG), HealthView()).handler


def check_reply(wire: bytes, reply: bytes | None) -> None:
    if reply is None:
        return
    message = dns.message.from_wire(reply, ignore_trailing=False)
    assert message.id == struct.unpack("!H", wire[:2])[0]
    assert message.flags & dns.flags.QR
    assert not message.flags & dns.flags.RA


names = st.sampled_from(
    ["www.gslb.example.com.", "gslb.example.com.", "x.apps.gslb.example.com.", "api.gslb.example.com.", "a."]
)


@st.composite
def near_valid_queries(draw: st.DrawFn) -> bytes:
    """Well-formed queries with random fields, then a few random byte flips."""
    flags = draw(st.integers(0, 0xFFFF)) & ~0x8000
    counts = draw(st.tuples(st.just(1), st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)))
    wire = bytearray(struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, *counts))
    wire += encode_name(draw(names)) + struct.pack(
        "!HH", draw(st.integers(0, 300)), draw(st.integers(0, 300))
    )
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


@settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(handler: Handler, wire: bytes) -> None:
    check_reply(wire, handler.handle(wire, "192.0.2.1"))


@settings(max_examples=3000, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(near_valid_queries(), st.booleans())
def test_near_valid_queries(handler: Handler, wire: bytes, tcp: bool) -> None:
    check_reply(wire, handler.handle(wire, "203.0.113.7", tcp=tcp))
