"""Response rate limiting (RRL) for UDP replies, as BIND, NSD and Knot do it.

Adapter detail of `gslb.dns` (standard library only: no sockets, no asyncio, no dnslib). The
UDP listener hands every reply the handler built to `RateLimiter.limit(reply, peer, now)` and
sends what comes back: the reply, a slipped reply (header and question with TC=1, plus a bare
OPT when the reply had one: never larger than the query + 11 bytes, so a real resolver retries
over TCP and a reflected victim gets nothing bigger than what was sent), or nothing. TCP
replies are never limited: the handshake proves the address.

Accounts, BIND's: one per (client network, response class, what the response is about). The
network is the source address cut to `ipv4_prefix_length` / `ipv6_prefix_length`. Classes:
answers by (name, type); NXDOMAIN and NODATA by the zone; errors (REFUSED, FORMERR, SERVFAIL,
NOTIMP, ...) together; answers synthesised from a wildcard count as the wildcard's closest
encloser (random names under `*.zone` are one account); plus, when `all_per_second` is set
(off by default, as in BIND), one all-responses account per network. Each account is a token
bucket as in BIND: it earns its class's per-second rate every second up to that rate, a reply
costs one, a reply is limited while the balance is negative, and the balance never falls below
-window_s x rate (a flood stays limited until it has been quiet for about the window). Every
`slip`-th limited reply of an account is slipped, the others are dropped (slip 0: drop all, 1:
slip all); in `log_only` mode they are counted and sent.

ECS. A public resolver relaying ECS for many client subnets asks the same steered name from
one address at a high rate, legitimately: each answer holds for one client subnet (its ECS
scope), the resolver caches it for those clients only, and asks again for the next subnet. So
for a steered reply (the name is a service, or the reply's ECS scope is not 0) the ECS subnet,
cut to the same prefix lengths, is part of what the answer is about: the account is (resolver
network, name, type, ECS subnet), and 5,000 q/s over 10,000 subnets is 0.5 q/s per account.
The source address stays in every key: the victim of a reflection is the source, and an
attacker elsewhere cannot spend a real resolver's credit by naming its clients' subnets. A
flood spoofed from one source with no ECS, one ECS subnet, or for any static name is limited
as without ECS. What the per-subnet accounts let through, a flood cycling ECS subnets over a
steered name (small A/AAAA answers: little amplification), meets their sum: one more account
per (network, name, type) over all its ECS subnets, at `ecs_per_second` (4x the issue's
resolver). It costs only replies keyed by an ECS subnet, where an all-responses account on by
default would cost every reply. The ECS subnet, not the datacenter answered: per datacenter
would put a big resolver's whole population of one continent into one account.

Cost: a few dict lookups per reply. The response class comes from the reply's bytes (rcode,
ANCOUNT, question, ECS), computed once per distinct reply body (after the ID) and cached; the
client network once per address and cached; time is read once per packet by the caller. All
tables are bounded and evicted by generations (`gslb.dns.cache.ReplyCache`), never cleared at
once, and hold only str, bytes, ints and tuples of them, which the garbage collector does not
trace. Counters are plain ints, read at scrape time; `summary()` makes the one log line per
interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Final

from gslb.config.model import RateLimit
from gslb.dns.cache import ReplyCache
from gslb.zone.zone import Zones

# Response classes: index into the rates, first byte of an account's subject.
ANSWER: Final = 0
NXDOMAIN: Final = 1
NODATA: Final = 2
ERROR: Final = 3
ALL: Final = 4
ECS: Final = 5  # a steered answer summed over the ECS subnets of one resolver network
CLASS_NAMES: Final = ("answer", "nxdomain", "nodata", "error", "all", "ecs")

EXEMPT: Final = ""  # the client network of an exempt address
TOP_NETWORKS: Final = 5  # networks named in the summary line
NETWORKS_COUNTED: Final = 10_000  # distinct networks counted per interval (a bound, not a cache)
SUBJECTS_CACHED: Final = 20_000  # classified reply bodies (a miss costs ~1 µs, a body ~100 bytes)
_TC: Final = 0x02  # in the second byte of the header
_ECS_HEAD: Final = b"\x00\x08"  # option code 8 (RFC 7871)

Subject = tuple[int, bytes, bytes]  # (class, what it is about, the ECS sum's subject or b"")
Account = tuple[float, int, int]  # (when the next second's credit is due, balance, limited so far)


@dataclass(slots=True)
class Totals:
    """What the limiter did since it started (cumulative) or in one interval."""

    slipped: int = 0
    dropped: int = 0
    logged: int = 0  # log_only: would have been limited, sent
    by_class: list[int] = field(default_factory=lambda: [0] * len(CLASS_NAMES))

    @property
    def limited(self) -> int:
        return self.slipped + self.dropped + self.logged


class RateLimiter:
    """Decides, per UDP reply, send / slip / drop. One per responder; `limit()` is the query
    path, everything else runs at load or scrape time."""

    def __init__(self, settings: RateLimit, zones: Zones) -> None:
        self.settings = settings
        window = settings.window_s
        rates = (
            settings.responses_per_second,
            settings.nxdomains_per_second,
            settings.nxdomains_per_second,
            settings.errors_per_second,
            settings.all_per_second,
            settings.ecs_per_second,
        )
        self._rates = rates
        self._all_rate = settings.all_per_second
        self._floors = tuple(-window * rate for rate in rates)
        self._slip = settings.slip
        self._log_only = settings.log_only
        self._exempt: tuple[IPv4Network | IPv6Network, ...] = settings.exempt
        self._prefixes = {4: settings.ipv4_prefix_length, 6: settings.ipv6_prefix_length}
        size = settings.table_size
        self._accounts: ReplyCache[Account] = ReplyCache(size)  # (network, subject) -> account
        self._networks: ReplyCache[Account] = ReplyCache(max(2, size // 4))  # network -> all-account
        self._clients: ReplyCache[str] = ReplyCache(max(2, size // 2))  # address -> network
        # reply body (after the ID) -> (class, subject)
        self._subjects: ReplyCache[Subject] = ReplyCache(SUBJECTS_CACHED)
        self._origins: frozenset[bytes] = frozenset()
        self._names: frozenset[bytes] = frozenset()
        self._steered: frozenset[bytes] = frozenset()
        self.use_zones(zones)
        self.totals = Totals()
        self._interval = Totals()
        self._by_network: dict[str, int] = {}

    def use_zones(self, zones: Zones) -> None:
        """The names a reply is classified by (at construction and after a reload)."""
        all_zones = zones.all()
        self._origins = frozenset(z.origin for z in all_zones)
        self._names = frozenset(name for z in all_zones for name in z.names)
        self._steered = frozenset(name for z in all_zones for name in z.services)
        self._subjects = ReplyCache(SUBJECTS_CACHED)

    def carry_over(self, previous: RateLimiter) -> None:
        """After a reload: keep the counters, and with the same settings the accounts too (an
        attacker gets no fresh credit from a SIGHUP). Called on the event loop, like `limit()`."""
        self.totals = previous.totals
        self._interval = previous._interval
        self._by_network = previous._by_network
        if previous.settings == self.settings:
            self._accounts = previous._accounts
            self._networks = previous._networks
            self._clients = previous._clients

    def table_size(self) -> int:
        """Accounts held now (per class and per network)."""
        return len(self._accounts) + len(self._networks)

    # -- the query path --

    def limit(self, reply: bytes, peer: str, now: float) -> bytes | None:
        """`reply` to send to `peer` at monotonic time `now`: itself, a slipped reply, or None."""
        net = self._clients.young.get(peer)
        if net is None:
            net = self._client(peer)
        if not net:
            return reply
        body = reply[2:]
        found = self._subjects.young.get(body)
        if found is None:
            found = self._subject(reply, body)
        cls, subject, summed = found
        # Fast path written out (a call costs as much as the rest): the account is in the young
        # generation, its second is not over and it has credit left. Everything else: _debit().
        rate = self._rates[cls]
        if rate:
            key = (net, subject)
            young = self._accounts.young
            entry = young.get(key)
            if entry is not None and now < entry[0] and entry[1] > 0:
                young[key] = (entry[0], entry[1] - 1, entry[2])
            else:
                limited = _debit(self._accounts, key, rate, self._floors[cls], now)
                if limited:
                    return self._limited(reply, net, cls, limited)
        if summed and self._rates[ECS]:  # only steered answers keyed by their ECS subnet
            limited = _debit(self._accounts, (net, summed), self._rates[ECS], self._floors[ECS], now)
            if limited:
                return self._limited(reply, net, ECS, limited)
        if self._all_rate:
            young = self._networks.young
            entry = young.get(net)
            if entry is not None and now < entry[0] and entry[1] > 0:
                young[net] = (entry[0], entry[1] - 1, entry[2])
            else:
                limited = _debit(self._networks, net, self._all_rate, self._floors[ALL], now)
                if limited:
                    return self._limited(reply, net, ALL, limited)
        return reply

    def _limited(self, reply: bytes, net: str, cls: int, limited: int) -> bytes | None:
        """Count one limited reply; slip every `slip`-th of the account's, drop the others."""
        totals, interval = self.totals, self._interval
        totals.by_class[cls] += 1
        interval.by_class[cls] += 1
        by_network = self._by_network
        if net in by_network or len(by_network) < NETWORKS_COUNTED:
            by_network[net] = by_network.get(net, 0) + 1
        if self._log_only:
            totals.logged += 1
            interval.logged += 1
            return reply
        slip = self._slip
        if slip and limited % slip == 0:
            totals.slipped += 1
            interval.slipped += 1
            return slipped(reply)
        totals.dropped += 1
        interval.dropped += 1
        return None

    def _client(self, peer: str) -> str:
        """The account prefix of a source address ("192.0.2.0/24"), or EXEMPT; cached."""
        clients = self._clients
        net = clients.old.get(peer)
        if net is None:
            net = self.network_of(peer)
        clients.put(peer, net)
        return net

    def network_of(self, peer: str) -> str:
        """The client network of `peer` as text, EXEMPT for an exempt address, and the address
        itself when it does not parse (a scoped link-local one, say)."""
        try:
            address = ip_address(peer)
            if any(address in network for network in self._exempt):
                return EXEMPT
            return str(ip_network((address, self._prefixes[address.version]), strict=False))
        except ValueError:
            return peer

    def _subject(self, reply: bytes, body: bytes) -> Subject:
        subjects = self._subjects
        found = subjects.old.get(body)
        if found is None:
            found = self.classify(reply)
        subjects.put(body, found)
        return found

    def classify(self, reply: bytes) -> Subject:
        """(response class, what it is about: the account's key within a client network, and
        for a steered answer keyed by its ECS subnet the key of their sum, else b"")."""
        if len(reply) < 12 or reply[5] != 1 or reply[4]:  # no question: a header-only error
            return ERROR, b"\x03", b""
        rcode = reply[3] & 0x0F
        if rcode not in (0, 3):
            return ERROR, b"\x03", b""
        end = _question_end(reply)
        if end < 0:
            return ERROR, b"\x03", b""
        name = reply[12 : end - 4].lower()  # wire name, root label included: ASCII folding only
        qtype = reply[end - 4 : end - 2]
        answered = reply[6] or reply[7] or reply[2] & _TC  # answers, or too big for UDP
        if rcode == 0 and (answered or name in self._steered):
            about = self._answer_name(name) + qtype
            subnet = self._ecs_subnet(reply, end, steered=name in self._steered)
            return ANSWER, bytes((ANSWER,)) + about + subnet, bytes((ECS,)) + about if subnet else b""
        cls = NXDOMAIN if rcode == 3 else NODATA
        return cls, bytes((cls,)) + self._zone_of(name), b""

    def _answer_name(self, name: bytes) -> bytes:
        """The name itself, or for an answer synthesised from a wildcard (its name does not
        exist) "*." + its closest encloser (BIND: such answers count as the wildcard's)."""
        names = self._names
        if name in names:
            return name
        encloser = name
        while encloser[0]:
            encloser = encloser[encloser[0] + 1 :]
            if encloser in names:
                return b"\x01*" + encloser
        return name  # not in our zones at all (CHAOS id.server, say)

    def _zone_of(self, name: bytes) -> bytes:
        origins = self._origins
        zone = name
        while zone not in origins:
            if not zone[0]:
                return name
            zone = zone[zone[0] + 1 :]
        return zone

    def _ecs_subnet(self, reply: bytes, question_end: int, *, steered: bool) -> bytes:
        """For a reply that depends on the ECS client (steered name, or scope > 0): the ECS
        subnet cut to the account prefix; else nothing. The handler writes ECS last in OPT, and
        OPT last in the message, so it is the message's tail."""
        if not (reply[10] or reply[11]):
            return b""
        size = len(reply)
        low = max(question_end, size - 24)  # option header + family/prefixes + at most 16 bytes
        at = reply.rfind(_ECS_HEAD, low)
        while at >= 0:
            if size - at >= 8 and reply[at + 2] == 0 and at + 4 + reply[at + 3] == size:
                break
            at = reply.rfind(_ECS_HEAD, low, at + 1)
        else:
            return b""
        family, source, scope = reply[at + 5], reply[at + 6], reply[at + 7]
        if source == 0 or not (steered or scope):
            return b""
        bits = min(source, self._prefixes[6 if family == 2 else 4])
        address = bytearray(reply[at + 8 : at + 8 + (bits + 7) // 8])
        if bits % 8 and address:
            address[-1] &= (0xFF << (8 - bits % 8)) & 0xFF
        return bytes((family, bits)) + address

    # -- reports --

    def summary(self, interval_s: float) -> str | None:
        """One line about what was limited since the last call, or None when nothing was."""
        interval, by_network = self._interval, self._by_network
        if not interval.limited:
            return None
        self._interval = Totals()
        self._by_network = {}
        top = sorted(by_network.items(), key=lambda item: (-item[1], item[0]))[:TOP_NETWORKS]
        classes = ", ".join(
            f"{name} {count}" for name, count in zip(CLASS_NAMES, interval.by_class, strict=True) if count
        )
        if self._log_only:
            what = f"{interval.logged} UDP replies would have been limited (log_only: all sent)"
        else:
            what = (
                f"{interval.limited} UDP replies limited ({interval.slipped} slipped with TC=1, "
                f"{interval.dropped} dropped)"
            )
        return (
            f"response rate limiting, last {interval_s:g} s: {what}; by class: {classes}; "
            f"top networks: {', '.join(f'{net} {count}' for net, count in top)}"
            + (f" (+{len(by_network) - len(top)} more)" if len(by_network) > len(top) else "")
        )


def slipped(reply: bytes) -> bytes:
    """The reply cut to its header and question, TC=1, with a bare OPT (its payload size and
    flags, no options) when it had one: at most the query's size + 11 bytes."""
    if len(reply) < 12:
        return reply
    end = _question_end(reply) if reply[4:6] == b"\x00\x01" else -1
    if end < 0:
        return reply[:2] + bytes((reply[2] | _TC, reply[3])) + bytes(8)
    opt = _bare_opt(reply, end) if reply[10] or reply[11] else b""
    counts = b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
    return reply[:2] + bytes((reply[2] | _TC, reply[3])) + counts + reply[12:end] + opt


def _bare_opt(reply: bytes, low: int) -> bytes:
    """The reply's OPT record (the handler writes it last) without its options, or nothing."""
    size = len(reply)
    at = reply.rfind(b"\x00\x00\x29", low)
    while at >= 0:
        if at + 11 <= size and at + 11 + int.from_bytes(reply[at + 9 : at + 11], "big") == size:
            return reply[at : at + 9] + b"\x00\x00"
        at = reply.rfind(b"\x00\x00\x29", low, at + 2)
    return b""  # additional records, but no OPT (glue)


def _question_end(message: bytes) -> int:
    """Where the question (name, type, class) at offset 12 ends, or -1 if it does not parse."""
    size = len(message)
    offset = 12
    while offset < size:
        length = message[offset]
        if length == 0:
            end = offset + 5
            return end if end <= size else -1
        if length > 63:
            return -1
        offset += 1 + length
    return -1


def _debit(table: ReplyCache[Account], key: object, rate: int, floor: int, now: float) -> int:
    """Take one reply from an account (BIND's bucket: `rate` credits a second, at most `rate`
    banked, never below `floor`); 0 when it had credit, else how many it has had limited. An
    account's seconds start at its first reply: its credit is due one second after another."""
    entry = table.young.get(key)
    young = entry is not None
    if entry is None:
        entry = table.old.get(key)
    if entry is None:
        due, balance, limited = now + 1.0, rate - 1, 0
    else:
        due, balance, limited = entry
        if now >= due:
            seconds = int(now - due) + 1
            due += seconds
            balance = min(rate, balance + rate * seconds)
        balance -= 1
        if balance < 0:
            limited += 1
            balance = max(balance, floor)
    if young:
        table.young[key] = (due, balance, limited)
    else:
        table.put(key, (due, balance, limited))
    return limited if balance < 0 else 0
