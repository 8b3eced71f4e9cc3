"""Endpoint policies: which eligible endpoints of the chosen datacenter one answer carries.

Pure layer: standard library, `gslb.config.model`, `gslb.health.view` and
`gslb.policy.endpoints` only. A `Selection` is made once per HealthView for one datacenter
and one address family, and says every answer it can give up front, so the query path can
keep one reply per answer and only choose between them:

- `all` / `round_robin`: the rotations of the eligible endpoints (cut to `max_records`),
  taken in turn;
- `weighted`: one answer per endpoint (it first, the next ones after it), drawn by weight;
- `p2c_ewma`: one answer per endpoint (it first, the rest cheapest first), the cheaper of two
  random endpoints by the probes' peak-EWMA latency;
- `least_load`: one answer, least loaded first (no figures at all: as `weighted`);
- `consistent_hash`: keyed by the client network (`for_key`): the same endpoints for a client
  as long as they are eligible; an endpoint that leaves moves only its own clients.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from gslb.config.model import HashAlgorithm, IPAddress, Pick, PickPolicy
from gslb.policy.endpoints import ConsistentHash, WeightedChoice, least_load_order, p2c

Addresses = tuple[IPAddress, ...]


class Selection:
    """What one datacenter answers for one family under one view."""

    __slots__ = ("answers", "key_prefixes", "keyed", "pick")

    def __init__(
        self,
        answers: tuple[Addresses, ...],
        pick: Callable[[], int] | None = None,
        keyed: Callable[[bytes], Addresses] | None = None,
        key_prefixes: tuple[int, int] = (32, 128),
    ) -> None:
        self.answers = answers  # every answer it can give (keyed: the answer for no client)
        self.pick = pick  # which of `answers` this reply carries; None: always the first
        self.keyed = keyed  # consistent hash: the answer for a client key (`client_key`)
        self.key_prefixes = key_prefixes  # consistent hash: (IPv4, IPv6) client prefix hashed

    @property
    def varies(self) -> bool:
        """True when replies differ from one answer to the next (not from client to client)."""
        return self.pick is not None and len(self.answers) > 1


def select(
    pick: Pick,
    members: Sequence[tuple[str, IPAddress, int]],
    eligible: Sequence[int],
    *,
    costs: Mapping[str, float],
    loads: Mapping[str, float],
    rng: random.Random,
) -> Selection:
    """The Selection of `pick` over the eligible endpoints (indexes into `members`: every
    configured endpoint of this datacenter and family as (id, address, weight), in config
    order, which keeps rings and tables stable while endpoints come and go)."""
    policy = pick.policy
    chosen = [members[i] for i in eligible]
    addresses = tuple(m[1] for m in chosen)
    count = len(chosen)
    records = min(pick.records or count, count)
    if count == 0:
        return Selection(((),))
    if policy is PickPolicy.CONSISTENT_HASH:
        return _hashed(pick, members, tuple(eligible), records)
    if policy is PickPolicy.LEAST_LOAD:
        order = least_load_order([loads.get(m[0]) for m in chosen])
        if order is not None:
            return Selection((tuple(addresses[i] for i in order[:records]),))
        policy = PickPolicy.WEIGHTED
    if count == 1:
        return Selection((addresses,))
    if policy is PickPolicy.WEIGHTED:
        following = tuple(_following(addresses, i, records) for i in range(count))
        weights = WeightedChoice([m[2] for m in chosen])
        return Selection(following, lambda: weights.pick(rng))
    if policy is PickPolicy.P2C_EWMA:
        known = [costs[m[0]] for m in chosen if m[0] in costs]
        usual = sum(known) / len(known) if known else 0.0  # no figure yet: an average endpoint
        cost = [costs.get(m[0], usual) for m in chosen]
        by_cost = sorted(range(count), key=lambda i: (cost[i], i))
        answers = tuple(
            (addresses[i], *(addresses[j] for j in by_cost if j != i))[:records] for i in range(count)
        )
        return Selection(answers, lambda: p2c(cost, rng))
    # all, round_robin: every rotation, in turn
    rotations = tuple(_following(addresses, i, records) for i in range(count))
    return Selection(rotations, itertools.cycle(range(count)).__next__)  # one C call per answer


def _following(addresses: Addresses, first: int, records: int) -> Addresses:
    """`records` addresses from `first` on, wrapping around."""
    return tuple(addresses[(first + k) % len(addresses)] for k in range(records))


def _hashed(
    pick: Pick, members: Sequence[tuple[str, IPAddress, int]], eligible: tuple[int, ...], records: int
) -> Selection:
    ring = _ring(pick.algorithm, tuple((str(m[1]), max(m[2], 1)) for m in members), pick.table_size)
    ring.view(eligible)  # built now (once per eligible set), not by the first query
    addresses = [m[1] for m in members]

    def for_key(key: bytes) -> Addresses:
        return tuple(addresses[i] for i in ring.lookup(key, eligible, records))

    first = tuple(addresses[i] for i in eligible[:records])
    prefixes = (pick.ipv4_prefix_length, pick.ipv6_prefix_length)
    return Selection((first,), keyed=for_key, key_prefixes=prefixes)


@lru_cache(maxsize=256)
def _ring(algorithm: HashAlgorithm, members: tuple[tuple[str, int], ...], table_size: int) -> ConsistentHash:
    """One ring/table per configured member list, kept across HealthViews and reloads."""
    return ConsistentHash(members, algorithm.value, table_size=table_size)
