"""Zones and the authoritative lookup: qname/qtype -> refused, NXDOMAIN, NODATA or answer.

Pure layer: standard library, `gslb.config.model` and the rest of `gslb.zone` only (no
dnslib: records carry their RDATA as uncompressed wire bytes made by `gslb.dns.zonefile`).
Every name here is a key of `gslb.zone.name` (wire form, ASCII-folded): zone membership,
the closest encloser and wildcards are decided at label boundaries. Semantics follow RFC 1034
section 4.3.2 with RFC 4592 wildcards and RFC 6604 CNAME chains; service names (steered
A/AAAA) are leaves of a zone whose records the policy supplies per query.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gslb.config.model import Service
from gslb.zone import name as dnsname
from gslb.zone.codes import TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_MX, TYPE_NS, TYPE_SOA, TYPE_SRV

_CNAME_CHAIN_LIMIT = 8
_WILDCARD = b"\x01*"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; `owner` is a name key; `rdata` is uncompressed wire."""

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    text: str = ""  # presentation form of the RDATA, for logs and explain
    target: bytes | None = None  # key of the name inside NS/CNAME/MX/SRV rdata

    @property
    def owner_text(self) -> str:
        return dnsname.to_text(self.owner)


class Outcome(enum.Enum):
    REFUSED = "refused"  # not a name we are authoritative for
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    ANSWER = "answer"


@dataclass(frozen=True, slots=True)
class Zone:
    origin: bytes  # name key
    soa: Record
    nodes: Mapping[bytes, Mapping[int, tuple[Record, ...]]] = field(repr=False)
    services: Mapping[bytes, Service] = field(default_factory=dict, repr=False)
    # every name that exists, including empty non-terminals (RFC 4592 section 2.2.2)
    names: frozenset[bytes] = field(default=frozenset(), repr=False)

    @property
    def negative_ttl(self) -> int:
        """RFC 2308 section 5: min(SOA TTL, SOA MINIMUM)."""
        minimum = int.from_bytes(self.soa.rdata[-4:], "big")
        return min(self.soa.ttl, minimum)

    @property
    def serial(self) -> int:
        return int.from_bytes(self.soa.rdata[-20:-16], "big")

    @property
    def origin_text(self) -> str:
        return dnsname.to_text(self.origin)


@dataclass(frozen=True, slots=True)
class Result:
    """What the zone says about one question; the handler turns it into a message."""

    outcome: Outcome
    zone: Zone | None = field(default=None, repr=False)
    answers: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # steer the A/AAAA of this service (the end of any CNAME chain)
    service: Service | None = field(default=None, repr=False)
    service_owner: bytes = b""  # owner key for steered records (the qname, or the last CNAME target)


def build_zone(
    origin: bytes, records: Iterable[Record], services: Mapping[bytes, Service] | None = None
) -> Zone:
    """Group records into RRsets per name; the caller has checked the SOA and apex NS exist.

    `services` maps each service's name key to it; every owner and service lies in `origin`.
    """
    nodes: dict[bytes, dict[int, list[Record]]] = {}
    soa: Record | None = None
    for record in records:
        nodes.setdefault(record.owner, {}).setdefault(record.rtype, []).append(record)
        if record.rtype == TYPE_SOA and record.owner == origin:
            soa = record
    if soa is None:
        raise ValueError(f"zone {dnsname.to_text(origin)} has no SOA at its apex")
    service_map = dict(services or {})
    names: set[bytes] = set()
    for owner in (*nodes, *service_map):
        if not dnsname.is_within(owner, origin):
            raise ValueError(f"{dnsname.to_text(owner)} is outside the zone {dnsname.to_text(origin)}")
        name = owner
        while name not in names:
            names.add(name)
            if name == origin:
                break
            name = dnsname.parent(name)
    frozen = {name: {t: tuple(rs) for t, rs in types.items()} for name, types in nodes.items()}
    return Zone(origin, soa, frozen, service_map, frozenset(names))


