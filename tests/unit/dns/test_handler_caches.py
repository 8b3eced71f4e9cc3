"""Cached replies (by request bytes, by shape) are byte for byte what a cold handler builds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.dns.codec import encode_name
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts
from tests.server_fixture import EXAMPLE_CONFIG

CONFIG = load(EXAMPLE_CONFIG)
NAMES = [
    "www.gslb.example.com.",
    "static.gslb.example.com.",
    "nothing.gslb.example.com.",
    "api.gslb.example.com.",
]


def cold() -> Handler:
    return build_parts(CONFIG, HealthView()).handler


@pytest.fixture(scope="module")
def warm() -> Handler:
    return cold()


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    qtype = draw(st.sampled_from([1, 28, 16, 255]))
    wire = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), 0x0100, 1, 0, 0, 1)
    wire += encode_name(cased) + struct.pack("!HH", qtype, 1)
    first_octet = draw(st.sampled_from([18, 81, 163, 193, 202, 217]))
    address = bytes([first_octet, draw(st.integers(0, 255)), draw(st.integers(0, 255))])
    ecs = struct.pack("!HBB", 1, 24, 0) + address
    options = struct.pack("!HH", 8, len(ecs)) + ecs
    return wire + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(queries(), st.booleans())
def test_cached_replies_equal_fresh_ones(warm: Handler, wire: bytes, tcp: bool) -> None:
    assert warm.handle(wire, "198.18.0.1", tcp=tcp) == cold().handle(wire, "198.18.0.1", tcp=tcp)


def test_a_new_casing_and_a_new_subnet_reuse_the_built_reply() -> None:
    handler = cold()
    base = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    first = handler.handle(base + encode_name("static.gslb.example.com.") + b"\x00\x01\x00\x01", "192.0.2.1")
    other = base + encode_name("StAtIc.GsLb.ExAmPlE.cOm.") + b"\x00\x01\x00\x01"
    assert len(handler._templates) == 1
    reply = handler.handle(other, "192.0.2.1")
    assert reply is not None and first is not None
    assert reply[12 : 12 + 25] == encode_name("StAtIc.GsLb.ExAmPlE.cOm.")  # 0x20 case echoed
    assert reply == cold().handle(other, "192.0.2.1")
    assert len(handler._templates) == 1  # the same template served both
