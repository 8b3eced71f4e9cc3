"""The query handler: one synchronous function from request bytes to reply bytes (or None).

Adapter layer (DNS wire). It never awaits and never touches Redis: it reads the zones, the
client `Orders` (compiled steering maps), the current `Steering` (swapped by one assignment
when health changes) and its reply caches. Every failure is mapped: short header or QR=1 ->
drop, malformed -> FORMERR, unknown opcode -> NOTIMP, a bug -> SERVFAIL, its traceback logged
once per kind and then counted (`gslb.lograte`).

Hot path, cheapest first:
1. The reply cache (`ReplyCache`, one per transport) by the request bytes after the ID: one
   lookup and one concatenation. A steered name asked without a usable ECS subnet is marked
   per client and looked up again by (sender, bytes). Steered entries carry the health
   generation they were built under and are stale after a change; static ones never are.
2. Shapes, for ECS queries with new bytes (a new client subnet): keyed by the request
   without its ID and ECS address (always the message's last bytes). The ECS address goes
   through the steering map (a bisect inside its /16) to the map block's value (order class
   and prefix); the reply built once per block value (the decision and the scope follow from
   it) is copied with the query's ID and address. No full decode, no objects for the collector.
3. A question in mixed case (0x20) is looked up again in lower case, and its case is put back
   into the copy: everything is kept under the lower-case question.
4. The full path: strict decode, zone lookup, steering, message build; it fills the caches.
Shapes and caches are dropped or made stale when health or the maps change, never cleared
while serving a flood: the reply cache evicts by generations (`gslb.dns.cache`).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Final

from gslb.config.model import Identity, Service
from gslb.dns.cache import Cacheability, ReplyCache
from gslb.dns.codec import (
    PUBLIC_SLASH16,
    ClientSubnet,
    Drop,
    Message,
    NotImplementedOpcode,
    Query,
    decode_query,
    encode_ecs,
    encode_opt,
    header_only,
    is_public,
    is_public_value,
)
from gslb.errors import MalformedQuery
from gslb.lograte import LogRate, bug_kind, describe
from gslb.policy.decision import Answer, Decision, Mode
from gslb.policy.endpoints import network_key
from gslb.policy.steering import OrderMap, Orders, Placement, Steering
from gslb.zone import name as dnsname
from gslb.zone.codes import (
    CLASS_ANY,
    CLASS_CH,
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_HINFO,
    TYPE_IXFR,
    TYPE_OPT,
    TYPE_TXT,
    Rcode,
)
from gslb.zone.zone import Outcome, Record, Result, Zones

log = logging.getLogger(__name__)
BUGS = LogRate(log, "queries that hit a bug already logged, answered SERVFAIL", level=logging.ERROR)

UDP_MIN = 512
TCP_LIMIT = 65535
CACHE_LIMIT: Final = 100_000
SHAPE_LIMIT: Final = 10_000
STATIC: Final = 1 << 62  # the generation of replies that no health change makes stale
PER_CLIENT: Final = -1  # the generation of a marker: look again by (sender, bytes)
VARIED: Final = -2  # the generation of a marker: the reply varies per answer, see the varied cache
_RFC8482_HINFO = b"\x07RFC8482\x00"
_CHAOS_NAMES = {
    "id.server.": "id_server",
    "hostname.bind.": "hostname_bind",
    "version.bind.": "version_bind",
    "version.server.": "version_bind",
}


@dataclass(frozen=True, slots=True)
class ReplyLabel:
    """What one reply counts as in the metrics."""

    rcode: str  # NOERROR, NXDOMAIN, NODATA, REFUSED, FORMERR, ...
    service: str = ""  # a steered reply's service
    datacenter: str = ""  # the datacenter whose addresses it carries
    branch: str = ""  # the when_all_down branch taken (fail_open, fallback, servfail, drained)
    endpoints: tuple[str, ...] = ()  # the steered addresses it carries


Entry = tuple[bytes, int, int]  # (reply without its ID, label id, generation)


class Varied:
    """Replies that differ per answer (rotation, weighted draws, p2c): every one of them
    without its ID, their label ids, and the choice of one per reply."""

    __slots__ = ("generation", "labels", "pick", "tails")

    def __init__(
        self, tails: Sequence[bytes], labels: Sequence[int], pick: Callable[[], int], generation: int
    ) -> None:
        self.tails = tuple(tails)
        self.labels = tuple(labels)
        self.pick = pick
        self.generation = generation

    def with_suffix(self, suffix: bytes, generation: int) -> Varied:
        return Varied([t + suffix for t in self.tails], self.labels, self.pick, generation)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the full path built: the reply (with the query's ID), how to count and keep it."""

    wire: bytes
    label: ReplyLabel
    cacheability: Cacheability = Cacheability.ALL
    generation: int = STATIC
    # Every reply the query may get, when they vary per answer: (reply, label) and the choice.
    variants: tuple[tuple[bytes, ReplyLabel], ...] = ()
    pick: Callable[[], int] | None = None


