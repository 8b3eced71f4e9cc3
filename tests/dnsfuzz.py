"""A seeded mutation fuzzer for the query path, shared by tests and bench scripts.

`corpus()` is a few thousand valid queries (names in and out of our zone, every kind of type
and class, with and without EDNS, NSID, ECS and unknown options, in mixed case).
`Mutator` turns them into near-valid and invalid ones: structure-aware edits first (header
counts and flags, label lengths, pointers in and around the question, names over 255 bytes,
pointer chains, duplicate OPT, an OPT owner that is not the root, option lengths that overrun,
ECS with a bad family, prefix, scope, address length or bits past the prefix), then byte-level
ones (bit flips, interesting bytes, truncation, deletion, insertion, splicing), or plain random
bytes. `judge` says what the reply to one input must be: nothing, or a message dnspython
parses with the query's ID, QR=1, never SERVFAIL (the configs fuzzed here have no SERVFAIL
branch), no larger than the UDP payload size over UDP. `fuzz_handler` runs inputs through a
`Handler` in process and counts; the bench scripts and tests report from its `Tally`.

The same inputs go over the wire in `bench/wire_fuzz.py` and `bench/soak_bench.py`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import random
import selectors
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from gslb.config.loader import load
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts, maps_for_config
from tests.server_fixture import BASIC_CONFIG

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "gslb" / "data" / "gslb.yaml"
TEST_GEOIP = ROOT / "tests" / "data" / "geoip" / "GeoIP2-City-Test.mmdb"

NAMES = (
    "www.gslb.example.com",  # steered
    "WwW.GsLb.ExAmPlE.cOm",  # steered, 0x20 case
    "gslb.example.com",  # apex: NS, SOA, MX, TXT, CAA
    "static.gslb.example.com",
    "STATIC.gslb.example.com",
    "api.gslb.example.com",  # CNAME to the steered name
    "nothing.gslb.example.com",  # NXDOMAIN
    "x.apps.gslb.example.com",  # wildcard
    "_sip._tcp.gslb.example.com",
    "docs.gslb.example.com",  # CNAME out of the zone
    "ns1.gslb.example.com",
    "80.2.0.192.in-addr.arpa.gslb.example.com",
    "a.b.c.d.e.f.gslb.example.com",
    "example.org",  # REFUSED
    "com",
    "",  # the root
    "id.server",  # CHAOS
    "hostname.bind",
    "version.bind",
    "VERSION.BIND",
)
QTYPES = (1, 28, 255, 16, 15, 2, 6, 33, 257, 12, 5, 13, 99, 252, 251, 41, 0, 128, 200, 254, 65535, 65280)
QCLASSES = (1, 1, 1, 1, 3, 255, 254, 4, 0, 2)
PEERS = (
    "192.0.2.1",
    "203.0.113.7",
    "81.2.69.142",  # in the test GeoIP database (GB)
    "175.16.199.3",  # in the test GeoIP database (CN)
    "2001:db8::1",
    "2001:218::1",  # in the test GeoIP database (JP)
    "10.1.2.3",
    "1.2.3.4",
)
# ECS (family, source prefix, address bytes): public, in and out of the test database,
# private, /0, host routes, IPv6
ECS_SUBNETS = (
    (1, 24, bytes([81, 2, 69])),
    (1, 24, bytes([175, 16, 199])),
    (1, 24, bytes([1, 2, 3])),
    (1, 16, bytes([89, 160])),
    (1, 32, bytes([216, 160, 83, 56])),
    (1, 23, bytes([81, 2, 68])),
    (1, 8, bytes([10])),
    (1, 0, b""),
    (2, 56, bytes.fromhex("20010218000000")),
    (2, 48, bytes.fromhex("2a02d3000000")),
    (2, 128, bytes(15) + b"\x01"),
    (2, 0, b""),
)
OPT_NSID, OPT_ECS, OPT_COOKIE, OPT_PADDING = 3, 8, 10, 12


def encode_name(text: str) -> bytes:
    """Wire form of a dotted name (labels must not contain dots; the corpus's do not)."""
    labels = [label.encode() for label in text.split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


@dataclass(frozen=True, slots=True)
class Seed:
    """A valid query and where its parts are, for the structure-aware mutations."""

    wire: bytes
    qname_end: int  # offset just past the question name
    opt_at: int = -1  # offset of the OPT record's owner (-1: no EDNS)
    ecs_at: int = -1  # offset of the ECS option's code (-1: no ECS)


def make_query(
    qid: int,
    name: str,
    qtype: int,
    qclass: int = 1,
    *,
    flags: int = 0x0100,
    edns: bool = False,
    payload: int = 1232,
    do: bool = False,
    version: int = 0,
    options: tuple[tuple[int, bytes], ...] = (),
) -> Seed:
    """One query as a `Seed`; `options` are EDNS (code, data) pairs, ECS included."""
    qname = encode_name(name)
    header = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    wire = header + qname + struct.pack("!HH", qtype, qclass)
    qname_end = 12 + len(qname)
    if not edns:
        return Seed(wire, qname_end)
    opt_at = len(wire)
    ecs_at = -1
    data = b""
    rdata_at = opt_at + 11
    for code, value in options:
        if code == OPT_ECS:
            ecs_at = rdata_at + len(data)
        data += struct.pack("!HH", code, len(value)) + value
    ttl = (version << 16) | (0x8000 if do else 0)
    wire += b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(data)) + data
    return Seed(wire, qname_end, opt_at, ecs_at)


def ecs_option(family: int, source: int, address: bytes, scope: int = 0) -> tuple[int, bytes]:
    return OPT_ECS, struct.pack("!HBB", family, source, scope) + address


def corpus(seed: int = 1) -> list[Seed]:
    """Valid queries: every name with every type, EDNS in several forms, some classes."""
    rng = random.Random(seed)
    edns_forms: list[dict[str, object]] = [
        {},
        {"edns": True},
        {"edns": True, "payload": 512, "do": True},
        {"edns": True, "payload": 4096},
        {"edns": True, "payload": 0},
        {"edns": True, "version": 1},
        {"edns": True, "options": ((OPT_NSID, b""),)},
        {"edns": True, "options": ((OPT_COOKIE, bytes(range(8))), (65001, b"x" * 5))},
        {"edns": True, "options": ((OPT_PADDING, bytes(40)),)},
    ]
    for family, source, address in ECS_SUBNETS:
        edns_forms.append({"edns": True, "options": (ecs_option(family, source, address),)})
        edns_forms.append(
            {"edns": True, "do": True, "options": ((OPT_NSID, b""), ecs_option(family, source, address))}
        )
    seeds: list[Seed] = []
    for name in NAMES:
        for qtype in QTYPES:
            for form in rng.sample(edns_forms, 3):
                qclass = 1 if rng.random() < 0.8 else rng.choice(QCLASSES)
                flags = rng.choice((0x0000, 0x0100, 0x0110, 0x0120, 0x0130))
                seeds.append(
                    make_query(rng.randrange(1 << 16), name, qtype, qclass, flags=flags, **form)  # type: ignore[arg-type]
                )
    return seeds


# --- mutations --------------------------------------------------------------------------------

INTERESTING = (0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xFE, 0xFF)


class Mutator:
    """Seeded: the same seed and corpus give the same inputs."""

    def __init__(self, rng: random.Random, seeds: list[Seed]) -> None:
        self.rng = rng
        self.seeds = seeds
        self.structural: list[Callable[[Seed], bytes]] = [
            self.counts,
            self.flags,
            self.label_length,
            self.pointer_in_question,
            self.long_name,
            self.pointer_chain,
            self.duplicate_opt,
            self.opt_owner,
            self.opt_rdlength,
            self.option_overrun,
            self.edns_fields,
            self.ecs,
            self.ecs,
            self.ecs,
            self.extra_record,
            self.trailing,
        ]
        self.generic: list[Callable[[bytearray], bytearray]] = [
            self.flip_bits,
            self.interesting_byte,
            self.truncate,
            self.delete_range,
            self.insert_bytes,
            self.splice,
        ]

    def input(self) -> bytes:
        """One fuzz input: 20 % valid variants of a corpus query, 4 % random bytes, the rest
        mutated."""
        rng = self.rng
        roll = rng.random()
        seed = rng.choice(self.seeds)
        if roll < 0.2:
            return self.valid_variant(seed)
        if roll < 0.24:
            return rng.randbytes(rng.choice((0, 1, 2, 11, 12, 13, rng.randrange(600))))
        if roll < 0.8:
            wire = bytearray(rng.choice(self.structural)(seed))
            for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
                wire = rng.choice(self.generic)(wire)
        else:
            wire = bytearray(seed.wire)
            for _ in range(rng.randint(1, 4)):
                wire = rng.choice(self.generic)(wire)
        if len(wire) >= 2 and rng.random() < 0.5:
            wire[0:2] = struct.pack("!H", rng.randrange(1 << 16))
        return bytes(wire)

    def valid_variant(self, seed: Seed) -> bytes:
        """Still a valid query: a new ID, the name's letters in random case, and for an ECS
        query a random subnet (many new subnets: the shape path and the reply cache's
        eviction)."""
        rng = self.rng
        wire = bytearray(seed.wire)
        wire[0:2] = struct.pack("!H", rng.randrange(1 << 16))
        for at in range(12, seed.qname_end):
            if 0x61 <= wire[at] | 0x20 <= 0x7A and rng.random() < 0.3:
                wire[at] ^= 0x20
        if seed.ecs_at >= 0 and rng.random() < 0.8:
            family = struct.unpack_from("!H", wire, seed.ecs_at + 4)[0]
            width = 32 if family == 1 else 128
            source = rng.choice((24, 24, 24, 32, 16, 56, 48, rng.randrange(width + 1)))
            source = min(source, width)
            value = rng.getrandbits(width) & ~((1 << (width - source)) - 1)
            address = value.to_bytes(width // 8, "big")[: (source + 7) // 8]
            option = struct.pack("!HBB", family, source, 0) + address
            wire = wire[: seed.ecs_at + 2] + struct.pack("!H", len(option)) + option
            rdlength_at = seed.opt_at + 9
            wire[rdlength_at : rdlength_at + 2] = struct.pack("!H", len(wire) - (seed.opt_at + 11))
        return bytes(wire)

    # structure-aware: each returns a changed copy of the seed's wire

    def counts(self, seed: Seed) -> bytes:
        rng = self.rng
        wire = bytearray(seed.wire)
        which = rng.randrange(4)
        value = rng.choice((0, 1, 2, 3, 8, 9, 0x7FFF, 0xFFFF, rng.randrange(1 << 16)))
        wire[4 + 2 * which : 6 + 2 * which] = struct.pack("!H", value)
        return bytes(wire)

    def flags(self, seed: Seed) -> bytes:
        rng = self.rng
        wire = bytearray(seed.wire)
        flags = struct.unpack_from("!H", wire, 2)[0]
        kind = rng.randrange(4)
        if kind == 0:
            flags = rng.randrange(1 << 16)
        elif kind == 1:
            flags = (flags & ~0x7800) | (rng.randrange(16) << 11)  # opcode
        elif kind == 2:
            flags |= rng.choice((0x0040, 0x0020, 0x0010, 0x0200, 0x0400, 0x8000))  # Z, AD, CD, TC, AA, QR
        else:
            flags = (flags & ~0x000F) | rng.randrange(16)  # an rcode in a query
        wire[2:4] = struct.pack("!H", flags)
        return bytes(wire)

    def _label_starts(self, seed: Seed) -> list[int]:
        starts = []
        offset = 12
        while offset < seed.qname_end - 1:
            starts.append(offset)
            offset += 1 + seed.wire[offset]
        return starts

    def label_length(self, seed: Seed) -> bytes:
        rng = self.rng
        wire = bytearray(seed.wire)
        starts = self._label_starts(seed) or [12]
        at = rng.choice(starts)
        wire[at] = rng.choice(
            (*INTERESTING, min(wire[at] + 1, 255), max(wire[at] - 1, 0), rng.randrange(256))
        )
        return bytes(wire)

    def pointer_in_question(self, seed: Seed) -> bytes:
        """A compression pointer in the QNAME: to itself, forward, to the header, anywhere."""
        rng = self.rng
        starts = [*self._label_starts(seed), seed.qname_end - 1]
        at = rng.choice(starts)
        target = rng.choice((at, 12, 0, 2, at + 2, len(seed.wire), rng.randrange(1 << 14)))
        pointer = struct.pack("!H", 0xC000 | (target & 0x3FFF))
        return seed.wire[:at] + pointer + seed.wire[seed.qname_end :]

    def long_name(self, seed: Seed) -> bytes:
        """A QNAME over 255 bytes, a label over 63, or exactly at the limits."""
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 bytes
        elif kind == 1:
            name = b"\x40" + b"b" * 64 + b"\x00"
        elif kind == 2:
            name = b"".join(b"\x3f" + b"c" * 63 for _ in range(3)) + b"\x3d" + b"c" * 61 + b"\x00"  # 255
        else:
            name = b"\x01x" * 127 + b"\x00"  # 255 bytes, 127 labels
            if rng.random() < 0.5:
                name = b"\x01x" + name  # 257
        return seed.wire[:12] + name + seed.wire[seed.qname_end :]

    def pointer_chain(self, seed: Seed) -> bytes:
        """Additional records whose owners are long chains of backward pointers (dnslib
        recursed on these), ending at the question or looping."""
        rng = self.rng
        wire = bytearray(seed.wire)
        length = rng.choice((2, 50, 300, 1000, 3000))
        base = len(wire) + 11  # the chain lives in the RDATA of a first record
        chain = bytearray()
        previous = 12
        for index in range(length):
            chain += struct.pack("!H", 0xC000 | previous)
            previous = base + 2 * index
        if rng.random() < 0.2:
            chain[0:2] = struct.pack("!H", 0xC000 | (base + 2 * (length - 1)))  # a loop
        wire += b"\x00" + struct.pack("!HHIH", 16, 1, 0, len(chain)) + chain
        wire += struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4)
        arcount = struct.unpack_from("!H", wire, 10)[0]
        wire[10:12] = struct.pack("!H", arcount + 2)
        return bytes(wire)

    def duplicate_opt(self, seed: Seed) -> bytes:
        if seed.opt_at < 0:
            extra = make_query(0, "a", 1, edns=True)
            opt = extra.wire[extra.opt_at :]
        else:
            opt = seed.wire[seed.opt_at :]
        wire = bytearray(seed.wire + opt)
        arcount = struct.unpack_from("!H", wire, 10)[0]
        wire[10:12] = struct.pack("!H", arcount + 1)
        return bytes(wire)

    def opt_owner(self, seed: Seed) -> bytes:
        if seed.opt_at < 0:
            return self.duplicate_opt(seed)
        owner = self.rng.choice((b"\x01a\x00", b"\xc0\x0c", b"\xc0" + bytes((seed.opt_at & 0xFF,)), b"\x3f"))
        return seed.wire[: seed.opt_at] + owner + seed.wire[seed.opt_at + 1 :]

    def opt_rdlength(self, seed: Seed) -> bytes:
        if seed.opt_at < 0:
            return self.counts(seed)
        wire = bytearray(seed.wire)
        at = seed.opt_at + 9
        current = struct.unpack_from("!H", wire, at)[0]
        value = self.rng.choice((0, 1, 3, current - 1, current + 1, current + 4, 0xFFFF))
        wire[at : at + 2] = struct.pack("!H", value & 0xFFFF)
        return bytes(wire)

    def option_overrun(self, seed: Seed) -> bytes:
        """An option whose length runs past the OPT RDATA, or a header cut short."""
        if seed.opt_at < 0:
            return self.duplicate_opt(seed)
        rng = self.rng
        wire = bytearray(seed.wire)
        rdata = seed.opt_at + 11
        if len(wire) > rdata + 4 and rng.random() < 0.7:
            wire[rdata + 2 : rdata + 4] = struct.pack("!H", rng.choice((len(wire) - rdata, 0xFFFF, 5)))
        else:
            piece = rng.choice((b"\x00", b"\x00\x08", b"\x00\x08\x00", b"\x00\x08\x00\x10\x00\x01"))
            wire += piece
            size = struct.unpack_from("!H", wire, rdata - 2)[0]
            wire[rdata - 2 : rdata] = struct.pack("!H", (size + len(piece)) & 0xFFFF)
        return bytes(wire)

    def edns_fields(self, seed: Seed) -> bytes:
        if seed.opt_at < 0:
            return self.duplicate_opt(seed)
        rng = self.rng
        wire = bytearray(seed.wire)
        at = seed.opt_at + 3  # CLASS (payload), then TTL: ext rcode, version, flags
        which = rng.randrange(4)
        if which == 0:
            wire[at : at + 2] = struct.pack("!H", rng.choice((0, 1, 511, 512, 1231, 1233, 65535)))
        elif which == 1:
            wire[at + 2] = rng.randrange(256)  # extended rcode in a query
        elif which == 2:
            wire[at + 3] = rng.choice((1, 2, 255))  # version
        else:
            wire[at + 4 : at + 6] = struct.pack("!H", rng.randrange(1 << 16))  # DO and Z
        if rng.random() < 0.2:
            wire[seed.opt_at + 1 : seed.opt_at + 3] = struct.pack("!H", rng.choice((1, 0, 255)))  # not OPT
        return bytes(wire)

    def ecs(self, seed: Seed) -> bytes:
        """Family, source prefix, scope, address length or trailing bits wrong (or right)."""
        rng = self.rng
        if seed.ecs_at < 0:
            family, source, address = rng.choice(ECS_SUBNETS)
            base = seed if seed.opt_at >= 0 else None
            options: tuple[tuple[int, bytes], ...] = (ecs_option(family, source, address),)
            if base is not None and rng.random() < 0.5:
                options = (*options, *options)  # two ECS options
            qid = int.from_bytes(seed.wire[:2], "big")
            return make_query(
                qid, rng.choice(NAMES), rng.choice((1, 28, 255)), edns=True, options=options
            ).wire
        wire = bytearray(seed.wire)
        at = seed.ecs_at
        family, source, scope = struct.unpack_from("!HBB", wire, at + 4)
        address = bytes(wire[at + 8 :])
        kind = rng.randrange(6)
        if kind == 0:
            family = rng.choice((0, 3, 0xFFFF, 2 if family == 1 else 1))
        elif kind == 1:
            source = rng.choice((0, 1, 7, 9, 25, 32, 33, 64, 128, 129, 255, rng.randrange(256)))
        elif kind == 2:
            scope = rng.choice((1, 24, 255))
        elif kind == 3:
            address = address[:-1] if address and rng.random() < 0.5 else address + rng.randbytes(1)
        elif kind == 4 and address:
            address = address[:-1] + bytes((address[-1] | rng.randrange(1, 256),))  # bits past the prefix
        else:
            source = rng.randrange(33 if family == 1 else 129)
            address = rng.randbytes((source + 7) // 8)
        option = struct.pack("!HBB", family, source, scope) + address
        new = wire[: at + 2] + struct.pack("!H", len(option)) + option
        # the OPT RDATA length follows the option (ECS is always the last option here)
        rdlength_at = seed.opt_at + 9
        rdata = len(new) - (seed.opt_at + 11)
        new[rdlength_at : rdlength_at + 2] = struct.pack("!H", rdata & 0xFFFF)
        return bytes(new)

    def extra_record(self, seed: Seed) -> bytes:
        """A record in answer or authority (ANCOUNT/NSCOUNT > 0), or an IXFR's SOA."""
        rng = self.rng
        record = b"\xc0\x0c" + struct.pack("!HHIH", rng.choice((1, 6, 41)), 1, 300, 4) + bytes(4)
        question_end = seed.qname_end + 4
        wire = bytearray(seed.wire[:question_end] + record + seed.wire[question_end:])
        which = rng.choice((6, 8))
        count = struct.unpack_from("!H", wire, which)[0]
        wire[which : which + 2] = struct.pack("!H", count + 1)
        return bytes(wire)

    def trailing(self, seed: Seed) -> bytes:
        return seed.wire + self.rng.choice(
            (b"\x00", b"\x00" * 11, self.rng.randbytes(self.rng.randrange(1, 64)))
        )

    # byte level

    def flip_bits(self, wire: bytearray) -> bytearray:
        for _ in range(self.rng.randint(1, 4)):
            if wire:
                wire[self.rng.randrange(len(wire))] ^= 1 << self.rng.randrange(8)
        return wire

    def interesting_byte(self, wire: bytearray) -> bytearray:
        if wire:
            wire[self.rng.randrange(len(wire))] = self.rng.choice(INTERESTING)
        return wire

    def truncate(self, wire: bytearray) -> bytearray:
        return wire[: self.rng.randrange(len(wire) + 1)]

    def delete_range(self, wire: bytearray) -> bytearray:
        if not wire:
            return wire
        start = self.rng.randrange(len(wire))
        del wire[start : start + self.rng.randint(1, 8)]
        return wire

    def insert_bytes(self, wire: bytearray) -> bytearray:
        at = self.rng.randrange(len(wire) + 1)
        piece = self.rng.randbytes(self.rng.randint(1, 8)) if self.rng.random() < 0.5 else wire[at : at + 8]
        wire[at:at] = piece
        return wire

    def splice(self, wire: bytearray) -> bytearray:
        other = self.rng.choice(self.seeds).wire
        cut = self.rng.randrange(len(wire) + 1)
        return wire[:cut] + other[self.rng.randrange(len(other) + 1) :]


# --- the property -------------------------------------------------------------------------------


def judge(query: bytes, reply: bytes | None, *, tcp: bool, udp_limit: int = 1232) -> tuple[str, str | None]:
    """(what the reply was: "drop", an rcode name, "+TC" appended when truncated; what is
    wrong with it, or None). A reply must parse with dnspython, nothing left over, carry the
    query's ID, QR=1 and RA=0, not be SERVFAIL, and over UDP fit the largest payload we offer."""
    if reply is None:
        return "drop", None
    outcome, problem = _parsed(reply)
    if problem is None and (len(query) < 2 or reply[:2] != query[:2]):
        problem = f"reply ID {reply[:2].hex()} is not the query's {query[:2].hex()}"
    if problem is None and not tcp and len(reply) > udp_limit:
        problem = f"{len(reply)}-byte reply over UDP, more than {udp_limit}"
    return outcome, problem


_PARSED: dict[bytes, tuple[str, str | None]] = {}


def _parsed(reply: bytes) -> tuple[str, str | None]:
    """dnspython's view of a reply, remembered by the reply without its ID (many replies differ
    only in their ID: dnspython's verdict cannot depend on it)."""
    body = reply[2:]
    found = _PARSED.get(body)
    if found is not None:
        return found
    try:
        message = dns.message.from_wire(reply, ignore_trailing=False)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError) as exc:
        found = ("unparsed", f"dnspython cannot parse the reply: {type(exc).__name__}: {exc}")
    else:
        rcode = message.rcode()
        outcome = dns.rcode.to_text(rcode) + ("+TC" if message.flags & dns.flags.TC else "")
        problem = None
        if not message.flags & dns.flags.QR:
            problem = "QR=0 in a reply"
        elif message.flags & dns.flags.RA:
            problem = "RA=1 from an authoritative server"
        elif rcode == dns.rcode.SERVFAIL:
            problem = "SERVFAIL (the handler maps a bug to SERVFAIL)"
        found = (outcome, problem)
    if len(_PARSED) >= 200_000:
        _PARSED.clear()
    _PARSED[body] = found
    return found


class ErrorRecords(logging.Handler):
    """Keeps every record at ERROR or above (one attached to the root logger sees them all)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def error_records() -> Iterator[ErrorRecords]:
    """Collect the records logged at ERROR or above while the block runs."""
    collector = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector
    finally:
        root.removeHandler(collector)


@dataclass
class Tally:
    """What a fuzz run saw. `failures` must be 0."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "drop", rcode names, "+TC"
    problems: Counter[str] = field(default_factory=Counter)  # judge's verdicts and wire trouble
    exceptions: int = 0  # escaped the handler
    error_logs: int = 0  # records at ERROR or above
    notes: Counter[str] = field(default_factory=Counter)  # counts that are not failures
    examples: list[str] = field(default_factory=list)  # the first failing inputs, reproducible
    seconds: float = 0.0

    @property
    def failures(self) -> int:
        return self.exceptions + self.error_logs + sum(self.problems.values())

    def problem(self, what: str, example: str) -> None:
        self.problems[what.split(":", maxsplit=1)[0]] += 1
        self.example(f"{what}: {example}")

    def example(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)

    def merge(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.outcomes.update(other.outcomes)
        self.problems.update(other.problems)
        self.exceptions += other.exceptions
        self.error_logs += other.error_logs
        self.notes.update(other.notes)
        for text in other.examples:
            self.example(text)

    def report(self) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines = [f"inputs: {self.inputs:,} in {self.seconds:.1f} s ({rate:,.0f}/s)"]
        lines.append(
            "replies by outcome: "
            + ", ".join(
                f"{name} {count:,}" for name, count in sorted(self.outcomes.items(), key=lambda i: -i[1])
            )
        )
        lines.append(
            f"failures: {self.failures} (exceptions {self.exceptions}, ERROR logs {self.error_logs}, "
            f"bad replies {dict(self.problems)})"
        )
        if self.notes:
            lines.append(
                "notes: " + ", ".join(f"{name} {count:,}" for name, count in sorted(self.notes.items()))
            )
        lines.extend(f"  e.g. {text}" for text in self.examples)
        return "\n".join(lines)


def build_handler(maps_dir: Path | None) -> Handler:
    """The example config's handler with MaxMind's test database; with `maps_dir`, its
    compiled steering maps too, so that ECS queries take the shape path."""
    config = load(EXAMPLE_CONFIG)
    config = replace(config, geoip=replace(config.geoip, database=TEST_GEOIP))
    parts = build_parts(config, HealthView())
    if maps_dir is not None:
        parts.orders.use_maps(maps_for_config(config, maps_dir))
        parts.handler.maps_ready()
    return parts.handler


def fuzz_handler(
    handler: Handler,
    count: int,
    *,
    seed: int = 0,
    swap_every: int = 10_000,
    progress: Callable[[Tally], None] | None = None,
    progress_every: int = 100_000,
) -> Tally:
    """`count` inputs through `handler.handle`, each judged; every `swap_every` inputs the
    health generation moves on (as a health change does), so cached steered replies go stale."""
    rng = random.Random(seed)
    mutator = Mutator(rng, corpus())
    tally = Tally()
    udp_limit = handler.udp_payload_size
    started = time.perf_counter()
    with error_records() as errors:
        for index in range(count):
            wire = mutator.input()
            peer = rng.choice(PEERS)
            tcp = rng.random() < 0.3
            logged = len(errors.records)
            try:
                reply = handler.handle(wire, peer, tcp=tcp)
            except Exception as exc:
                tally.exceptions += 1
                tally.example(f"{type(exc).__name__}: {exc}: peer={peer} tcp={tcp} input={wire.hex()}")
                continue
            finally:
                tally.inputs += 1
            outcome, problem = judge(wire, reply, tcp=tcp, udp_limit=udp_limit)
            tally.outcomes[outcome] += 1
            if problem is not None:
                tally.problem(problem, f"peer={peer} tcp={tcp} input={wire.hex()}")
            if len(errors.records) > logged:
                tally.error_logs += len(errors.records) - logged
                tally.example(f"logged {errors.records[-1].getMessage()!r}: peer={peer} input={wire.hex()}")
            if swap_every and index % swap_every == swap_every - 1:
                handler.set_steering(handler.steering)
                tally.notes["health generations"] += 1
            if progress is not None and index % progress_every == progress_every - 1:
                tally.seconds = time.perf_counter() - started
                progress(tally)
    tally.seconds = time.perf_counter() - started
    return tally


# --- over the wire ------------------------------------------------------------------------------

# tests/server_fixture.py's BASIC_CONFIG with response rate limiting in log-only mode: every
# fuzz input comes from 127.0.0.1, far over the per-network limits, and every reply should come
# back to be judged; log-only still runs each reply through the limiter's accounts.
WIRE_CONFIG = BASIC_CONFIG.replace("server:\n", "server:\n  rrl: {{log_only: true}}\n", 1)


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def sentinel(number: int) -> bytes:
    """A valid query nobody else sends: once its reply is back, so are the replies to
    everything sent before it on the same socket (one server process answers in order)."""
    return make_query(number & 0xFFFF, f"s{number}.sentinel.gslb.example.com", 1).wire


def _is_reply_to(reply: bytes, query: bytes) -> bool:
    return reply[:2] == query[:2] and query[12:-4] in reply


def judge_wire(reply: bytes, sent: dict[bytes, bytes], tally: Tally, *, tcp: bool, where: str) -> None:
    query = sent.get(reply[:2])
    if query is None:
        tally.problem(f"reply with an ID nobody sent over {where}", reply.hex())
        return
    outcome, problem = judge(query, reply, tcp=tcp)
    tally.outcomes[outcome] += 1
    if problem is not None:
        tally.problem(f"{where} {problem}", f"input={query.hex()}")


def udp_batch(
    sock: socket.socket, wires: list[bytes], number: int, tally: Tally, *, timeout_s: float = 1.0
) -> bool:
    """Send `wires` then a sentinel on a connected UDP socket and judge every reply until the
    sentinel's; False when the sentinel was never answered (three tries)."""
    sent = {wire[:2]: wire for wire in wires if len(wire) >= 2}
    for wire in wires:
        try:
            sock.send(wire)
        except OSError as exc:
            tally.notes[f"UDP send failed ({exc.strerror})"] += 1
    tally.inputs += len(wires)
    mark = sentinel(number)
    sock.settimeout(timeout_s)
    for _attempt in range(3):
        sock.send(mark)
        while True:
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                tally.notes["sentinel retries"] += 1
                break
            if _is_reply_to(reply, mark):
                return True
            if b"\x08sentinel\x04gslb" in reply:
                continue  # a late reply to an earlier sentinel
            tally.notes["UDP replies"] += 1
            judge_wire(reply, sent, tally, tcp=False, where="UDP")
    tally.problem("no reply to a valid query over UDP", mark.hex())
    return False


def tcp_session(
    address: tuple[str, int],
    wires: list[bytes],
    number: int,
    rng: random.Random,
    tally: Tally,
    *,
    bad_framing: bool = False,
    timeout_s: float = 30.0,
) -> None:
    """Pipeline `wires` on one connection in chunks of random sizes (partial writes, the odd
    pause) while reading replies. It ends with a sentinel, whose reply is awaited; or, with
    `bad_framing`, with a length prefix the bytes never fill, after which the server must close
    the connection (its read timeout)."""
    stream = b"".join(framed(wire) for wire in wires)
    mark = sentinel(number)
    stream += rng.choice((b"\x01", b"\x01\x00" + rng.randbytes(10))) if bad_framing else framed(mark)
    sent = {wire[:2]: wire for wire in wires if len(wire) >= 2}
    tally.inputs += len(wires)
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with socket.create_connection(address, timeout=5.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while time.monotonic() < deadline:
                events = selector.select(timeout=0.5)
                if not events:
                    continue
                _key, mask = events[0]
                if mask & selectors.EVENT_WRITE and stream:
                    chunk = stream[: rng.choice((1, 2, 3, 7, 20, 64, 300, 1500))]
                    try:
                        stream = stream[sock.send(chunk) :]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        tally.problem("server closed a TCP connection while we sent", f"session {number}")
                        return
                    if not stream:
                        selector.modify(sock, selectors.EVENT_READ)
                        tally.notes["TCP sessions"] += 1
                    elif rng.random() < 0.01:
                        time.sleep(0.005)
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        if bad_framing and not stream:
                            tally.notes["TCP connections cut for bad framing"] += 1
                        else:
                            tally.problem("server closed a TCP connection early", f"session {number}")
                        return
                    buffer += data
                    while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                        size = int.from_bytes(buffer[:2], "big")
                        reply, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                        if not bad_framing and _is_reply_to(reply, mark):
                            return
                        tally.notes["TCP replies"] += 1
                        judge_wire(reply, sent, tally, tcp=True, where="TCP")
    tally.problem("a TCP session did not finish", f"session {number} within {timeout_s} s")


def answers_valid_query(address: tuple[str, int], *, tcp: bool, timeout_s: float = 10.0) -> bool:
    """Whether the server answers static.gslb.example.com A with its address (retried until
    `timeout_s`: the positive signal that it is up)."""
    query = make_query(0x5A5A, "static.gslb.example.com", 1).wire
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if tcp:
                with socket.create_connection(address, timeout=1.0) as sock:
                    sock.sendall(framed(query))
                    head = _recv_exactly(sock, 2)
                    reply = _recv_exactly(sock, int.from_bytes(head, "big")) if head else None
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(1.0)
                    sock.connect(address)
                    sock.send(query)
                    reply = sock.recv(65535)
        except OSError:
            reply = None
        if reply is not None and reply[:2] == query[:2] and bytes([192, 0, 2, 80]) in reply:
            return True
        time.sleep(0.05)
    return False


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def log_problems(text: str) -> list[str]:
    """Lines of a gslb log that show a bug: tracebacks, ERROR and CRITICAL records."""
    return [
        line
        for line in text.splitlines()
        if "Traceback" in line or " ERROR " in line or " CRITICAL " in line or "exception was never" in line
    ]


def wire_fuzz(
    address: tuple[str, int],
    count: int,
    *,
    seed: int = 0,
    tcp_share: float = 0.3,
    batch: int = 50,
    tcp_workers: int = 2,
    bad_framing_share: float = 0.1,
    progress: Callable[[Tally], None] | None = None,
) -> Tally:
    """`count` fuzz inputs to a running server: most over UDP in batches of `batch`, each
    closed by a sentinel; `tcp_share` of them over TCP in sessions of 1-40 pipelined messages
    sent in random chunks, `tcp_workers` sessions at a time, `bad_framing_share` of the sessions
    ending in a length prefix that is never filled. Every reply is judged."""
    seeds = corpus()
    rng = random.Random(seed)
    tcp_total = int(count * tcp_share)
    udp_total = count - tcp_total
    started = time.perf_counter()

    def session(number: int, size: int) -> Tally:
        own = random.Random(seed * 1_000_003 + number)
        mutator = Mutator(own, seeds)
        tally = Tally()
        wires = [mutator.input() for _ in range(size)]
        bad = own.random() < bad_framing_share
        tcp_session(address, wires, 1_000_000 + number, own, tally, bad_framing=bad)
        return tally

    sizes = []
    left = tcp_total
    while left > 0:
        sizes.append(min(left, rng.randint(1, 40)))
        left -= sizes[-1]
    udp = Tally()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(tcp_workers, 1)) as pool:
        futures = [pool.submit(session, number, size) for number, size in enumerate(sizes)]
        mutator = Mutator(rng, seeds)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sent = 0
            number = 0
            while sent < udp_total:
                wires = [mutator.input() for _ in range(min(batch, udp_total - sent))]
                udp_batch(sock, wires, number, udp)
                sent += len(wires)
                number += 1
                if progress is not None and number % 200 == 0:
                    udp.seconds = time.perf_counter() - started
                    progress(udp)
        total = Tally()
        total.merge(udp)
        for future in futures:
            total.merge(future.result())
    total.seconds = time.perf_counter() - started
    return total
