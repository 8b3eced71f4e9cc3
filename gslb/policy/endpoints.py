"""Endpoint selection algorithms: client keys, Ketama, Maglev, weighted, P2C, least load.

Pure layer: standard library only (no other gslb module, no outside library). Everything here
is deterministic across processes, machines and Python versions where an answer must be
(two DNS servers must give one client network the same endpoint): keys and rings are hashed
with MD5 and BLAKE2b from `hashlib`, never with Python's built-in `hash()`, which is salted
per process. Randomness is a parameter (`rng=`), so tests can fix the seed.

Members are given as the configured list, in config order, and the algorithms answer with
indexes into that list; which of them may answer now (health, drains) is the caller's
`eligible` set. `ConsistentHash` keeps a client on its endpoint while that endpoint stays
eligible, and moves only the clients of an endpoint that leaves.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import math
import random
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Final, Protocol

Member = tuple[str, int]  # (name, e.g. the endpoint address as text; weight > 0)

FAMILY_IPV4: Final = b"\x01"  # IANA address family numbers, as in the ECS option (RFC 7871)
FAMILY_IPV6: Final = b"\x02"
KETAMA: Final = "ketama"
MAGLEV: Final = "maglev"
MAGLEV_DEFAULT_SIZE: Final = 65537
_CACHE_LIMIT: Final = 8  # eligible sets kept per ConsistentHash: a flapping endpoint or two

_MAGLEV_OFFSET_PERSON: Final = b"gslb-maglev-h1"  # three different BLAKE2b personalisations:
_MAGLEV_SKIP_PERSON: Final = b"gslb-maglev-h2"  # independent hashes from one function
_MAGLEV_KEY_PERSON: Final = b"gslb-maglev-key"
_KEY_HASHER: Final = hashlib.blake2b(digest_size=8, person=_MAGLEV_KEY_PERSON)
_FLOAT32: Final = struct.Struct("f")


class _Digest(Protocol):
    def digest(self) -> bytes: ...


_md5: Callable[[bytes], _Digest]
try:  # CPython's own MD5: 0.22 us for a client key here, OpenSSL's 0.47 (its context setup)
    _md5 = importlib.import_module("_md5").md5
except ImportError:  # a build without it; usedforsecurity=False keeps FIPS-mode OpenSSL willing
    _md5 = functools.partial(hashlib.md5, usedforsecurity=False)

_FOUR_POINTS: Final = struct.Struct("<4I")
_FIRST_POINT: Final = struct.Struct("<I").unpack_from  # 70 ns here against 190 for int.from_bytes
_UINT64: Final = struct.Struct("<Q").unpack


def client_key(
    address: IPv4Address | IPv6Address, v4_prefix: int = 24, v6_prefix: int = 56
) -> tuple[bytes, int]:
    """The client network `address` falls in, truncated to the prefix length of its family,
    as a hash key, and the prefix length used (the widest ECS scope the hashed answer holds for).

    The key is one family byte (1 = IPv4, 2 = IPv6, as in the ECS option) and the packed
    network address, host bits zeroed: 1.2.3.4 and 1.2.3.200 give the same key at /24, and
    1.2.3.0/24 never collides with an IPv6 network. An IPv4-mapped IPv6 address
    (``::ffff:1.2.3.4``, what a dual-stack socket reports for an IPv4 client) is keyed as the
    IPv4 address with `v4_prefix`, so a client gets the same key over either socket.
    """
    if not 0 <= v4_prefix <= 32:
        raise ValueError(f"IPv4 prefix length {v4_prefix} is outside 0..32")
    if not 0 <= v6_prefix <= 128:
        raise ValueError(f"IPv6 prefix length {v6_prefix} is outside 0..128")
    if isinstance(address, IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return network_key(int(address), v6=True, prefix=v6_prefix), v6_prefix
        address = mapped
    return network_key(int(address), v6=False, prefix=v4_prefix), v4_prefix


def network_key(value: int, *, v6: bool, prefix: int) -> bytes:
    """`client_key`'s key for an address given as an int of its family's width (no mapped
    IPv4 here; the prefix already checked): the query path's shapes call it directly."""
    host_bits = (128 if v6 else 32) - prefix
    network = value >> host_bits << host_bits
    return FAMILY_IPV6 + network.to_bytes(16, "big") if v6 else FAMILY_IPV4 + network.to_bytes(4, "big")