class Shape:
    """Every ECS query of one shape (the request without ID and ECS address): the service and
    family it asks for, its map's arrays, and the reply built per map block value. Plain data."""

    __slots__ = (
        "family_v6",
        "index",
        "infos",
        "keyed",
        "low_mask",
        "replies",
        "shift",
        "starts",
        "tail",
        "varied",
    )

    def __init__(self, subnet: ClientSubnet, mapping: OrderMap, index: Sequence[int]) -> None:
        self.family_v6 = subnet.family == 2
        width = 128 if self.family_v6 else 32
        self.tail = len(subnet.wire_address)
        address_bits = self.tail * 8
        self.shift = width - address_bits  # address bytes -> an int of the family's width
        self.low_mask = (1 << (address_bits - subnet.source_prefix)) - 1  # must be zero (RFC 7871)
        self.starts = mapping.starts_v6 if self.family_v6 else mapping.starts_v4
        self.infos = mapping.info_v6 if self.family_v6 else mapping.info_v4
        self.index = index  # IPv4: /16 -> first block (OrderMap.index_v4)
        # map block value (class id << 8 | prefix) -> (reply without ID and ECS address, label id)
        self.replies: dict[int, tuple[bytes, int]] = {}
        self.varied: dict[int, Varied] = {}  # the same, for replies that vary per answer
        # consistent hash: the keyed decision, and the reply per answer (its addresses)
        self.keyed: dict[
            int,
            tuple[Callable[[bytes], Answer], tuple[int, int], dict[tuple[object, ...], tuple[bytes, int]]],
        ] = {}


def client_from_ecs(ecs: ClientSubnet | None) -> ClientSubnet | None:
    """RFC 7871 section 7.1.2: ECS decides when it has a prefix and is not private/reserved."""
    if ecs is None or ecs.source_prefix == 0 or not is_public(ecs.address):
        return None
    return ecs


