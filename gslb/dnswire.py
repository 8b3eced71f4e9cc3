"""Just enough DNS wire format for a client: pack one query, read one reply.

Used by the prober's `dns` check and by `gslb healthcheck` (which must start fast: this module
imports nothing outside the standard library and `gslb.zone.codes`). They need only a header,
a question and the answer records, so this packs and parses them by hand. Answers are
rendered as text the way an operator writes `expect_answer`: A and AAAA as addresses,
CNAME/NS/PTR as absolute names, MX as "preference name", TXT as the joined strings, anything
else as `\\# <length> <hex>` (RFC 3597).
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from gslb.zone.codes import TYPES_BY_NAME as QTYPES
from gslb.zone.codes import Rcode

RCODES = {rcode.name: rcode.value for rcode in Rcode if rcode.value < 16}
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_MAX_POINTERS = 64


@dataclass(frozen=True, slots=True)
class DnsReply:
    id: int
    rcode: int
    truncated: bool
    answers: tuple[str, ...]  # each answer's RDATA as text
    authoritative: bool = False
    question: tuple[str, int] | None = None  # (name in lower case with the dot, qtype)
    answer_types: tuple[tuple[str, int], ...] = ()  # each answer's (owner, type)


def qtype_code(name: str) -> int:
    """ "AAAA" -> 28; "TYPE65" -> 65; ValueError for anything else."""
    upper = name.upper()
    if upper in QTYPES:
        return QTYPES[upper]
    if upper.startswith("TYPE") and upper[4:].isdigit() and 0 < int(upper[4:]) < 65536:
        return int(upper[4:])
    raise ValueError(f"unknown query type {name!r}")


def rcode_code(name: str) -> int:
    """ "NXDOMAIN" -> 3; "RCODE9" -> 9; ValueError for anything else."""
    upper = name.upper()
    if upper in RCODES:
        return RCODES[upper]
    if upper.startswith("RCODE") and upper[5:].isdigit() and int(upper[5:]) < 16:
        return int(upper[5:])
    raise ValueError(f"unknown rcode {name!r}")


def rcode_name(code: int) -> str:
    for name, value in RCODES.items():
        if value == code:
            return name
    return f"RCODE{code}"


def pack_query(qname: str, qtype: int, query_id: int) -> bytes:
    """A standard query, RD=0, class IN, no EDNS."""
    return _HEADER.pack(query_id, 0, 1, 0, 0, 0) + pack_name(qname) + struct.pack("!HH", qtype, 1)


def pack_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split(".") if name not in ("", ".") else ():
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


def parse_reply(wire: bytes) -> DnsReply:
    """Header, skip the questions, render the answers; ValueError if malformed or not a reply."""
    if len(wire) < _HEADER.size:
        raise ValueError("short reply")
    query_id, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(wire)
    if not flags & 0x8000:
        raise ValueError("not a reply (QR=0)")
    offset = _HEADER.size
    question = None
    for _ in range(qdcount):
        name, offset = read_name(wire, offset)
        if offset + 4 > len(wire):
            raise ValueError("truncated question")
        question = question or (name, int.from_bytes(wire[offset : offset + 2], "big"))
        offset += 4
    answers: list[str] = []
    types: list[tuple[str, int]] = []
    for _ in range(ancount):
        owner, offset = read_name(wire, offset)
        if offset + _RR.size > len(wire):
            raise ValueError("truncated record")
        rtype, _, _, rdlength = _RR.unpack_from(wire, offset)
        offset += _RR.size
        end = offset + rdlength
        if end > len(wire):
            raise ValueError("truncated rdata")
        answers.append(render_rdata(wire, rtype, offset, end))
        types.append((owner, rtype))
        offset = end
    return DnsReply(
        query_id,
        flags & 0x000F,
        bool(flags & 0x0200),
        tuple(answers),
        authoritative=bool(flags & 0x0400),
        question=question,
        answer_types=tuple(types),
    )


def read_name(wire: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) name at `offset`, and the offset just after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        if offset >= len(wire):
            raise ValueError("name runs past the message")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise ValueError("truncated pointer")
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise ValueError("compression loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            continue
        if length & 0xC0:
            raise ValueError("bad label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(wire):
            raise ValueError("label runs past the message")
        labels.append(wire[offset : offset + length].decode("ascii", "backslashreplace"))
        offset += length
    return ".".join(labels).lower() + ".", end if end is not None else offset


def render_rdata(wire: bytes, rtype: int, start: int, end: int) -> str:
    rdata = wire[start:end]
    if rtype == 1 and len(rdata) == 4:
        return str(IPv4Address(rdata))
    if rtype == 28 and len(rdata) == 16:
        return str(IPv6Address(rdata))
    if rtype in (2, 5, 12):
        return read_name(wire, start)[0]
    if rtype == 15 and len(rdata) >= 3:
        return f"{int.from_bytes(rdata[:2], 'big')} {read_name(wire, start + 2)[0]}"
    if rtype == 16:
        parts, i = [], 0
        while i < len(rdata):
            n = rdata[i]
            parts.append(rdata[i + 1 : i + 1 + n].decode("utf-8", "backslashreplace"))
            i += 1 + n
        return "".join(parts)
    return f"\\# {len(rdata)} {rdata.hex()}"


def answer_matches(expected: str, answers: tuple[str, ...]) -> bool:
    """Whether `expected` is one of the answers (names compared case- and dot-insensitively)."""
    want = expected.strip().lower().rstrip(".")
    with contextlib.suppress(ValueError):
        want = str(ip_address(want))  # "2001:DB8:0::1" matches "2001:db8::1"
    return any(a.lower().rstrip(".") == want for a in answers)