def _check_members(members: Sequence[Member]) -> None:
    if not members:
        raise ValueError("no members")
    names = set()
    for name, weight in members:
        if weight <= 0:
            raise ValueError(f"member {name!r}: weight {weight} is not above 0")
        if name in names:
            raise ValueError(f"member {name!r} is listed twice")
        names.add(name)


def _float32(value: float) -> float:
    """`value` rounded to single precision, as a C `float` holds it."""
    return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])


def ketama_digests(weight: int, total_weight: int, members: int) -> int:
    """How many MD5 digests (four points each) libketama gives a member:
    ``floorf(pct * 40.0 * (float)numservers)`` with ``float pct = (float)weight / (float)total``
    (libketama's ketama.c, ketama_create_continuum). The single-precision steps are kept: they
    decide the count where the exact quotient is an integer, e.g. 61 equal members get 39
    digests each in libketama (and here), 40 in exact arithmetic; checked against the C
    expression compiled with gcc on x86-64 for 412,016 random (weight, total, members) cases.
    """
    pct = _float32(_float32(float(weight)) / _float32(float(total_weight)))
    return math.floor(_float32(pct * 40.0 * _float32(float(members))))


def _typecode(members: int) -> str:
    """The smallest unsigned array type that holds a member index below `members`."""
    return "B" if members <= 0x100 else "H" if members <= 0x10000 else "I"


class Ketama:
    """A Ketama continuum built exactly as libketama (last.fm, 2007) builds it.

    Per member, `ketama_digests` MD5 digests of ``f"{name}-{k}"`` (k = 0, 1, ...), each cut
    into four 32-bit points, bytes 0-3, 4-7, 8-11 and 12-15 read little-endian:
    ``(d[3+h*4] << 24) | (d[2+h*4] << 16) | (d[1+h*4] << 8) | d[h*4]``; 160 points per member
    at equal weights (156 at a few member counts, 61 the first, by libketama's float rounding).
    The points are sorted (ties, which libketama leaves to qsort, go to the member listed
    first); a key belongs to the first point at or after its hash, wrapping
    around past the largest point (ketama_get_server). A member whose share gives no digest
    (weight / total × 40 × N < 1) has no point, as in libketama.
    """

    __slots__ = ("_distinct", "_owners", "_points", "members")

    def __init__(self, members: Sequence[Member]) -> None:
        _check_members(members)
        total = sum(weight for _, weight in members)
        entries: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(members):
            for k in range(ketama_digests(weight, total, len(members))):
                digest = _md5(f"{name}-{k}".encode()).digest()
                entries.extend((point, index) for point in _FOUR_POINTS.unpack(digest))
        entries.sort()
        self.members: tuple[Member, ...] = tuple(members)
        # A list, not an array: bisect reads list items without boxing them (160 ns against 260).
        self._points = [point for point, _ in entries]
        self._owners = array(_typecode(len(members)), (index for _, index in entries))
        self._distinct = len(set(self._owners))

    @property
    def points(self) -> Sequence[int]:
        """The continuum's points, sorted."""
        return self._points

    @property
    def owners(self) -> Sequence[int]:
        """The member index of each point of `points`."""
        return self._owners

    @staticmethod
    def hash_key(key: bytes) -> int:
        """libketama's key hash (ketama_hashi): the first four bytes of MD5(key), little-endian."""
        return int(_FIRST_POINT(_md5(key).digest())[0])

    def lookup(self, key: bytes, count: int = 1) -> tuple[int, ...]:
        """The member owning `key` (the first point at or after its hash, wrapping around),
        then, for `count` > 1, the next distinct members walking the ring; () on an empty ring."""
        points = self._points
        i = bisect_left(points, _FIRST_POINT(_md5(key).digest())[0])
        if i == len(points):
            if i == 0:
                return ()
            i = 0
        if count == 1:
            return (self._owners[i],)
        return self._walk(i, count)

    def _walk(self, start: int, count: int) -> tuple[int, ...]:
        owners = self._owners
        wanted = min(count, self._distinct)
        found: list[int] = []
        i = start
        while len(found) < wanted:
            owner = owners[i]
            if owner not in found:
                found.append(owner)
            i += 1
            if i == len(owners):
                i = 0
        return tuple(found)

    def restrict(self, eligible: Collection[int]) -> Ketama:
        """This continuum with only the points of the `eligible` members (indexes unchanged).

        A key whose owner is eligible keeps it: no point between its hash and its owner's
        point was removed. At equal weights this is the continuum libketama builds from the
        eligible members alone (40 digests each either way, but for the few member counts
        where float rounding gives 39, see `ketama_digests`); at unequal weights libketama's
        rebuilt continuum would shift points between remaining members (their share of the
        smaller total changes), moving keys among members that are all still up.
        """
        ring = object.__new__(Ketama)
        allowed = set(eligible)
        keep = [i for i, owner in enumerate(self._owners) if owner in allowed]
        ring.members = self.members
        ring._points = [self._points[i] for i in keep]
        ring._owners = array(self._owners.typecode, (self._owners[i] for i in keep))
        ring._distinct = len(set(ring._owners))
        return ring


