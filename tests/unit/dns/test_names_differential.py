"""Any label sequence in -> the reply dnspython reads and a model of the example zone predicts.

In-process through the public facade (`build_parts(...).handler.handle`) with the embedded
default config. Names are label sequences of any octets ("." and "\\" and NUL included,
non-ASCII, 63-octet labels, names of up to 255 octets) under gslb.example.com or outside it.
The model: a name is ours iff its last three labels are gslb, example, com (ASCII case folded,
whole labels: "xgslb.example.com" and [www.gslb, example, com] are not); ours and present in
zones/gslb.example.com.zone (or the service www, an empty non-terminal, or under the wildcard
*.apps) -> NOERROR, ours and absent -> NXDOMAIN with the SOA, not ours -> REFUSED. SERVFAIL is
always a failure.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Protocol

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.health.view import HealthView
from gslb.responder import build_parts
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = (b"gslb", b"example", b"com")
APEX = dns.name.Name([*ZONE, b""])
MAX_NAME = 255  # octets on the wire, with the length octets and the root

# Owners of zones/gslb.example.com.zone and the service, relative to the apex, leftmost first.
OWNERS = {
    (),
    (b"ns1",),
    (b"ns2",),
    (b"mail",),
    (b"static",),
    (b"api",),
    (b"docs",),
    (b"_sip", b"_tcp"),
    (b"sip",),
    (b"*", b"apps"),
    (b"80", b"2", b"0", b"192", b"in-addr", b"arpa"),
    (b"www",),  # the service
}
NODES = {owner[i:] for owner in OWNERS for i in range(len(owner) + 1)}  # with empty non-terminals

# Labels worth meeting often: the zone's own, near misses and awkward octets.
SPECIAL_LABELS = [
    *{label for owner in OWNERS for label in owner},
    *ZONE,
    b"xgslb",
    b"gslbx",
    b"www.gslb",
    b"gslb.example.com",
    b"example.com",
    b"a.b",
    b".",
    b"..",
    b"\\",
    b"\\.",
    b"\x00",
    b"\xe9",
    b"\xc9",
    b"caf\xe9",
    b"\xff" * 63,
    b"a" * 63,
    b"*",
    b"-",
]

QTYPES: list[str | int] = [
    "A",
    "AAAA",
    "TXT",
    "MX",
    "NS",
    "SOA",
    "SRV",
    "PTR",
    "CNAME",
    "CAA",
    "HINFO",
    "HTTPS",
    "ANY",
    65280,
]


def fold(label: bytes) -> bytes:
    """RFC 4343: A-Z to a-z, every other octet as it is (bytes.lower is ASCII only)."""
    return label.lower()


def relative(labels: tuple[bytes, ...]) -> tuple[bytes, ...] | None:
    """The labels left of the apex when the name is at or under gslb.example.com, else None."""
    if len(labels) < len(ZONE) or tuple(fold(x) for x in labels[-len(ZONE) :]) != ZONE:
        return None
    return tuple(fold(x) for x in labels[: -len(ZONE)])


def exists(rel: tuple[bytes, ...]) -> bool:
    """The node exists, or RFC 4592 synthesises it from the wildcard at its closest encloser."""
    if rel in NODES:
        return True
    encloser = next(rel[i:] for i in range(1, len(rel) + 1) if rel[i:] in NODES)
    return (b"*", *encloser) in NODES


def wire_length(labels: tuple[bytes, ...]) -> int:
    return sum(1 + len(label) for label in labels) + 1


# --- strategies ---------------------------------------------------------------------------------


def random_case(label: bytes, seed: int) -> bytes:
    """Flip the case of ASCII letters at random (DNS 0x20); other octets stay."""
    rng = random.Random(seed)
    return bytes(
        c ^ 0x20 if chr(c).isascii() and chr(c).isalpha() and rng.random() < 0.5 else c for c in label
    )


labels_st = st.one_of(
    st.sampled_from(SPECIAL_LABELS),
    st.binary(min_size=1, max_size=63),
    st.binary(min_size=62, max_size=63),
    st.text("abc.\\*-_", min_size=1, max_size=12).map(str.encode),
)

OUTSIDE = st.sampled_from(
    [
        (),  # the root and single labels
        (b"example", b"com"),
        (b"com",),
        (b"xgslb", b"example", b"com"),
        (b"gslb", b"example", b"org"),
        (b"gslb", b"example", b"com", b"net"),
        (b"gslb.example", b"com"),
        (b"gslb", b"example.com"),
        (b"gslb.example.com",),
        (b"gslb\x00", b"example", b"com"),
        (b"gsl\xe2", b"example", b"com"),
    ]
)
suffixes_st = st.one_of(st.just(ZONE), OUTSIDE)  # half ours, half near misses and strangers


def fill(labels: tuple[bytes, ...], octet: int) -> tuple[bytes, ...]:
    """Labels of `octet` added on the left until the name is exactly 255 octets long."""
    room = MAX_NAME - wire_length(labels)
    while room >= 2:
        size = min(63, room - 1)
        if room - (size + 1) == 1:  # one octet left over fits no label: leave two
            size -= 1
        labels = (bytes((octet,)) * size, *labels)
        room -= size + 1
    return labels


@st.composite
def names_st(draw: st.DrawFn) -> tuple[bytes, ...]:
    suffix: tuple[bytes, ...] = draw(suffixes_st)
    prefix: list[bytes] = draw(
        st.one_of(
            st.lists(labels_st, max_size=5),
            st.sampled_from(sorted(OWNERS)).map(list),
            st.tuples(st.lists(labels_st, min_size=1, max_size=2), st.sampled_from([b"apps", b"www"])).map(
                lambda x: [*x[0], x[1]]
            ),
        )
    )
    labels = (*prefix, *suffix)
    while wire_length(labels) > MAX_NAME:
        labels = labels[1:]
    if draw(st.booleans()):
        labels = fill(labels, draw(st.sampled_from([ord("a"), ord("."), ord("\\"), 0, 0xE9])))
    seed = draw(st.integers(0, 2**32 - 1))
    return tuple(random_case(label, seed + i) for i, label in enumerate(labels))


@dataclass(frozen=True)
class Ecs:
    family: int
    source: int
    address: bytes  # the significant octets, bits past the prefix zero

    def option(self) -> bytes:
        data = struct.pack("!HBB", self.family, self.source, 0) + self.address
        return struct.pack("!HH", 8, len(data)) + data


@st.composite
def ecs_st(draw: st.DrawFn) -> Ecs:
    family = draw(st.sampled_from([1, 2]))
    width = 32 if family == 1 else 128
    source = draw(st.one_of(st.sampled_from([0, 24, width]), st.integers(0, width)))
    whole = draw(st.binary(min_size=width // 8, max_size=width // 8))
    kept = (source + 7) // 8
    address = bytearray(whole[:kept])
    if source % 8:
        address[-1] &= (0xFF << (8 - source % 8)) & 0xFF
    return Ecs(family, source, bytes(address))


@dataclass(frozen=True)
class Query:
    qid: int
    labels: tuple[bytes, ...]
    qtype: int
    edns: bool
    payload: int
    ecs: Ecs | None
    tcp: bool

    def question(self) -> bytes:
        name = b"".join(bytes((len(label),)) + label for label in self.labels) + b"\x00"
        return name + struct.pack("!HH", self.qtype, 1)

    def wire(self) -> bytes:
        head = struct.pack("!HHHHHH", self.qid, 0x0100, 1, 0, 0, 1 if self.edns else 0)
        opt = b""
        if self.edns:
            options = self.ecs.option() if self.ecs is not None else b""
            opt = b"\x00" + struct.pack("!HHIH", 41, self.payload, 0, len(options)) + options
        return head + self.question() + opt

    @property
    def name(self) -> dns.name.Name:
        return dns.name.Name([*self.labels, b""])


@st.composite
def queries_st(draw: st.DrawFn) -> Query:
    edns = draw(st.booleans())
    return Query(
        qid=draw(st.integers(0, 0xFFFF)),
        labels=draw(names_st()),
        qtype=dns.rdatatype.RdataType.make(draw(st.sampled_from(QTYPES))),
        edns=edns,
        payload=draw(st.sampled_from([512, 1232, 4096])),
        ecs=draw(st.none() | ecs_st()) if edns else None,
        tcp=draw(st.booleans()),
    )


# --- the test -----------------------------------------------------------------------------------


class Handle(Protocol):
    def __call__(self, wire: bytes, peer: str, *, tcp: bool = False) -> bytes | None: ...


@pytest.fixture(scope="module")
def handle() -> Handle:
    """The query path of `gslb serve` with the embedded default config, every endpoint up."""
    return build_parts(load(EXAMPLE_CONFIG), HealthView()).handler.handle


def check(handle: Handle, query: Query) -> None:
    wire = query.wire()
    assert wire_length(query.labels) <= MAX_NAME
    raw = handle(wire, "127.0.0.1", tcp=query.tcp)
    assert isinstance(raw, bytes), f"no reply to a well-formed query for {query.name}"

    reply = dns.message.from_wire(raw)

    assert reply.id == query.qid
    assert reply.flags & dns.flags.QR
    assert not reply.flags & dns.flags.RA
    assert struct.unpack_from("!H", raw, 4)[0] == 1
    question = query.question()
    assert raw[12 : 12 + len(question)] == question, "the question is not echoed byte for byte"
    rcode = reply.rcode()
    assert rcode != dns.rcode.SERVFAIL
    assert (reply.edns >= 0) == query.edns
    if query.ecs is not None:
        echoed = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
        assert len(echoed) == 1
        assert echoed[0].srclen == query.ecs.source
        if query.ecs.source == 0:
            assert echoed[0].scopelen == 0
    else:
        assert not any(isinstance(o, dns.edns.ECSOption) for o in reply.options)

    rel = relative(query.labels)
    if rel is None:
        assert rcode == dns.rcode.REFUSED, f"{query.name} is not under {APEX}"
        assert not reply.answer
        assert not reply.authority
        return
    assert reply.flags & dns.flags.AA
    if not exists(rel):
        assert rcode == dns.rcode.NXDOMAIN, f"{query.name} is not in the zone"
        assert not reply.answer
        assert [(r.name, r.rdtype) for r in reply.authority] == [(APEX, dns.rdatatype.SOA)]
        return
    assert rcode == dns.rcode.NOERROR, f"{query.name} is in the zone"
    allowed = {query.name}  # direct answers are owned by the question name; then CNAME targets
    for rrset in reply.answer:
        assert rrset.name in allowed, f"answer owner {rrset.name} for {query.name}"
        allowed |= {r.target for r in rrset if isinstance(r, dns.rdtypes.ANY.CNAME.CNAME)}
    if not reply.answer and not reply.flags & dns.flags.TC:  # NODATA
        assert [(r.name, r.rdtype) for r in reply.authority] == [(APEX, dns.rdatatype.SOA)]


@given(query=queries_st())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_any_name_gets_the_reply_the_zone_predicts(handle: Handle, query: Query) -> None:
    check(handle, query)


EXAMPLES = {
    "www-dot-gslb": ((b"www.gslb", b"example", b"com"), "A"),
    "x-dot-gslb": ((b"x.gslb", b"example", b"com"), "A"),
    "near-miss": ((b"xgslb", b"example", b"com"), "A"),
    "dotted-in-zone": ((b"a.b", b"gslb", b"example", b"com"), "A"),
    "dotted-under-wildcard": ((b"a.b", b"apps", b"gslb", b"example", b"com"), "TXT"),
    "upper-case-service": ((b"WWW", b"GSLB", b"EXAMPLE", b"COM"), "A"),
    "e-acute-is-not-E-acute": ((b"\xc9", b"gslb", b"example", b"com"), "A"),
    "nul-label": ((b"\x00", b"gslb", b"example", b"com"), "A"),
    "backslash-label": ((b"\\", b"gslb", b"example", b"com"), "A"),
    "zone-in-one-label": ((b"www", b"gslb.example.com"), "A"),
    "empty-non-terminal": ((b"in-addr", b"arpa", b"gslb", b"example", b"com"), "PTR"),
    "under-the-service": ((b"x", b"www", b"gslb", b"example", b"com"), "A"),
    "255-octets": ((b"a" * 63, b"b.c" * 21, b"d" * 63, b"e" * 44, *ZONE), "TXT"),
}


@pytest.mark.parametrize(("labels", "rdtype"), EXAMPLES.values(), ids=EXAMPLES.keys())
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_named_examples(handle: Handle, labels: tuple[bytes, ...], rdtype: str, edns: bool) -> None:
    """The cases hypothesis should find, pinned so that they run every time."""
    ecs = Ecs(1, 24, bytes((193, 0, 14))) if edns else None
    check(handle, Query(0x1234, labels, dns.rdatatype.from_text(rdtype), edns, 1232, ecs, tcp=False))