class Zones:
    """All zones of one config; longest-match zone selection at label boundaries."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones = {z.origin: z for z in zones}

    def __len__(self) -> int:
        return len(self._zones)

    def all(self) -> tuple[Zone, ...]:
        return tuple(self._zones.values())

    def find(self, name: bytes) -> Zone | None:
        """The zone holding the name key `name` (the longest origin), or None."""
        zones = self._zones
        for offset in dnsname.boundaries(name):
            zone = zones.get(name[offset:] if offset else name)
            if zone is not None:
                return zone
        return None

    def lookup(self, qname: bytes, qtype: int) -> Result:
        """Answer one question from our data; `qname` is a name key."""
        zone = self.find(qname)
        if zone is None:
            return Result(Outcome.REFUSED)
        answers: list[Record] = []
        name = qname
        for _ in range(_CNAME_CHAIN_LIMIT):
            service = zone.services.get(name)
            if service is not None and qtype in (TYPE_A, TYPE_AAAA, TYPE_ANY):
                statics = () if qtype != TYPE_ANY else _all(zone.nodes.get(name, {}))
                return Result(Outcome.ANSWER, zone, (*answers, *statics), (), service, name)
            rrsets = zone.nodes.get(name)
            owner = name
            if rrsets is None and name not in zone.names:
                rrsets = _wildcard(zone, name)
                if rrsets is None:
                    return Result(Outcome.NXDOMAIN, zone, tuple(answers))
            if rrsets is None:  # empty non-terminal, or a service name asked for another type
                return Result(Outcome.NODATA, zone, tuple(answers))
            if qtype == TYPE_ANY:
                return Result(Outcome.ANSWER, zone, (*answers, *_own(_all(rrsets), owner)))
            wanted = rrsets.get(qtype)
            if wanted:
                found = _own(wanted, owner)
                return Result(Outcome.ANSWER, zone, (*answers, *found), self._glue(found))
            cname = rrsets.get(TYPE_CNAME)
            if not cname or qtype == TYPE_CNAME:
                return Result(Outcome.NODATA if not answers else Outcome.ANSWER, zone, tuple(answers))
            answers.extend(_own(cname, owner))
            target = cname[0].target or dnsname.ROOT
            next_zone = self.find(target)
            if next_zone is None:  # the chain leaves our zones: the resolver follows it
                return Result(Outcome.ANSWER, zone, tuple(answers))
            zone, name = next_zone, target
        return Result(Outcome.ANSWER, zone, tuple(answers))

    def _glue(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        """A/AAAA of NS, MX and SRV targets that live in our zones (RFC 1034 section 4.3.2 step 6)."""
        if records[0].rtype not in (TYPE_NS, TYPE_MX, TYPE_SRV):
            return ()
        glue: list[Record] = []
        for record in records:
            target = record.target or dnsname.ROOT
            zone = self.find(target)
            rrsets = zone.nodes.get(target, {}) if zone else {}
            glue.extend(rrsets.get(TYPE_A, ()))
            glue.extend(rrsets.get(TYPE_AAAA, ()))
        return tuple(glue)


def _all(rrsets: Mapping[int, tuple[Record, ...]]) -> tuple[Record, ...]:
    return tuple(r for records in rrsets.values() for r in records)


def _own(records: tuple[Record, ...], owner: bytes) -> tuple[Record, ...]:
    """Records synthesised from a wildcard take the query name as owner (RFC 4592 section 3.3.1)."""
    if records[0].owner == owner:
        return records
    return tuple(Record(owner, r.rtype, r.ttl, r.rdata, r.text, r.target) for r in records)


def _wildcard(zone: Zone, name: bytes) -> Mapping[int, tuple[Record, ...]] | None:
    """RFC 4592: the source of synthesis is '*.' + the closest encloser, if that exists."""
    encloser = name
    while encloser != zone.origin:
        encloser = dnsname.parent(encloser)
        if encloser in zone.names:
            return zone.nodes.get(_WILDCARD + encloser)
    return None