def is_prime(n: int) -> bool:
    """Trial division by 2, 3 and 6k ± 1 up to √n (table sizes stay below ~10^7)."""
    if n < 4:
        return n >= 2
    if n % 2 == 0 or n % 3 == 0:
        return False
    return all(n % d and n % (d + 2) for d in range(5, math.isqrt(n) + 1, 6))


def _blake64(data: bytes, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "little")


class Maglev:
    """A Maglev lookup table as in Eisenbud et al., "Maglev: A Fast and Reliable Software
    Network Load Balancer", NSDI 2016, section 3.4 (Pseudocode 1).

    Table size M prime (the paper: M > 100 × N keeps the imbalance within ~1 %; this class
    requires only M > N, the config loader asks for 100 × N). Member i has
    ``offset = h1(name) mod M`` and ``skip = h2(name) mod (M - 1) + 1`` (h1, h2: 64-bit
    BLAKE2b with two personalisations), so its preference list ``(offset + j × skip) mod M``
    visits every slot; members take turns claiming their next preferred empty slot until the
    table is full. A key maps to ``table[h(key) mod M]`` (h: 64-bit BLAKE2b, a third
    personalisation).

    Weights (the paper leaves the scheme open: "more turns"): each pass over the members,
    member i adds its weight to a credit and takes a turn when the credit reaches the largest
    weight, so it takes weight_i / max_weight turns per pass and, one slot per turn, a share
    of the table proportional to its weight. Credits start full, so every member takes a
    turn in the first pass and owns at least one slot. At equal weights this is the paper's
    round exactly.
    """

    __slots__ = ("_size", "_table", "members")

    def __init__(self, members: Sequence[Member], size: int = MAGLEV_DEFAULT_SIZE) -> None:
        _check_members(members)
        if not is_prime(size):
            raise ValueError(f"Maglev table size {size} is not a prime (65537 is)")
        if size <= len(members):
            raise ValueError(f"Maglev table size {size} is not above the {len(members)} members")
        self.members: tuple[Member, ...] = tuple(members)
        self._size = size
        self._table = array(_typecode(len(members)), self._populate(size))

    def _populate(self, size: int) -> list[int]:
        names = [name.encode() for name, _ in self.members]
        weights = [weight for _, weight in self.members]
        most = max(weights)
        skips = [_blake64(name, _MAGLEV_SKIP_PERSON) % (size - 1) + 1 for name in names]
        # The next slot of each member's preference list to try: next[i] of the paper, kept as
        # the slot itself (offset + next[i] × skip mod M, advanced by one addition).
        candidate = [_blake64(name, _MAGLEV_OFFSET_PERSON) % size for name in names]
        credit = [most - w for w in weights]  # full after the first pass's addition
        equal = all(w == most for w in weights)
        table = [-1] * size  # a list of small ints: the fastest to index while filling
        filled = 0
        while True:
            for i in range(len(weights)):
                if not equal:
                    credit[i] += weights[i]
                    if credit[i] < most:
                        continue
                    credit[i] -= most
                slot = candidate[i]
                skip = skips[i]
                while table[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                table[slot] = i
                slot += skip
                candidate[i] = slot - size if slot >= size else slot
                filled += 1
                if filled == size:
                    return table

    @property
    def size(self) -> int:
        """M, the number of slots."""
        return self._size

    @property
    def table(self) -> Sequence[int]:
        """The member index of every slot."""
        return self._table

    @staticmethod
    def hash_key(key: bytes) -> int:
        """The 64-bit key hash: BLAKE2b-64 of `key` (personalised), little-endian."""
        hasher = _KEY_HASHER.copy()
        hasher.update(key)
        return int(_UINT64(hasher.digest())[0])

    def lookup(self, key: bytes, count: int = 1) -> tuple[int, ...]:
        """``table[hash(key) mod M]``, then, for `count` > 1, the next distinct members in the
        table from that slot on, wrapping around."""
        hasher = _KEY_HASHER.copy()
        hasher.update(key)
        slot = _UINT64(hasher.digest())[0] % self._size
        if count == 1:
            return (self._table[slot],)
        return self.walk(slot, count)

    def walk(self, slot: int, count: int, eligible: Sequence[bool] | None = None) -> tuple[int, ...]:
        """Up to `count` distinct members in table order from `slot` on, wrapping around; with
        `eligible` (a flag per member), only the members whose flag is true."""
        wanted = min(count, len(self.members))  # every member owns a slot (see the class)
        if eligible is not None:
            wanted = min(wanted, sum(eligible))
        table = self._table
        size = self._size
        found: list[int] = []
        i = slot
        for _ in range(size):
            if len(found) >= wanted:
                break
            member = table[i]
            if member not in found and (eligible is None or eligible[member]):
                found.append(member)
            i += 1
            if i == size:
                i = 0
        return tuple(found)


class HashView(Protocol):
    """A `ConsistentHash` under one eligible set: built once per set, then only looked up."""

    @property
    def eligible(self) -> tuple[int, ...]:
        """The eligible members (configured indexes, ascending)."""
        ...

    def lookup(self, key: bytes, count: int = 1) -> tuple[int, ...]:
        """Up to `count` eligible members for `key` (configured indexes), owner first; ()
        when no member is eligible."""
        ...


class _KetamaView:
    """The full continuum without the ineligible members' points."""

    __slots__ = ("_ring", "eligible")

    def __init__(self, full: Ketama, eligible: tuple[int, ...]) -> None:
        self.eligible = eligible
        self._ring = full if len(eligible) == len(full.members) else full.restrict(eligible)

    def lookup(self, key: bytes, count: int = 1) -> tuple[int, ...]:
        return self._ring.lookup(key, count)


def fallback_size(members: int, limit: int) -> int:
    """The smallest prime above 100 x `members` (at least 101), at most `limit`."""
    size = max(101, 100 * members + 1)
    while not is_prime(size):
        size += 1
    return min(size, limit)


class _MaglevView:
    """The full table, and for the keys of ineligible owners a table of the eligible members.

    That table only spreads the keys that moved (about 1/N of them), so it is sized as the paper
    sizes a table for its members (a prime above 100 x members: ~1 % imbalance), not as the
    full one: a health change builds it in about a millisecond instead of 60 on the event loop.
    """

    __slots__ = ("_flags", "_full", "_inner", "eligible")

    def __init__(self, full: Maglev, eligible: tuple[int, ...]) -> None:
        self.eligible = eligible
        self._full = full
        self._flags = [False] * len(full.members)
        for i in eligible:
            self._flags[i] = True
        self._inner: Maglev | None = None
        if eligible and len(eligible) < len(full.members):
            self._inner = Maglev([full.members[i] for i in eligible], fallback_size(len(eligible), full.size))

    def lookup(self, key: bytes, count: int = 1) -> tuple[int, ...]:
        full = self._full
        hasher = _KEY_HASHER.copy()
        hasher.update(key)
        point = _UINT64(hasher.digest())[0]
        slot = point % full.size
        owner = full.table[slot]
        if self._flags[owner]:
            if count == 1:
                return (owner,)
            return full.walk(slot, count, self._flags)
        # The owner left: ask the table of the eligible members only. Keys whose owner is
        # eligible never get here, so they cannot move.
        inner = self._inner
        if inner is None:  # nothing is eligible
            return ()
        index = self.eligible  # inner member index -> configured member index
        slot = point % inner.size
        if count == 1:
            return (index[inner.table[slot]],)
        return tuple(index[i] for i in inner.walk(slot, count))


class ConsistentHash:
    """Health-aware consistent hashing over every configured member (stable, config order).

    A key whose owner in the full ring/table is eligible keeps that owner; only keys owned
    by ineligible members move. Ketama: the full continuum without the ineligible members'
    points (`Ketama.restrict`). Maglev: the full table first; when its owner is ineligible,
    a table built from the eligible members only (the same size), so no other key moves.
    Views are built once per distinct eligible set and kept in a small LRU: call `view` when
    health changes, off the query path, and the queries find it built.
    """

    __slots__ = ("_cache", "_full", "_last", "algorithm")

    def __init__(
        self, members: Sequence[Member], algorithm: str, *, table_size: int = MAGLEV_DEFAULT_SIZE
    ) -> None:
        if algorithm == KETAMA:
            self._full: Ketama | Maglev = Ketama(members)
        elif algorithm == MAGLEV:
            self._full = Maglev(members, table_size)
        else:
            raise ValueError(f'unknown consistent hash algorithm "{algorithm}" (ketama, maglev)')
        self.algorithm = algorithm
        self._cache: OrderedDict[tuple[int, ...], HashView] = OrderedDict()
        self._last: tuple[Collection[int], HashView] | None = None

    @property
    def members(self) -> tuple[Member, ...]:
        """Every configured member, in config order: the indexes answers refer to."""
        return self._full.members

    @property
    def full(self) -> Ketama | Maglev:
        """The ring or table of every configured member."""
        return self._full

    def view(self, eligible: Collection[int]) -> HashView:
        """The view for this eligible set (indexes into `members`), built on first use."""
        last = self._last
        if last is not None and last[0] is eligible:  # an immutable set passed again (below)
            return last[1]
        key = tuple(sorted(set(eligible)))
        if key and not 0 <= key[0] <= key[-1] < len(self._full.members):
            raise ValueError(f"eligible members {key} are not all below {len(self._full.members)}")
        found = self._cache.get(key)
        if found is None:
            full = self._full
            found = _KetamaView(full, key) if isinstance(full, Ketama) else _MaglevView(full, key)
            self._cache[key] = found
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(eligible, tuple | frozenset):  # a list may change under the same identity
            self._last = (eligible, found)
        return found

    def lookup(self, key: bytes, eligible: Collection[int], count: int = 1) -> tuple[int, ...]:
        """Up to `count` eligible members for `key`, owner first (see `HashView.lookup`).
        Passing the same `eligible` tuple or frozenset again skips even the cache lookup."""
        return self.view(eligible).lookup(key, count)


class WeightedChoice:
    """Weighted random choice by cumulative weights and bisection (as `random.choices`).

    Weights are integers >= 0; a zero-weight member is a standby, drawn only when every
    weight is 0 (then all are drawn uniformly).
    """

    __slots__ = ("_cumulative", "_indexes", "_last", "_total")

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights:
            raise ValueError("no weights")
        if any(w < 0 for w in weights):
            raise ValueError(f"negative weight in {list(weights)}")
        indexes = [i for i, w in enumerate(weights) if w > 0] or list(range(len(weights)))
        self._indexes = indexes
        self._cumulative = list(itertools.accumulate(weights[i] or 1 for i in indexes))
        self._total = self._cumulative[-1]
        self._last = len(indexes) - 1  # bisect's hi: a float rounding up to total stays in range

    def pick(self, rng: random.Random) -> int:
        """One member index, drawn with probability weight / total."""
        return self._indexes[bisect_right(self._cumulative, rng.random() * self._total, 0, self._last)]


def p2c(costs: Sequence[float], rng: random.Random) -> int:
    """Power of two choices (Mitzenmacher 2001; Finagle's P2C balancer): two distinct members
    drawn uniformly, the one with the lower cost wins, the first drawn on a tie. One member: 0."""
    n = len(costs)
    if n < 2:
        if n == 1:
            return 0
        raise ValueError("p2c over no members")
    first = int(rng.random() * n)
    second = int(rng.random() * (n - 1))
    if second >= first:
        second += 1
    return second if costs[second] < costs[first] else first


def least_load_order(loads: Sequence[float | None]) -> tuple[int, ...] | None:
    """Member indexes least loaded first (ties by index), then the members without a load
    figure in index order; None when no member has a figure (the caller draws by weight)."""
    known = sorted((load, i) for i, load in enumerate(loads) if load is not None)
    if not known:
        return None
    return (*(i for _, i in known), *(i for i, load in enumerate(loads) if load is None))
