"""Cached replies (by request bytes, by ECS shape) are byte for byte what a cold handler builds.

The handlers here use MaxMind's GeoIP2-City test database, whose steering map compiles in a
blink, so that the shape path (a new ECS subnet answered through the compiled map) runs.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.config.model import Config
from gslb.dns.cache import ReplyCache
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import Parts, build_parts, maps_for_config
from gslb.zone.name import from_text
from tests.server_fixture import EXAMPLE_CONFIG, GEOIP_DATA

NAMES = [
    "www.gslb.example.com.",
    "static.gslb.example.com.",
    "nothing.gslb.example.com.",
    "api.gslb.example.com.",
]
# first octets that land in the test database's networks and outside them
FIRST_OCTETS = [81, 89, 175, 216, 202, 67, 2, 214, 1, 8, 18, 193]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = load(EXAMPLE_CONFIG)
    return replace(base, geoip=replace(base.geoip, database=GEOIP_DATA / "GeoIP2-City-Test.mmdb"))


@pytest.fixture(scope="module")
def maps_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("maps")


def parts_for(config: Config, maps_dir: Path, *, with_maps: bool = True) -> Parts:
    parts = build_parts(config, HealthView())
    if with_maps:
        parts.orders.use_maps(maps_for_config(config, maps_dir))
        parts.handler.maps_ready()
    return parts


def ecs_query(qid: int, name: str, qtype: int, address: bytes, source: int = 24) -> bytes:
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    wire += from_text(name) + struct.pack("!HH", qtype, 1)
    ecs = struct.pack("!HBB", 1, source, 0) + address
    options = struct.pack("!HH", 8, len(ecs)) + ecs
    return wire + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    qtype = draw(st.sampled_from([1, 28, 16, 255]))
    address = bytes(
        [draw(st.sampled_from(FIRST_OCTETS)), draw(st.integers(0, 255)), draw(st.integers(0, 255))]
    )
    return ecs_query(draw(st.integers(0, 0xFFFF)), cased, qtype, address)


def test_cached_and_shaped_replies_equal_fresh_ones(config: Config, maps_dir: Path) -> None:
    warm = parts_for(config, maps_dir).handler
    cold_parts = parts_for(config, maps_dir)

    @settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
    @given(queries(), st.booleans())
    def check(wire: bytes, tcp: bool) -> None:
        cold = Handler(
            cold_parts.zones, cold_parts.orders, cold_parts.handler.steering, identity=config.server.identity
        )
        assert warm.handle(wire, "198.18.0.1", tcp=tcp) == cold.handle(wire, "198.18.0.1", tcp=tcp)

    check()


def test_a_new_subnet_takes_the_shape_path(config: Config, maps_dir: Path) -> None:
    handler = parts_for(config, maps_dir).handler
    # 1.0.0.0/8 holds no data in the test database: one map block, one order, one scope
    first = handler.handle(ecs_query(1, "www.gslb.example.com.", 1, bytes([1, 2, 3])), "198.18.0.1")
    assert first is not None
    assert handler._shape_tails == (3,)
    other = ecs_query(2, "www.gslb.example.com.", 1, bytes([1, 200, 7]))
    reply = handler._shaped(other, tcp=False)  # answered without the full path
    assert reply is not None
    assert reply[:2] == b"\x00\x02" and reply.endswith(bytes([1, 200, 7]))
    # the same answer (policy "all": the next rotation of the same addresses) and scope
    assert len(reply) == len(first) and reply[2:12] == first[2:12]
    assert sorted(_answers(reply)) == sorted(_answers(first))
    # a subnet whose decision and scope were never built goes down the full path once
    assert handler._shaped(ecs_query(3, "www.gslb.example.com.", 1, bytes([175, 16, 199])), tcp=False) is None


def test_bits_past_the_source_prefix_are_formerr_on_the_shape_path(config: Config, maps_dir: Path) -> None:
    handler = parts_for(config, maps_dir).handler
    handler.handle(ecs_query(1, "www.gslb.example.com.", 1, bytes([81, 2, 69]), source=23), "198.18.0.1")
    reply = handler.handle(
        ecs_query(2, "www.gslb.example.com.", 1, bytes([81, 2, 69]), source=23), "198.18.0.1"
    )
    assert reply is not None and reply[3] & 0x0F == 1  # FORMERR: 69 has its last bit set past /23


def test_a_health_change_makes_steered_replies_stale_but_not_static_ones(
    config: Config, maps_dir: Path
) -> None:
    parts = parts_for(config, maps_dir)
    handler = parts.handler
    handler.handle(ecs_query(1, "www.gslb.example.com.", 1, bytes([81, 2, 69])), "198.18.0.1")
    handler.handle(ecs_query(1, "static.gslb.example.com.", 1, bytes([81, 2, 69])), "198.18.0.1")
    handler.set_steering(handler.steering)
    entries = [handler._udp.get(ecs_query(1, n, 1, bytes([81, 2, 69]))[2:]) for n in NAMES[:2]]
    assert [e is not None and e[2] >= handler._generation for e in entries] == [False, True]


def test_the_cache_is_bounded_and_never_cleared_at_once() -> None:
    cache: ReplyCache[int] = ReplyCache(1000)
    sizes = []
    for index in range(10_000):
        cache.put(index.to_bytes(4, "big"), index)
        sizes.append(len(cache))
    assert max(sizes) <= 1000
    assert min(sizes[1000:]) >= 500  # eviction is gradual: at least half stays
    assert cache.get((9_999).to_bytes(4, "big")) == 9_999
    assert cache.get((0).to_bytes(4, "big")) is None


def _answers(reply: bytes) -> list[str]:
    return [str(rd) for rrset in dns.message.from_wire(reply).answer for rd in rrset]
