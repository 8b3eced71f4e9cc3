"""DNS wire codec: a strict query decoder and a small response encoder.

Adapter-free and fast on purpose: the common query is decoded here without dnslib, with
every malformation of DESIGN.md section 5 detected from the header counts first and then
by bounds-checked reads (no recursion, so no pointer loop can blow the stack). Responses
are assembled from records whose RDATA is already wire bytes; owner names are compressed
against the question only.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from gslb.errors import MalformedQuery
from gslb.zone.codes import (
    AA,
    CD,
    EDNS_DO,
    OPCODE_MASK,
    OPT_ECS,
    OPT_NSID,
    QR,
    RD,
    TC,
    TYPE_IXFR,
    TYPE_OPT,
)
from gslb.zone.name import key as name_key
from gslb.zone.zone import Record

MAX_NAME = 255


class Drop(Exception):
    """Not worth an answer: short header, or a response (QR=1) sent to us."""


class NotImplementedOpcode(Exception):
    """Opcode other than QUERY: answered NOTIMP from the header alone."""


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """RFC 7871 option as the query sent it."""

    family: int
    source_prefix: int
    address: IPv4Address | IPv6Address
    wire_address: bytes  # the address bytes exactly as sent (source_prefix bits, rounded up)
    address_at: int = -1  # where those bytes start in the query (-1: not from a query)


@dataclass(frozen=True, slots=True)
class Edns:
    version: int
    payload: int
    do: bool
    nsid: bool
    ecs: ClientSubnet | None


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    qname_wire: bytes  # as sent (case preserved), root label included
    qname: bytes  # the name key: qname_wire with ASCII letters folded (gslb.zone.name)
    qtype: int
    qclass: int
    edns: Edns | None
    edns_error: bool = False  # OPT present but version > 0: answer BADVERS
    wire: bytes = b""  # the whole request as received


_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_QFIXED = struct.Struct("!HH")
_OPT_HEAD = struct.Struct("!HH")


def decode_query(wire: bytes) -> Query:
    """Decode one query; raises Drop, NotImplementedOpcode or MalformedQuery (FORMERR)."""
    if len(wire) < 12:
        raise Drop("short header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if flags & QR:
        raise Drop("QR=1")
    if flags & OPCODE_MASK:
        raise NotImplementedOpcode((flags & OPCODE_MASK) >> 11)
    if qdcount != 1:
        raise MalformedQuery(f"QDCOUNT={qdcount}")
    if ancount or nscount > 1:
        raise MalformedQuery(f"ANCOUNT={ancount} NSCOUNT={nscount} in a query")
    if arcount > 8:
        raise MalformedQuery(f"ARCOUNT={arcount}")
    # QNAME: no compression allowed in the question (nothing precedes it to point at)
    offset = 12
    end = len(wire)
    while True:
        if offset >= end:
            raise MalformedQuery("question runs past the message")
        length = wire[offset]
        if length == 0:
            offset += 1
            break
        if length > 63:
            raise MalformedQuery("compression pointer or bad label type in QNAME")
        offset += 1 + length
    if offset - 12 > MAX_NAME:
        raise MalformedQuery("QNAME longer than 255 bytes")
    if offset + 4 > end:
        raise MalformedQuery("question runs past the message")
    qname_wire = wire[12:offset]
    qtype, qclass = _QFIXED.unpack_from(wire, offset)
    offset += 4
    if nscount:  # only an IXFR query carries a record (the client's SOA) in authority
        if qtype != TYPE_IXFR:
            raise MalformedQuery(f"NSCOUNT={nscount} in a {qtype} query")
        offset = _skip_record(wire, offset)
    edns: Edns | None = None
    bad_version = False
    for _ in range(arcount):
        owner_root = offset < end and wire[offset] == 0
        offset = _skip_name(wire, offset)
        if offset + 10 > end:
            raise MalformedQuery("additional record runs past the message")
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(wire, offset)
        rdata_start = offset + 10
        offset = rdata_start + rdlength
        if offset > end:
            raise MalformedQuery("RDATA runs past the message")
        if rtype != TYPE_OPT:
            continue
        if edns is not None or bad_version:
            raise MalformedQuery("more than one OPT record")
        if not owner_root:
            raise MalformedQuery("OPT owner is not the root")
        version = (ttl >> 16) & 0xFF
        nsid, ecs = _options(wire, rdata_start, offset)
        if version:
            bad_version = True
        edns = Edns(version, max(rclass, 512), bool(ttl & EDNS_DO), nsid, ecs)
    if offset != end:
        raise MalformedQuery(f"{end - offset} bytes after the last record")
    return Query(qid, flags, qname_wire, name_key(qname_wire), qtype, qclass, edns, bad_version, wire)


def _skip_record(wire: bytes, offset: int) -> int:
    offset = _skip_name(wire, offset)
    if offset + 10 > len(wire):
        raise MalformedQuery("record runs past the message")
    end = offset + 10 + int.from_bytes(wire[offset + 8 : offset + 10], "big")
    if end > len(wire):
        raise MalformedQuery("RDATA runs past the message")
    return end


def _skip_name(wire: bytes, offset: int) -> int:
    """Skip an owner name in the additional section; pointers must point backwards."""
    end = len(wire)
    while True:
        if offset >= end:
            raise MalformedQuery("name runs past the message")
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise MalformedQuery("truncated compression pointer")
            target = ((length & 0x3F) << 8) | wire[offset + 1]
            if target >= offset:
                raise MalformedQuery("forward compression pointer")
            _check_pointed_name(wire, target, offset)
            return offset + 2
        if length > 63:
            raise MalformedQuery("bad label type")
        offset += 1 + length


def _check_pointed_name(wire: bytes, offset: int, limit: int) -> None:
    """Follow a compressed name iteratively: strictly backwards pointers cannot loop."""
    total = 0
    while True:
        length = wire[offset]
        if length == 0:
            return
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | wire[offset + 1]
            if target >= offset:
                raise MalformedQuery("compression pointer loop")
            offset = target
            continue
        if length > 63:
            raise MalformedQuery("bad label type")
        total += length + 1
        if total > MAX_NAME:
            raise MalformedQuery("name longer than 255 bytes")
        offset += 1 + length
        if offset >= limit:
            raise MalformedQuery("name runs into the pointing record")


def _options(wire: bytes, offset: int, end: int) -> tuple[bool, ClientSubnet | None]:
    nsid = False
    ecs: ClientSubnet | None = None
    while offset < end:
        if offset + 4 > end:
            raise MalformedQuery("EDNS option header overruns OPT")
        code, length = _OPT_HEAD.unpack_from(wire, offset)
        offset += 4
        if offset + length > end:
            raise MalformedQuery("EDNS option overruns OPT")
        if code == OPT_NSID:
            nsid = True
        elif code == OPT_ECS:
            if ecs is not None:
                raise MalformedQuery("more than one ECS option")
            ecs = decode_ecs(wire[offset : offset + length], at=offset + 4)
        offset += length
    return nsid, ecs


def decode_ecs(data: bytes, *, at: int = -1) -> ClientSubnet:
    """RFC 7871 section 6: strict; any violation is FORMERR."""
    if len(data) < 4:
        raise MalformedQuery("ECS option shorter than 4 bytes")
    family, source, scope = struct.unpack_from("!HBB", data)
    if family not in (1, 2):
        raise MalformedQuery(f"ECS family {family}")
    width = 32 if family == 1 else 128
    if source > width:
        raise MalformedQuery(f"ECS source prefix {source} > {width}")
    if scope != 0:
        raise MalformedQuery("ECS scope prefix must be 0 in a query")
    address = data[4:]
    if len(address) != (source + 7) // 8:
        raise MalformedQuery("ECS address length does not match the source prefix")
    if source % 8 and address and address[-1] & (0xFF >> (source % 8)):
        raise MalformedQuery("ECS address has bits set past the source prefix")
    full = address + bytes(width // 8 - len(address))
    return ClientSubnet(family, source, ip_address(full), address, at)


# Networks whose addresses are never a client's location (RFC 6890 special-purpose,
# multicast, shared address space): an ECS option naming one is ignored (RFC 7871 section 7.1.2).
_NOT_PUBLIC = {
    4: (
        "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 "
        "192.0.2.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 224.0.0.0/3"
    ),
    6: ("::/96 ::ffff:0:0/96 64:ff9b:1::/48 100::/64 2001::/23 2001:db8::/32 fc00::/7 fe80::/10 ff00::/8"),
}


def _ranges(version: int) -> tuple[list[int], list[int]]:
    networks = sorted(ip_network(text) for text in _NOT_PUBLIC[version].split())
    return [int(n.network_address) for n in networks], [int(n.broadcast_address) for n in networks]


_STARTS_V4, _ENDS_V4 = _ranges(4)


def _public_slash16() -> bytes:
    """One byte per IPv4 /16: 1 when no address in it is non-public (most), else 0."""
    flags = bytearray(b"\x01" * 65536)
    for start, end in zip(_STARTS_V4, _ENDS_V4, strict=True):
        flags[start >> 16 : (end >> 16) + 1] = bytes((end >> 16) - (start >> 16) + 1)
    return bytes(flags)


PUBLIC_SLASH16 = _public_slash16()  # the query path's first test: `PUBLIC_SLASH16[v >> 16]`
_STARTS_V6, _ENDS_V6 = _ranges(6)


def is_public(address: IPv4Address | IPv6Address) -> bool:
    """Not private, reserved, documentation, loopback, link-local or multicast (a bisect, not
    ipaddress.is_global, which tests a dozen networks one by one)."""
    return is_public_value(int(address), v6=address.version == 6)


def is_public_value(value: int, *, v6: bool) -> bool:
    """`is_public` for an address given as an int of its family's width."""
    starts, ends = (_STARTS_V6, _ENDS_V6) if v6 else (_STARTS_V4, _ENDS_V4)
    index = bisect.bisect_right(starts, value) - 1
    return index < 0 or value > ends[index]


