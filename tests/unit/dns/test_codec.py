"""The strict query decoder: golden bytes for every malformation in DESIGN.md section 5."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from gslb.dns.codec import Drop, NotImplementedOpcode, decode_ecs, decode_query, header_only
from gslb.errors import MalformedQuery
from gslb.zone.name import from_text

QNAME = from_text("www.gslb.example.com.")
QUESTION = QNAME + struct.pack("!HH", 1, 1)


def header(*, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


def opt(options: bytes = b"", *, owner: bytes = b"\x00", payload: int = 1232, ttl: int = 0) -> bytes:
    return owner + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def ecs_option(family: int, source: int, scope: int, address: bytes) -> bytes:
    data = struct.pack("!HBB", family, source, scope) + address
    return struct.pack("!HH", 8, len(data)) + data


def test_plain_query() -> None:
    query = decode_query(header() + QUESTION)
    assert (query.id, query.qname, query.qtype, query.qclass, query.edns) == (
        0x1234,
        b"\x03www\x04gslb\x07example\x03com\x00",
        1,
        1,
        None,
    )


def test_case_is_kept_on_the_wire_and_folded_for_lookup() -> None:
    query = decode_query(header() + from_text("WwW.GsLb.example.COM.") + struct.pack("!HH", 1, 1))
    assert query.qname == from_text("www.gslb.example.com.")
    assert query.qname_wire == from_text("WwW.GsLb.example.COM.")


def test_edns_with_ecs_nsid_and_do() -> None:
    options = (
        ecs_option(1, 24, 0, bytes([193, 0, 14]))
        + struct.pack("!HH", 3, 0)
        + struct.pack("!HH", 65001, 2)
        + b"xx"
    )
    query = decode_query(header(ar=1) + QUESTION + opt(options, ttl=0x8000, payload=4096))
    assert query.edns is not None
    assert (query.edns.payload, query.edns.do, query.edns.nsid, query.edns.version) == (4096, True, True, 0)
    assert query.edns.ecs is not None
    assert query.edns.ecs.address == ip_address("193.0.14.0")
    assert query.edns.ecs.source_prefix == 24


def test_edns_version_1_is_flagged_for_badvers() -> None:
    query = decode_query(header(ar=1) + QUESTION + opt(ttl=1 << 16))
    assert query.edns_error


@pytest.mark.parametrize(
    "wire",
    [b"", b"\x12", header()[:11]],
    ids=["empty", "one-byte", "eleven-bytes"],
)
def test_short_header_is_dropped(wire: bytes) -> None:
    with pytest.raises(Drop):
        decode_query(wire)


def test_responses_are_dropped() -> None:
    with pytest.raises(Drop):
        decode_query(header(flags=0x8000) + QUESTION)


def test_unknown_opcode() -> None:
    with pytest.raises(NotImplementedOpcode):
        decode_query(header(flags=15 << 11) + QUESTION)
    reply = header_only(header(flags=(15 << 11) | 0x0100) + QUESTION, 4)
    assert reply == struct.pack("!HHHHHH", 0x1234, 0x8000 | (15 << 11) | 4, 0, 0, 0, 0)


def pointer_loop() -> bytes:
    # additional record whose owner is a pointer to itself
    return header(ar=1) + QUESTION + b"\xc0\x25" + struct.pack("!HHIH", 1, 1, 0, 0)


def pointer_chain_loop() -> bytes:
    # two pointers pointing at each other: second points back to first, first forward to second
    first = len(header()) + len(QUESTION)
    return (
        header(ar=2)
        + QUESTION
        + struct.pack("!H", 0xC000 | (first + 12))
        + struct.pack("!HHIH", 1, 1, 0, 0)
        + struct.pack("!H", 0xC000 | first)
        + struct.pack("!HHIH", 1, 1, 0, 0)
    )


MALFORMED = {
    "qdcount-0": header(qd=0),
    "qdcount-2": header(qd=2) + QUESTION + QUESTION,
    "ancount": header(an=1) + QUESTION,
    "nscount": header(ns=1) + QUESTION,
    "label-64": header() + b"\x40" + b"a" * 64 + b"\x00" + struct.pack("!HH", 1, 1),
    "name-256": header()
    + b"\x3f"
    + b"a" * 63
    + (b"\x3f" + b"b" * 63) * 3
    + b"\x02cc\x00"
    + struct.pack("!HH", 1, 1),
    "pointer-in-qname": header() + b"\x03www\xc0\x0c" + struct.pack("!HH", 1, 1),
    "truncated-question": header() + QNAME + b"\x00",
    "unterminated-qname": header() + b"\x03www",
    "trailing-garbage": header() + QUESTION + b"junk",
    "pointer-loop": pointer_loop(),
    "forward-pointer": pointer_chain_loop(),
    "duplicate-opt": header(ar=2) + QUESTION + opt() + opt(),
    "opt-owner-not-root": header(ar=1) + QUESTION + opt(owner=b"\x01a\x00"),
    "option-overrun": header(ar=1) + QUESTION + opt(struct.pack("!HH", 65001, 10) + b"abc"),
    "rdata-overrun": header(ar=1) + QUESTION + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 20),
    "ecs-family-3": header(ar=1) + QUESTION + opt(ecs_option(3, 8, 0, b"\x01")),
    "ecs-prefix-33": header(ar=1) + QUESTION + opt(ecs_option(1, 33, 0, b"\x01\x02\x03\x04\x05")),
    "ecs-scope-nonzero": header(ar=1) + QUESTION + opt(ecs_option(1, 24, 8, b"\x01\x02\x03")),
    "ecs-address-too-long": header(ar=1) + QUESTION + opt(ecs_option(1, 16, 0, b"\x01\x02\x03")),
    "ecs-bits-past-prefix": header(ar=1) + QUESTION + opt(ecs_option(1, 20, 0, b"\x01\x02\x0f")),
    "ecs-twice": header(ar=1) + QUESTION + opt(ecs_option(1, 8, 0, b"\x01") + ecs_option(1, 8, 0, b"\x01")),
    "ecs-short": header(ar=1) + QUESTION + opt(struct.pack("!HH", 8, 2) + b"\x00\x01"),
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_is_formerr(wire: bytes) -> None:
    with pytest.raises(MalformedQuery):
        decode_query(wire)


def test_long_pointer_chain_does_not_recurse() -> None:
    # 2000 pointers, each pointing at the previous one: no RecursionError, just a valid skip
    body = bytearray(header(ar=1) + QUESTION)
    start = len(body)
    body += b"\x00"  # a root name to end the chain at
    for _ in range(2000):
        target = len(body) - (1 if len(body) == start + 1 else 2)
        body += struct.pack("!H", 0xC000 | target)
    wire = bytes(body) + struct.pack("!HHIH", 1, 1, 0, 0)
    with pytest.raises(MalformedQuery):  # ARCOUNT=1 but the chain is made of extra bytes
        decode_query(wire)


def test_ecs_ipv6_and_zero_prefix() -> None:
    v6 = decode_ecs(struct.pack("!HBB", 2, 48, 0) + bytes.fromhex("2001067c1234"))
    assert v6.address == ip_address("2001:67c:1234::")
    zero = decode_ecs(struct.pack("!HBB", 1, 0, 0))
    assert zero.source_prefix == 0
    assert zero.address == ip_address("0.0.0.0")
