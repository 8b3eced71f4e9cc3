"""The query handler: one synchronous function from request bytes to reply bytes (or None).

Adapter layer (DNS wire). It never awaits and never touches Redis: it reads the zones,
the current `Steering` (swapped by one assignment when health changes) and its own
caches. Every failure is mapped: short header or QR=1 -> drop, malformed -> FORMERR,
unknown opcode -> NOTIMP, a bug -> SERVFAIL plus one log line.

Hot path: replies are cached by the request bytes after the ID (`wire[2:]`), so a repeated
question costs one dict lookup and one concatenation. Replies that depend on the sender's
address (steered answers chosen without ECS) are cached per sender as well. Behind those,
built replies are kept by shape (`Template`): a query with new bytes (0x20 case, a new ECS
subnet) gets a copy with its ID, question and ECS address patched in, instead of a build.
Caches are dropped whenever zones or health change.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from ipaddress import ip_address
from typing import NamedTuple

from gslb.config.model import Identity, IPAddress, Service
from gslb.dns.codec import (
    CD,
    RD,
    ClientSubnet,
    Drop,
    Message,
    NotImplementedOpcode,
    Query,
    Rcode,
    decode_query,
    encode_ecs,
    encode_opt,
    header_only,
    is_public,
)
from gslb.errors import MalformedQuery
from gslb.policy.nearest import Mode
from gslb.policy.steering import Steered, Steering
from gslb.zone.zone import TYPE_A, TYPE_AAAA, TYPE_ANY, Outcome, Record, Result, Zones

log = logging.getLogger(__name__)

CLASS_IN = 1
CLASS_CH = 3
CLASS_ANY = 255
TYPE_TXT = 16
TYPE_HINFO = 13
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252

UDP_MIN = 512
TCP_LIMIT = 65535
_CACHE_LIMIT = 100_000
_RFC8482_HINFO = b"\x07RFC8482\x00"


Label = tuple[str, str, str]  # (rcode, service, datacenter) for the metrics


class Built(NamedTuple):
    reply: bytes
    label: Label
    per_peer: bool | None  # cache it per sender (True), for all (False), or not at all (None)
    provisional: Steered | None = None  # the decision it was built from, while not final
    shaped: bool = True  # depends on the query's shape alone (else: also on the client)


@dataclass(slots=True)
class Entry:
    """A cached reply without its ID, and what it counts as in the metrics."""

    tail: bytes
    label: Label
    hits: int = 0
    provisional: Steered | None = None  # built before scope widening: stale once superseded


@dataclass(frozen=True, slots=True)
class Template:
    """A built reply to copy for any query of the same shape: the ID, the question's case
    (0x20) and the ECS address (always the message's last bytes) come from the query."""

    head: bytes
    label: Label
    ecs_tail: bool

    def patch(self, query: Query) -> bytes:
        edns = query.edns
        tail = edns.ecs.wire_address if self.ecs_tail and edns and edns.ecs else b""
        qname = query.qname_wire
        return query.id.to_bytes(2, "big") + self.head[2:12] + qname + self.head[12 + len(qname) :] + tail


def _template(query: Query, built: Built) -> Template:
    edns = query.edns
    ecs = edns.ecs if edns is not None and not query.edns_error else None
    cut = len(ecs.wire_address) if ecs is not None else 0
    return Template(built.reply[: len(built.reply) - cut], built.label, ecs is not None)


def _shape(query: Query, tcp: bool) -> tuple[object, ...]:
    """Everything but the ID, the question's case and the ECS address that a reply depends on
    (steered replies add their decision and scope)."""
    edns = query.edns
    if edns is None:
        return (tcp, query.qname, query.qtype, query.qclass, query.flags & (RD | CD))
    ecs = edns.ecs
    shape_ecs = None if ecs is None else (ecs.family, ecs.source_prefix)
    return (
        tcp,
        query.qname,
        query.qtype,
        query.qclass,
        query.flags & (RD | CD),
        edns.version,
        edns.do,
        edns.nsid,
        0 if tcp else edns.payload,
        shape_ecs,
    )


def client_from_ecs(ecs: ClientSubnet | None) -> IPAddress | None:
    """RFC 7871 section 7.1.2: use ECS when it has a prefix and is not private/reserved."""
    if ecs is None or ecs.source_prefix == 0 or not is_public(ecs.address):
        return None
    return ecs.address


class Handler:
    def __init__(
        self,
        zones: Zones,
        steering: Steering | None,
        *,
        identity: Identity | None = None,
        udp_payload_size: int = 1232,
    ) -> None:
        self.zones = zones
        self.steering = steering
        identity = identity or Identity()
        self.identity = identity
        self.udp_payload_size = udp_payload_size
        self._nsid = identity.nsid.encode() if identity.nsid else None
        self._chaos = {
            "id.server.": identity.id_server,
            "hostname.bind.": identity.hostname_bind,
            "version.bind.": identity.version_bind,
            "version.server.": identity.version_bind,
        }
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._udp: dict[bytes, Entry] = {}
        self._tcp: dict[bytes, Entry] = {}
        self._by_peer: dict[tuple[bool, str, bytes], Entry] = {}
        # replies by shape, for queries whose bytes differ (0x20 case, new ECS subnets)
        self._templates: dict[tuple[object, ...], Template] = {}

    # -- state swaps (called from the event loop, never concurrently with handle) --

    def set_steering(self, steering: Steering | None) -> None:
        self.steering = steering
        self.clear_caches()

    def clear_caches(self) -> None:
        for cache in (self._udp, self._tcp, self._by_peer):
            for entry in cache.values():
                if entry.hits:
                    self.counts[entry.label] += entry.hits
            cache.clear()
        self._templates.clear()

    def totals(self) -> Counter[tuple[str, str, str]]:
        """Replies sent by (rcode, service, datacenter), including those served from cache."""
        totals = Counter(self.counts)
        for cache in (self._udp, self._tcp, self._by_peer):
            for entry in cache.values():
                if entry.hits:
                    totals[entry.label] += entry.hits
        return totals

    # -- the query path --

    def handle(self, wire: bytes, peer: str, *, tcp: bool = False) -> bytes | None:
        cache = self._tcp if tcp else self._udp
        entry = cache.get(wire[2:])
        if entry is not None:
            provisional = entry.provisional
            if provisional is None:
                entry.hits += 1
                return wire[:2] + entry.tail
            if not provisional.superseded and self.steering is not None:
                self.steering.promote(provisional)  # asked again: worth widening
                entry.hits += 1
                return wire[:2] + entry.tail
        entry = self._by_peer.get((tcp, peer, wire[2:]))
        if entry is not None:
            entry.hits += 1
            return wire[:2] + entry.tail
        try:
            return self._answer(wire, peer, tcp)
        except Exception:
            log.exception("bug while answering a query; replying SERVFAIL")
            self.counts["SERVFAIL", "", ""] += 1
            return header_only(wire, Rcode.SERVFAIL) if len(wire) >= 12 else None

    def _answer(self, wire: bytes, peer: str, tcp: bool) -> bytes | None:
        try:
            query = decode_query(wire)
        except Drop:
            return None
        except NotImplementedOpcode:
            self.counts["NOTIMP", "", ""] += 1
            return header_only(wire, Rcode.NOTIMP)
        except MalformedQuery as exc:
            log.debug("FORMERR: %s", exc)
            self.counts["FORMERR", "", ""] += 1
            return header_only(wire, Rcode.FORMERR)
        reply, label, per_peer, provisional, _ = self._reply(query, peer, tcp)
        if per_peer is None:
            self.counts[label] += 1
            return reply
        entry = Entry(reply[2:], label, 1, provisional)
        caches = len(self._udp) + len(self._tcp) + len(self._by_peer)
        if caches > _CACHE_LIMIT:
            self.clear_caches()
        if per_peer:
            self._by_peer[(tcp, peer, wire[2:])] = entry
        else:
            cache = self._tcp if tcp else self._udp
            superseded = cache.get(wire[2:])
            if superseded is not None and superseded.hits:  # a provisional reply it replaces
                self.counts[superseded.label] += superseded.hits
            cache[wire[2:]] = entry
        return reply

    def _limit(self, query: Query, tcp: bool) -> int:
        if tcp:
            return TCP_LIMIT
        if query.edns is None:
            return UDP_MIN
        return max(UDP_MIN, min(query.edns.payload, self.udp_payload_size))

    def _opt(self, query: Query, *, scope: int = 0, ext_rcode: int = 0) -> bytes | None:
        edns = query.edns
        if edns is None:
            return None
        nsid = self._nsid if edns.nsid else None
        ecs = encode_ecs(edns.ecs, scope) if edns.ecs is not None and not ext_rcode else None
        return encode_opt(payload=self.udp_payload_size, do=edns.do, ext_rcode=ext_rcode, nsid=nsid, ecs=ecs)

    def _reply(self, query: Query, peer: str, tcp: bool) -> Built:
        """The reply, its metrics label, and whether it may be cached (per peer or for all)."""
        shape = _shape(query, tcp)
        template = self._templates.get(shape)
        if template is not None:
            return Built(template.patch(query), template.label, False)
        built = self._build(query, peer, tcp, shape)
        if built.shaped:
            self._remember(shape, _template(query, built))
        return built

    def _remember(self, key: tuple[object, ...], template: Template) -> None:
        if len(self._templates) > _CACHE_LIMIT:
            self._templates.clear()
        self._templates[key] = template

    def _build(self, query: Query, peer: str, tcp: bool, shape: tuple[object, ...]) -> Built:
        limit = self._limit(query, tcp)
        if query.edns_error:
            message = Message(query, rcode=0, aa=False)
            opt = self._opt(query, ext_rcode=Rcode.BADVERS >> 4)
            return Built(message.pack(opt=opt, limit=limit), ("BADVERS", "", ""), False)
        qtype, qclass = query.qtype, query.qclass
        if qtype == TYPE_OPT:
            return self._simple(query, Rcode.FORMERR, limit)
        if qtype in (TYPE_AXFR, TYPE_IXFR):
            return self._simple(query, Rcode.REFUSED, limit)
        if qtype == 0 or (128 <= qtype <= 254):
            return self._simple(query, Rcode.NOTIMP, limit)
        if qclass == CLASS_CH:
            return self._chaos_reply(query, limit)
        if qclass not in (CLASS_IN, CLASS_ANY):
            return self._simple(query, Rcode.REFUSED, limit)
        result = self.zones.lookup(query.qname, qtype)
        if result.outcome is Outcome.REFUSED:
            return self._simple(query, Rcode.REFUSED, limit)
        if qtype == TYPE_ANY and not tcp and result.outcome is Outcome.ANSWER:
            return self._rfc8482(query, result, limit)
        if result.service is not None:
            return self._steered(query, result, result.service, peer, limit=limit, shape=shape)
        return self._from_zone(query, result, limit)

    def _simple(self, query: Query, rcode: Rcode, limit: int) -> Built:
        message = Message(query, rcode=rcode, aa=False)
        return Built(message.pack(opt=self._opt(query), limit=limit), (rcode.name, "", ""), False)

    def _chaos_reply(self, query: Query, limit: int) -> Built:
        """CHAOS TXT id.server/hostname.bind/version.bind when configured; else REFUSED."""
        text = self._chaos.get(query.qname)
        if text is None or query.qtype not in (TYPE_TXT, TYPE_ANY):
            return self._simple(query, Rcode.REFUSED, limit)
        message = Message(query, rcode=Rcode.NOERROR, aa=True)
        message.add(0, _txt(query.qname, text), rclass=CLASS_CH)
        return Built(message.pack(opt=self._opt(query), limit=limit), ("NOERROR", "", ""), False)

    def _from_zone(self, query: Query, result: Result, limit: int, *, scope: int = 0) -> Built:
        rcode = Rcode.NXDOMAIN if result.outcome is Outcome.NXDOMAIN else Rcode.NOERROR
        message = Message(query, rcode=rcode, aa=True)
        for record in result.answers:
            message.add(0, record)
        if result.outcome in (Outcome.NXDOMAIN, Outcome.NODATA) and result.zone is not None:
            message.add(1, result.zone.soa, ttl=result.zone.negative_ttl)
        for record in result.additional:
            message.add(2, record)
        label = "NODATA" if result.outcome is Outcome.NODATA else rcode.name
        return Built(message.pack(opt=self._opt(query, scope=scope), limit=limit), (label, "", ""), False)

    def _rfc8482(self, query: Query, result: Result, limit: int) -> Built:
        """ANY over UDP: one synthesised HINFO instead of everything (RFC 8482 section 4.2)."""
        message = Message(query, rcode=Rcode.NOERROR, aa=True)
        for record in result.answers:
            if record.rtype == 5:  # keep a CNAME chain that led here
                message.add(0, record)
        zone = result.zone
        ttl = zone.negative_ttl if zone else 3600
        owner = result.service_owner or (result.answers[-1].name if result.answers else query.qname)
        message.add(0, Record(owner, TYPE_HINFO, ttl, _RFC8482_HINFO))
        return Built(message.pack(opt=self._opt(query), limit=limit), ("NOERROR", "", ""), False)

    def _steered(
        self,
        query: Query,
        result: Result,
        service: Service,
        peer: str,
        *,
        limit: int,
        shape: tuple[object, ...],
    ) -> Built:
        ecs = query.edns.ecs if query.edns else None
        client = client_from_ecs(ecs)
        per_peer = client is None
        qtypes = (TYPE_A, TYPE_AAAA) if query.qtype == TYPE_ANY else (query.qtype,)
        if self.steering is None:  # no steering configured: answer like a name with no data
            return self._from_zone(query, Result(Outcome.NODATA, result.zone, result.answers), limit)
        address = client if client is not None else ip_address(peer)
        steered = [self.steering.steer(service, address, v4=t == TYPE_A) for t in qtypes]
        scope = max(s.scope for s in steered) if client is not None else 0
        # Without ECS no scope is sent, so a provisional decision is as good as a final one.
        provisional = next((s for s in steered if not s.final), None) if client is not None else None
        key = (
            shape,
            scope,
            *((s.decision.mode, s.decision.datacenter, s.decision.addresses) for s in steered),
        )
        template = self._templates.get(key)
        if template is not None:
            return Built(template.patch(query), template.label, per_peer, provisional, False)
        built = self._build_steered(query, result, service, steered, scope=scope, limit=limit)
        self._remember(key, _template(query, built))
        return Built(built.reply, built.label, per_peer, provisional, False)

    def _build_steered(
        self,
        query: Query,
        result: Result,
        service: Service,
        steered: list[Steered],
        *,
        scope: int,
        limit: int,
    ) -> Built:
        first = steered[0].decision
        if all(s.decision.mode is Mode.SERVFAIL for s in steered):
            message = Message(query, rcode=Rcode.SERVFAIL, aa=False)
            label = ("SERVFAIL", service.name, "")
            return Built(message.pack(opt=self._opt(query, scope=scope), limit=limit), label, None)
        steered_records = _records(result.service_owner, service.ttl, steered)
        records = (*result.answers, *steered_records)
        outcome = Outcome.ANSWER if steered_records else Outcome.NODATA
        built = self._from_zone(query, Result(outcome, result.zone, records), limit, scope=scope)
        # metrics: the datacenter answered, or the when_all_down branch taken
        normal = first.mode in (Mode.NEAREST, Mode.FAILOVER) and first.datacenter is not None
        label = (built.label[0], service.name, first.datacenter or "" if normal else first.mode.value)
        return Built(built.reply, label, None)


@functools.lru_cache(maxsize=4096)
def _address_records(owner: str, ttl: int, addresses: tuple[IPAddress, ...]) -> tuple[Record, ...]:
    """The A/AAAA records of one decision; a handful of distinct ones per service."""
    return tuple(
        Record(owner, TYPE_A if a.version == 4 else TYPE_AAAA, ttl, a.packed, str(a)) for a in addresses
    )


def _records(owner: str, ttl: int, steered: list[Steered]) -> list[Record]:
    return [r for s in steered for r in _address_records(owner, ttl, s.decision.addresses)]


def _txt(owner: str, text: str) -> Record:
    data = text.encode()[:255]
    return Record(owner, TYPE_TXT, 0, bytes((len(data),)) + data, text)