class Handler:
    def __init__(
        self,
        zones: Zones,
        orders: Orders | None,
        steering: Steering | None,
        *,
        identity: Identity | None = None,
        udp_payload_size: int = 1232,
        cache_limit: int = CACHE_LIMIT,
    ) -> None:
        self.zones = zones
        self.orders = orders
        self.steering = steering
        identity = identity or Identity()
        self.identity = identity
        self.udp_payload_size = udp_payload_size
        self._nsid = identity.nsid.encode() if identity.nsid else None
        self._chaos = {
            dnsname.from_text(text): getattr(identity, field) for text, field in _CHAOS_NAMES.items()
        }
        # metrics: label id -> count; counted on every reply, cached or not
        self._labels: dict[ReplyLabel, int] = {}
        self.label_list: list[ReplyLabel] = []
        self.counts: list[int] = []
        self._generation = 0
        self._udp: ReplyCache[Entry] = ReplyCache(cache_limit)
        self._tcp: ReplyCache[Entry] = ReplyCache(cache_limit)
        # Replies that vary per answer, under VARIED markers in the caches above.
        self._udp_varied: ReplyCache[Varied] = ReplyCache(cache_limit)
        self._tcp_varied: ReplyCache[Varied] = ReplyCache(cache_limit)
        self._shapes: dict[bytes, Shape] = {}
        self._shape_tails: tuple[int, ...] = ()  # ECS address lengths seen in shapes

    # -- state swaps (called from the event loop, never concurrently with handle) --

    def set_steering(self, steering: Steering | None) -> None:
        """A new HealthView: steered replies built before are stale from now on."""
        self.steering = steering
        self._generation += 1
        self._forget_decisions()

    def maps_ready(self) -> None:
        """The orders' compiled maps were swapped in: decisions per class start afresh."""
        self._forget_decisions()

    def _forget_decisions(self) -> None:
        self._shapes = {}
        self._shape_tails = ()

    def label_id(self, label: ReplyLabel) -> int:
        found = self._labels.get(label)
        if found is None:
            found = self._labels[label] = len(self.label_list)
            self.label_list.append(label)
            self.counts.append(0)
        return found

    def totals(self) -> dict[ReplyLabel, int]:
        """Replies sent by label, including those served from cache."""
        return {label: self.counts[i] for i, label in enumerate(self.label_list) if self.counts[i]}

    # -- the query path --

    def handle(self, wire: bytes, peer: str, *, tcp: bool = False) -> bytes | None:
        cache = self._tcp if tcp else self._udp
        body = wire[2:]
        entry = cache.young.get(body) or cache.old.get(body)
        if entry is not None:
            tail, label, generation = entry
            if generation >= self._generation:
                self.counts[label] += 1
                return wire[:2] + tail
            if generation == PER_CLIENT:
                entry = cache.get((peer, body))
                if entry is not None and entry[2] >= self._generation:
                    self.counts[entry[1]] += 1
                    return wire[:2] + entry[0]
                if entry is not None and entry[2] == VARIED:
                    varied = self._vary((peer, body), tcp)
                    if varied is not None:
                        return wire[:2] + varied
            elif generation == VARIED:  # a reply that varies per answer: choose one
                varied = self._vary(body, tcp)
                if varied is not None:
                    return wire[:2] + varied
        try:
            if self._shape_tails:
                reply = self._shaped(wire, tcp=tcp)
                if reply is not None:
                    return reply
            folded = _fold_question(wire)
            if folded is not None:
                reply = self._folded(wire, *folded, peer, tcp=tcp)
                if reply is not None:
                    return reply
            return self._answer(wire, peer, tcp, cache)
        except Exception as e:
            # Every packet may hit the same bug: its traceback once per kind, then a count per 10 s.
            if BUGS.first(f"{describe(e)} (query from {peer})", bug_kind(e)):
                log.exception(
                    "bug while answering a query from %s; replying SERVFAIL (repeats are counted)", peer
                )
            self.counts[self.label_id(ReplyLabel("SERVFAIL"))] += 1
            return header_only(wire, Rcode.SERVFAIL) if len(wire) >= 12 else None

    def _vary(self, key: object, tcp: bool) -> bytes | None:
        """One of the replies kept for `key` that vary per answer (without the ID), counted."""
        varied = (self._tcp_varied if tcp else self._udp_varied).get(key)
        if varied is None or varied.generation < self._generation:
            return None
        which = varied.pick()
        self.counts[varied.labels[which]] += 1
        return varied.tails[which]

    def _folded(self, wire: bytes, folded: bytes, end: int, peer: str, *, tcp: bool) -> bytes | None:
        """A question in mixed case (0x20): answer as for its lower-case form, then put the
        question's case back (owners in the reply point at the question, so they follow)."""
        body = folded[2:]
        key: object = body
        cache = self._tcp if tcp else self._udp
        entry = cache.get(body)
        if entry is not None and entry[2] == PER_CLIENT:
            key = (peer, body)
            entry = cache.get(key)
        tail: bytes | None = None
        if entry is not None and entry[2] >= self._generation:
            self.counts[entry[1]] += 1
            tail = entry[0]
        elif entry is not None and entry[2] == VARIED:
            tail = self._vary(key, tcp)
        if tail is not None:
            return wire[:2] + tail[:10] + wire[12:end] + tail[end - 2 :]
        if self._shape_tails:
            reply = self._shaped(folded, tcp=tcp)
            if reply is not None:
                return wire[:2] + reply[2:12] + wire[12:end] + reply[end:]
        return None

    def _shaped(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """A new ECS subnet in a known shape; None sends the query down the full path."""
        size = len(wire)
        shapes = self._shapes
        for tail in self._shape_tails:
            shape = shapes.get(wire[2 : size - tail])
            if shape is not None and shape.tail == tail:  # the head says how long its address is
                break
        else:
            return None
        address = wire[size - tail :]
        value = int.from_bytes(address, "big")
        if value & shape.low_mask:
            return None  # bits past the source prefix: FORMERR from the full path
        value <<= shape.shift
        if shape.family_v6:
            if value >> 32 == 0xFFFF or not is_public_value(value, v6=True):
                return None  # mapped IPv4 and non-public clients take the full path
            block = bisect_right(shape.starts, value >> 64) - 1
        else:
            slash16 = value >> 16
            if not PUBLIC_SLASH16[slash16] and not is_public_value(value, v6=False):
                return None
            index = shape.index
            block = bisect_right(shape.starts, value, index[slash16], index[slash16 + 1] + 1) - 1
        info = shape.infos[block]
        found = shape.replies.get(info)
        cache = self._tcp if tcp else self._udp
        if found is None and shape.keyed:
            keyed = shape.keyed.get(info)
            if keyed is not None:  # consistent hash: the reply of the endpoints this network hashes to
                chooser, prefixes, pieces = keyed
                v6 = shape.family_v6
                key = network_key(value, v6=v6, prefix=prefixes[v6])
                found = pieces.get(chooser(key).addresses)
        if found is None:
            varied = shape.varied.get(info)
            if varied is None:
                return None  # a block value not built yet (or MIXED): the full path builds it
            varied = varied.with_suffix(address, self._generation)
            cache.put(wire[2:], (b"", -1, VARIED))
            (self._tcp_varied if tcp else self._udp_varied).put(wire[2:], varied)
            which = varied.pick()
            self.counts[varied.labels[which]] += 1
            return wire[:2] + varied.tails[which]
        piece, label = found
        self.counts[label] += 1
        piece += address
        cache.put(wire[2:], (piece, label, self._generation))
        return wire[:2] + piece

    def _answer(self, wire: bytes, peer: str, tcp: bool, cache: ReplyCache[Entry]) -> bytes | None:
        try:
            query = decode_query(wire)
        except Drop:
            return None
        except NotImplementedOpcode:
            self.counts[self.label_id(ReplyLabel("NOTIMP"))] += 1
            return header_only(wire, Rcode.NOTIMP)
        except MalformedQuery as exc:
            log.debug("FORMERR: %s", exc)
            self.counts[self.label_id(ReplyLabel("FORMERR"))] += 1
            return header_only(wire, Rcode.FORMERR)
        built = self._build(query, peer, tcp)
        reply, label, cacheability = built.wire, built.label, built.cacheability
        # Kept under the lower-case question, with the lower-case question in the reply: a
        # query in any case finds it (directly, or through _folded, which restores its case).
        body = _lower_question(query, wire)[2:]
        key: object = body if cacheability is Cacheability.ALL else (peer, body)
        if built.variants and built.pick is not None:
            which = built.pick()
            reply = built.variants[which][0]
            self.counts[self.label_id(built.variants[which][1])] += 1
            if cacheability is not Cacheability.NEVER:
                tails = [_lower_question(query, r)[2:] for r, _ in built.variants]
                labels = [self.label_id(lbl) for _, lbl in built.variants]
                (self._tcp_varied if tcp else self._udp_varied).put(
                    key, Varied(tails, labels, built.pick, built.generation)
                )
                self._mark(cache, body, peer, cacheability, (b"", -1, VARIED))
            return reply
        label_id = self.label_id(label)
        self.counts[label_id] += 1
        if cacheability is not Cacheability.NEVER:
            self._mark(
                cache,
                body,
                peer,
                cacheability,
                (_lower_question(query, reply)[2:], label_id, built.generation),
            )
        return reply

    @staticmethod
    def _mark(
        cache: ReplyCache[Entry], body: bytes, peer: str, cacheability: Cacheability, entry: Entry
    ) -> None:
        if cacheability is Cacheability.ALL:
            cache.put(body, entry)
        else:
            cache.put(body, (b"", -1, PER_CLIENT))
            cache.put((peer, body), entry)

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

    def _build(self, query: Query, peer: str, tcp: bool) -> Reply:
        """The reply, its label, how far it may be cached, and its generation."""
        limit = self._limit(query, tcp)
        if query.edns_error:
            message = Message(query, rcode=0, aa=False)
            opt = self._opt(query, ext_rcode=Rcode.BADVERS >> 4)
            return Reply(message.pack(opt=opt, limit=limit), ReplyLabel("BADVERS"), Cacheability.NEVER)
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
            return self._steered(query, result, result.service, peer, limit)
        return Reply(*self._from_zone(query, result, limit))

    def _simple(self, query: Query, rcode: Rcode, limit: int) -> Reply:
        message = Message(query, rcode=rcode, aa=False)
        return Reply(message.pack(opt=self._opt(query), limit=limit), ReplyLabel(rcode.name))

    def _chaos_reply(self, query: Query, limit: int) -> Reply:
        """CHAOS TXT id.server/hostname.bind/version.bind when configured; else REFUSED."""
        text = self._chaos.get(query.qname)
        if text is None or query.qtype not in (TYPE_TXT, TYPE_ANY):
            return self._simple(query, Rcode.REFUSED, limit)
        message = Message(query, rcode=Rcode.NOERROR, aa=True)
        message.add(0, _txt(query.qname, text), rclass=CLASS_CH)
        return Reply(message.pack(opt=self._opt(query), limit=limit), ReplyLabel("NOERROR"))

    def _from_zone(
        self, query: Query, result: Result, limit: int, *, scope: int = 0
    ) -> tuple[bytes, ReplyLabel]:
        rcode = Rcode.NXDOMAIN if result.outcome is Outcome.NXDOMAIN else Rcode.NOERROR
        message = Message(query, rcode=rcode, aa=True)
        for record in result.answers:
            message.add(0, record)
        if result.outcome in (Outcome.NXDOMAIN, Outcome.NODATA) and result.zone is not None:
            message.add(1, result.zone.soa, ttl=result.zone.negative_ttl)
        for record in result.additional:
            message.add(2, record)
        label = "NODATA" if result.outcome is Outcome.NODATA else rcode.name
        return message.pack(opt=self._opt(query, scope=scope), limit=limit), ReplyLabel(label)

    def _rfc8482(self, query: Query, result: Result, limit: int) -> Reply:
        """ANY over UDP: one synthesised HINFO instead of everything (RFC 8482 section 4.2)."""
        message = Message(query, rcode=Rcode.NOERROR, aa=True)
        for record in result.answers:
            if record.rtype == TYPE_CNAME:  # keep a CNAME chain that led here
                message.add(0, record)
        zone = result.zone
        ttl = zone.negative_ttl if zone else 3600
        owner = result.service_owner or (result.answers[-1].owner if result.answers else query.qname)
        message.add(0, Record(owner, TYPE_HINFO, ttl, _RFC8482_HINFO))
        return Reply(message.pack(opt=self._opt(query), limit=limit), ReplyLabel("NOERROR"))

    def _steered(self, query: Query, result: Result, service: Service, peer: str, limit: int) -> Reply:
        orders, steering = self.orders, self.steering
        if orders is None or steering is None:  # no steering configured: a name with no data
            return Reply(*self._from_zone(query, Result(Outcome.NODATA, result.zone, result.answers), limit))
        ecs = query.edns.ecs if query.edns else None
        client = client_from_ecs(ecs)
        address = client.address if client is not None else ip_address(peer)
        placement = orders.place(service, address)
        families = (True, False) if query.qtype == TYPE_ANY else (query.qtype == TYPE_A,)
        decisions = [steering.decide(service, placement.order, v4=v4) for v4 in families]
        independent = all(steering.independent(service, d) for d in decisions)
        key_prefix = 0
        keyed = decisions[0] if decisions[0].keyed is not None else None
        if any(d.keyed is not None for d in decisions):  # consistent hash: by the client network
            resolved = [steering.for_client(d, address) for d in decisions]
            decisions = [d for d, _ in resolved]
            key_prefix = max(prefix for _, prefix in resolved)
        if ecs is None or ecs.source_prefix == 0 or independent:
            scope = 0
        elif client is not None:
            # The block the client falls in (final, health-independent), never wider than the
            # network a consistent hash was keyed by.
            scope = max(placement.prefix, key_prefix)
        else:
            scope = ecs.source_prefix  # chosen by the resolver's own address: never claim /0
        if all(d.mode is Mode.SERVFAIL for d in decisions):
            message = Message(query, rcode=Rcode.SERVFAIL, aa=False)
            reply = message.pack(opt=self._opt(query, scope=scope), limit=limit)
            label = ReplyLabel("SERVFAIL", service.name, "", Mode.SERVFAIL.value)
            return Reply(reply, label, Cacheability.NEVER, 0)
        cacheability = Cacheability.PER_CLIENT if client is None and not independent else Cacheability.ALL
        if len(decisions) == 1 and decisions[0].varies and decisions[0].pick is not None:
            decision = decisions[0]
            variants = tuple(
                self._steered_reply(query, result, service, limit, scope, d)
                for d in (Decision(decision.mode, a.datacenter, a.addresses) for a in decision.answers)
            )
            built = Reply(*variants[0], cacheability, self._generation, variants, decision.pick)
        else:
            # Several families (ANY over TCP) whose answers vary are drawn once and not kept.
            varies = any(d.varies for d in decisions)
            decisions = [_drawn(d) for d in decisions]
            reply, label = self._steered_reply(query, result, service, limit, scope, *decisions)
            built = Reply(reply, label, Cacheability.NEVER if varies else cacheability, self._generation)
        if cacheability is Cacheability.ALL and client is not None and query.qtype != TYPE_ANY:
            self._remember_shape(query, client, placement, built, keyed)
        return built

    def _steered_reply(
        self, query: Query, result: Result, service: Service, limit: int, scope: int, *decisions: Decision
    ) -> tuple[bytes, ReplyLabel]:
        """The reply for one answer per family, and its label."""
        first = decisions[0]
        steered = [
            r for d in decisions for r in _address_records(result.service_owner, service.ttl, d.addresses)
        ]
        records = (*result.answers, *steered)
        outcome = Outcome.ANSWER if steered else Outcome.NODATA
        reply, label = self._from_zone(query, Result(outcome, result.zone, records), limit, scope=scope)
        normal = first.mode in (Mode.NEAREST, Mode.FAILOVER, Mode.WEIGHTED) and first.datacenter is not None
        return reply, ReplyLabel(
            label.rcode,
            service.name,
            (first.datacenter or "") if normal else "",
            "" if normal else first.mode.value,
            tuple(str(a) for d in decisions for a in d.addresses),
        )

    def _remember_shape(
        self, query: Query, subnet: ClientSubnet, placement: Placement, built: Reply, keyed: Decision | None
    ) -> None:
        """Keep what a new subnet of this query's shape needs: the reply for its map block."""
        tail = len(subnet.wire_address)
        orders = self.orders
        body = _query_body(query, subnet)
        if body is None or orders is None or orders.maps is None or placement.block < 0:
            return
        if built.cacheability is Cacheability.NEVER:
            return
        shape = self._shapes.get(body)
        if shape is None:
            if len(self._shapes) >= SHAPE_LIMIT:
                self._shapes.clear()  # shapes are few (names x query forms): a guard, not a cache
            service = self.zones.lookup(query.qname, query.qtype).service
            if service is None:
                return
            which = orders.set_of[service.name]
            shape = self._shapes[body] = Shape(subnet, orders.maps[which], orders.indexes[which])
            if tail not in self._shape_tails:
                self._shape_tails = (*self._shape_tails, tail)

        def piece(reply: bytes) -> bytes:
            reply = _lower_question(query, reply)
            return reply[2 : len(reply) - tail]

        if keyed is not None and keyed.keyed is not None:
            _, _, answers = shape.keyed.setdefault(placement.block, (keyed.keyed, keyed.key_prefixes, {}))
            addresses = tuple(ip_address(a) for a in built.label.endpoints)
            answers[addresses] = (piece(built.wire), self.label_id(built.label))
        elif built.variants and built.pick is not None:
            pieces = [piece(r) for r, _ in built.variants]
            labels = [self.label_id(label) for _, label in built.variants]
            shape.varied[placement.block] = Varied(pieces, labels, built.pick, STATIC)
        else:
            shape.replies[placement.block] = (piece(built.wire), self.label_id(built.label))


def _drawn(decision: Decision) -> Decision:
    """One answer of a decision that varies per answer, drawn now."""
    if not decision.varies or decision.pick is None:
        return decision
    answer = decision.answers[decision.pick()]
    return Decision(decision.mode, answer.datacenter, answer.addresses)


def _query_body(query: Query, subnet: ClientSubnet) -> bytes | None:
    """The request without its ID and ECS address (question in lower case), when the address
    ends the message."""
    wire = query.wire
    if subnet.address_at < 0 or wire[subnet.address_at :] != subnet.wire_address or not subnet.wire_address:
        return None
    return _lower_question(query, wire)[2 : subnet.address_at]


def _lower_question(query: Query, message: bytes) -> bytes:
    """`message` (the query or its reply: both hold the question at offset 12) with the
    question name in lower case."""
    if query.qname == query.qname_wire:
        return message
    return message[:12] + query.qname + message[12 + len(query.qname) :]


def _fold_question(wire: bytes) -> tuple[bytes, int] | None:
    """(the query with its question name in lower case, where that name ends), or None when
    the name has no upper-case letter or does not parse (the full path will say why)."""
    size = len(wire)
    end = 12
    while end < size:
        length = wire[end]
        if length == 0:
            break
        if length > 63:
            return None
        end += 1 + length
    else:
        return None
    end += 1
    name = wire[12:end]
    lower = dnsname.key(name)
    if lower == name:
        return None
    return wire[:12] + lower + wire[end:], end


def _address_records(owner: bytes, ttl: int, addresses: tuple[object, ...]) -> list[Record]:
    """The A/AAAA records of one decision."""
    out = []
    for a in addresses:
        packed = a.packed  # type: ignore[attr-defined]
        out.append(Record(owner, TYPE_A if len(packed) == 4 else TYPE_AAAA, ttl, packed, str(a)))
    return out


def _txt(owner: bytes, text: str) -> Record:
    data = text.encode()[:255]
    return Record(owner, TYPE_TXT, 0, bytes((len(data),)) + data, text)