class Message:
    """Assembles one response. Owner names (keys) are compressed against the question only:
    a pointer always targets a label start of the question, at offset 12 or later."""

    def __init__(self, query: Query, *, rcode: int, aa: bool) -> None:
        self.query = query
        self.rcode = rcode
        self.aa = aa
        self.sections: list[list[bytes]] = [[], [], []]
        qname = query.qname
        self._suffixes = {qname[offset:]: 12 + offset for offset in _label_starts(qname)}

    def add(self, section: int, record: Record, ttl: int | None = None, rclass: int = 1) -> None:
        owner = self._name(record.owner)
        fixed = _RR_FIXED.pack(record.rtype, rclass, record.ttl if ttl is None else ttl, len(record.rdata))
        self.sections[section].append(owner + fixed + record.rdata)

    def _name(self, name: bytes) -> bytes:
        suffixes = self._suffixes
        for offset in _label_starts(name):
            pointer = suffixes.get(name[offset:])
            if pointer is not None:
                return name[:offset] + struct.pack("!H", 0xC000 | pointer)
        return name

    def head(self, counts: tuple[int, int, int], truncated: bool = False) -> bytes:
        q = self.query
        flags = QR | (q.flags & (RD | CD)) | (self.rcode & 0xF)
        if self.aa:
            flags |= AA
        if truncated:
            flags |= TC
        return _HEADER.pack(q.id, flags, 1, *counts)

    def pack(self, *, opt: bytes | None, limit: int) -> bytes:
        """The whole message; TC=1 keeping the question (and OPT) when it exceeds `limit`."""
        q = self.query
        question = q.qname_wire + _QFIXED.pack(q.qtype, q.qclass)
        body = b"".join(b"".join(s) for s in self.sections)
        extra = 1 if opt is not None else 0
        size = 12 + len(question) + len(body) + (len(opt) if opt else 0)
        if size <= limit:
            counts = (len(self.sections[0]), len(self.sections[1]), len(self.sections[2]) + extra)
            return self.head(counts) + question + body + (opt or b"")
        # dnslib's truncate() drops the question; resolvers need it to match the reply.
        return self.head((0, 0, extra), truncated=True) + question + (opt or b"")


def _label_starts(name: bytes) -> list[int]:
    """Offsets of the labels of a wire name, the root excluded."""
    starts = []
    offset = 0
    while name[offset]:
        starts.append(offset)
        offset += 1 + name[offset]
    return starts


def encode_opt(
    *, payload: int, do: bool, ext_rcode: int = 0, nsid: bytes | None = None, ecs: bytes | None = None
) -> bytes:
    options = b""
    if nsid is not None:
        options += _OPT_HEAD.pack(OPT_NSID, len(nsid)) + nsid
    if ecs is not None:
        options += ecs
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + _RR_FIXED.pack(TYPE_OPT, payload, ttl, len(options)) + options


def encode_ecs(subnet: ClientSubnet, scope: int) -> bytes:
    data = struct.pack("!HBB", subnet.family, subnet.source_prefix, scope) + subnet.wire_address
    return _OPT_HEAD.pack(OPT_ECS, len(data)) + data


def header_only(wire: bytes, rcode: int) -> bytes:
    """A reply from the request header alone: only ID, QR, opcode and rcode; no sections."""
    qid, flags = struct.unpack_from("!HH", wire)
    return _HEADER.pack(qid, QR | (flags & OPCODE_MASK) | rcode, 0, 0, 0, 0)
