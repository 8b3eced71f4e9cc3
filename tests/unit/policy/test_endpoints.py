"""Endpoint algorithms: client keys, Ketama, Maglev, health-aware hashing, round robin,
weighted, P2C, least load. Fixed seeds; the numbers are the issue's acceptance criteria."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from bisect import bisect_left
from collections import Counter
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.policy.endpoints import (
    MAGLEV_DEFAULT_SIZE,
    ConsistentHash,
    Ketama,
    Maglev,
    WeightedChoice,
    client_key,
    fallback_size,
    is_prime,
    ketama_digests,
    least_load_order,
    p2c,
)

ROOT = Path(__file__).resolve().parents[3]
TEN = [(f"192.0.2.{i}", 1) for i in range(1, 11)]
KEYS = [client_key(IPv4Address(i << 8))[0] for i in range(100_000)]  # 0.0.0.0/24 ... 1.134.159.0/24


# client_key


@pytest.mark.parametrize(
    ("a", "b", "v4", "v6", "same"),
    [
        ("1.2.3.4", "1.2.3.200", 24, 56, True),
        ("1.2.3.4", "1.2.3.200", 25, 56, False),
        ("1.2.3.4", "1.2.4.4", 24, 56, False),
        ("2001:db8:0:ab00::1", "2001:db8:0:abff:ffff::9", 24, 56, True),
        ("2001:db8:0:ab00::1", "2001:db8:0:ac00::1", 24, 56, False),
        ("2001:db8:0:ab00::1", "2001:db8:0:ab80::1", 24, 57, False),
        ("::ffff:1.2.3.4", "1.2.3.99", 24, 56, True),
        ("0.0.0.0", "::", 0, 0, False),
        ("1.2.3.0", "102:300::", 24, 24, False),
    ],
    ids=[
        "v4-same-24",
        "v4-split-25",
        "v4-next-24",
        "v6-same-56",
        "v6-next-56",
        "v6-split-57",
        "v4-mapped-as-v4",
        "families-differ-at-0",
        "v4-vs-same-bits-v6",
    ],
)
def test_client_key_truncates(a: str, b: str, v4: int, v6: int, same: bool) -> None:
    ka = client_key(ip_address(a), v4, v6)
    kb = client_key(ip_address(b), v4, v6)
    assert (ka == kb) is same


def test_client_key_bytes_and_prefix() -> None:
    assert client_key(IPv4Address("1.2.3.4")) == (b"\x01\x01\x02\x03\x00", 24)
    assert client_key(IPv4Address("1.2.3.255"), v4_prefix=25) == (b"\x01\x01\x02\x03\x80", 25)
    assert client_key(IPv6Address("2001:db8:aaaa:bbcc::1")) == (
        b"\x02" + IPv6Address("2001:db8:aaaa:bb00::").packed,
        56,
    )
    assert client_key(IPv6Address("::ffff:10.9.8.7"), v4_prefix=16) == (b"\x01\x0a\x09\x00\x00", 16)
    assert client_key(IPv4Address("10.9.8.7"), v4_prefix=32) == (b"\x01\x0a\x09\x08\x07", 32)


@pytest.mark.parametrize(("v4", "v6"), [(33, 56), (-1, 56), (24, 129), (24, -1)])
def test_client_key_rejects_bad_prefix(v4: int, v6: int) -> None:
    with pytest.raises(ValueError, match="prefix length"):
        client_key(IPv4Address("1.2.3.4"), v4, v6)


# Ketama


def libketama_ring(members: list[tuple[str, int]], digests: list[int]) -> list[tuple[int, int]]:
    """libketama's continuum written out by hand: (point, member), sorted."""
    ring = []
    for index, ((name, _), count) in enumerate(zip(members, digests, strict=True)):
        for k in range(count):
            d = hashlib.md5(f"{name}-{k}".encode()).digest()
            for h in range(4):
                point = (d[3 + h * 4] << 24) | (d[2 + h * 4] << 16) | (d[1 + h * 4] << 8) | d[h * 4]
                ring.append((point, index))
    return sorted(ring)


def brute_force(ring: list[tuple[int, int]], key: bytes) -> int:
    """The first point >= the key's hash by a linear scan, else the first point."""
    d = hashlib.md5(key).digest()
    h = (d[3] << 24) | (d[2] << 16) | (d[1] << 8) | d[0]
    for point, owner in ring:
        if point >= h:
            return owner
    return ring[0][1]


def test_ketama_points_match_libketama_formula() -> None:
    members = [("10.0.0.1:11211", 1), ("10.0.0.2:11211", 1), ("10.0.0.3:11211", 1)]
    ring = Ketama(members)
    expected = libketama_ring(members, [40, 40, 40])
    assert list(ring.points) == [p for p, _ in expected]
    assert list(ring.owners) == [o for _, o in expected]
    rng = random.Random(7)
    for _ in range(1000):
        key = rng.randbytes(rng.randrange(1, 20))
        assert ring.lookup(key) == (brute_force(expected, key),)


def test_ketama_known_answers() -> None:
    """Pinned by hand: MD5("10.0.0.1:11211-0") = 76240962 e29fe30f 407f595c 517e7577, each
    four bytes read backwards; and the key hashes of "" (MD5 d41d8cd9...) and "abc" (90015098...)."""
    points = set(Ketama([("10.0.0.1:11211", 1)]).points)
    assert {0x62092476, 0x0FE39FE2, 0x5C597F40, 0x77757E51} <= points
    assert len(points) == 160
    assert Ketama.hash_key(b"") == 0xD98C1DD4
    assert Ketama.hash_key(b"abc") == 0x98500190


def test_ketama_160_points_per_member_sorted() -> None:
    ring = Ketama(TEN)
    assert len(ring.points) == 1600
    assert Counter(ring.owners) == dict.fromkeys(range(10), 160)
    assert list(ring.points) == sorted(ring.points)


@pytest.mark.parametrize(
    ("weight", "total", "members", "digests"),
    [
        (1, 10, 10, 40),
        (1, 7, 7, 40),  # exact: 40; double precision all the way: 39
        (1, 61, 61, 39),  # libketama's single precision (gcc, x86-64): 39
        (7, 10, 2, 56),
        (3, 10, 2, 24),
        (1, 1000, 2, 0),  # too small a share: no point, as in libketama
    ],
    ids=["equal-10", "equal-7", "equal-61", "weight-7-of-10", "weight-3-of-10", "tiny-share"],
)
def test_ketama_digest_count_follows_libketama_floats(
    weight: int, total: int, members: int, digests: int
) -> None:
    assert ketama_digests(weight, total, members) == digests


def test_ketama_weighted_ring() -> None:
    members = [("a", 7), ("b", 3)]
    ring = Ketama(members)
    expected = libketama_ring(members, [56, 24])
    assert list(zip(ring.points, ring.owners, strict=True)) == expected


def test_ketama_count_walks_to_distinct_members() -> None:
    ring = Ketama(TEN)
    rng = random.Random(3)
    for _ in range(500):
        key = rng.randbytes(5)
        three = ring.lookup(key, 3)
        assert len(set(three)) == 3
        assert three[0] == ring.lookup(key)[0]
        # the brute-force walk: owners of the points from the key's on, first occurrences
        start = bisect_left(list(ring.points), Ketama.hash_key(key)) % len(ring.points)
        walk = list(ring.owners[start:]) + list(ring.owners[:start])
        assert three == tuple(dict.fromkeys(walk))[:3]
    assert sorted(ring.lookup(b"k", 50)) == list(range(10))


# Maglev


def test_maglev_imbalance_below_five_percent() -> None:
    table = Maglev(TEN, 65537)
    slots = Counter(table.table)
    assert len(slots) == 10
    assert max(slots.values()) / (65537 / 10) < 1.05


def test_maglev_weight_two_gets_twice_the_slots() -> None:
    table = Maglev([("a", 2), ("b", 1), ("c", 1), ("d", 1)])
    slots = Counter(table.table)
    for other in (1, 2, 3):
        assert 1.95 < slots[0] / slots[other] < 2.05
    # shares follow weights with uneven weights too (every member within 2 % of its share)
    weights = [1, 2, 3, 5, 8]
    table = Maglev([(f"m{i}", w) for i, w in enumerate(weights)])
    slots = Counter(table.table)
    for i, w in enumerate(weights):
        assert abs(slots[i] / 65537 - w / sum(weights)) < 0.02


def test_maglev_every_member_owns_a_slot_even_at_tiny_weight() -> None:
    table = Maglev([("big", 1_000_000), ("small", 1)], 101)
    assert set(table.table) == {0, 1}


def test_maglev_lookup_is_the_table_slot() -> None:
    table = Maglev(TEN, 65537)
    for key in KEYS[:1000]:
        assert table.lookup(key) == (table.table[Maglev.hash_key(key) % 65537],)
    assert Maglev.hash_key(b"abc") == int.from_bytes(
        hashlib.blake2b(b"abc", digest_size=8, person=b"gslb-maglev-key").digest(), "little"
    )


def test_maglev_count_walks_the_table() -> None:
    table = Maglev(TEN, 65537)
    for key in KEYS[:300]:
        slot = Maglev.hash_key(key) % 65537
        walk = [table.table[(slot + i) % 65537] for i in range(1000)]
        assert table.lookup(key, 4) == tuple(dict.fromkeys(walk))[:4]
    assert sorted(table.lookup(b"k", 11)) == list(range(10))


@pytest.mark.parametrize(
    ("size", "members", "message"),
    [(65536, 10, "not a prime"), (1, 1, "not a prime"), (7, 7, "not above"), (5, 7, "not above")],
)
def test_maglev_rejects_table_size(size: int, members: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Maglev([(f"m{i}", 1) for i in range(members)], size)


@pytest.mark.parametrize(
    "members",
    [[], [("a", 0)], [("a", -1)], [("a", 1), ("a", 2)]],
    ids=["empty", "zero-weight", "negative-weight", "duplicate"],
)
@pytest.mark.parametrize("cls", [Ketama, Maglev])
def test_rings_reject_bad_members(cls: type[Ketama] | type[Maglev], members: list[tuple[str, int]]) -> None:
    with pytest.raises(ValueError, match="member"):
        cls(members)


def test_is_prime() -> None:
    small = [n for n in range(200) if is_prime(n)]
    assert small == [n for n in range(2, 200) if all(n % d for d in range(2, n))]
    assert is_prime(65537)
    assert is_prime(10_000_019)
    assert not is_prime(65537 * 3)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    size=st.sampled_from([13, 101, 1009, 2003]),
)
def test_maglev_table_full_and_every_member_present(weights: list[int], size: int) -> None:
    if size <= len(weights):
        size = 101
    table = Maglev([(f"endpoint-{i}", w) for i, w in enumerate(weights)], size)
    assert len(table.table) == size
    assert set(table.table) == set(range(len(weights)))


# health awareness


# 7 owns the most keys in Ketama (10,965 of 100,000), 4 the fewest (8,655)
@pytest.mark.parametrize("removed", [0, 4, 7])
@pytest.mark.parametrize("algorithm", ["ketama", "maglev"])
def test_one_member_down_moves_only_its_keys(algorithm: str, removed: int) -> None:
    ring = ConsistentHash(TEN, algorithm)
    everyone = tuple(range(10))
    before = [ring.lookup(k, everyone)[0] for k in KEYS]
    eligible = tuple(i for i in everyone if i != removed)
    after = [ring.lookup(k, eligible)[0] for k in KEYS]
    moved = sum(a != b for a, b in zip(before, after, strict=True))
    assert 0 < moved <= (1 / 10 + 0.02) * len(KEYS)
    for owner, now in zip(before, after, strict=True):
        if owner != removed:
            assert now == owner
        else:
            assert now != removed


def test_ketama_down_member_ring_is_libketamas_ring_of_the_rest() -> None:
    """At equal weights, dropping a member's points is the ring libketama builds without it."""
    ring = ConsistentHash(TEN, "ketama")
    rebuilt = Ketama(TEN[:3] + TEN[4:])
    eligible = (0, 1, 2, 4, 5, 6, 7, 8, 9)
    for key in KEYS[:2000]:
        assert ring.lookup(key, eligible, 2) == tuple(eligible[i] for i in rebuilt.lookup(key, 2))


def test_maglev_fallback_is_the_table_of_the_eligible_members() -> None:
    ring = ConsistentHash(TEN, "maglev")
    eligible = (0, 1, 2, 4, 5, 6, 7, 8, 9)
    rest = Maglev([TEN[i] for i in eligible], fallback_size(len(eligible), MAGLEV_DEFAULT_SIZE))
    assert rest.size == 907  # the smallest prime above 100 x 9: built in a millisecond or so
    full = Maglev(TEN)
    for key in KEYS[:5000]:
        if full.lookup(key)[0] == 3:
            assert ring.lookup(key, eligible) == (eligible[rest.lookup(key)[0]],)


@pytest.mark.parametrize("algorithm", ["ketama", "maglev"])
def test_hashed_answers_carry_only_eligible_members(algorithm: str) -> None:
    ring = ConsistentHash(TEN, algorithm)
    eligible = (1, 4, 6)
    for key in KEYS[:2000]:
        three = ring.lookup(key, eligible, 3)
        assert sorted(three) == [1, 4, 6]
        assert ring.lookup(key, eligible, 2) == three[:2]
        assert ring.lookup(key, eligible, 1) == three[:1]
    assert ring.lookup(KEYS[0], ()) == ()
    assert ring.lookup(KEYS[0], (), 3) == ()


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(["ketama", "maglev"]),
    count=st.integers(2, 12),
    data=st.data(),
)
def test_eligible_owner_keeps_its_keys(algorithm: str, count: int, data: st.DataObject) -> None:
    # uneven weights: a Ketama ring rebuilt from the eligible members would move keys between
    # members that stay up (their shares of the smaller total change); restricting cannot
    weights = data.draw(st.lists(st.integers(1, 4), min_size=count, max_size=count))
    members = [(f"198.51.100.{i}", w) for i, w in enumerate(weights)]
    ring = ConsistentHash(members, algorithm, table_size=2003)
    eligible = tuple(sorted(data.draw(st.sets(st.integers(0, count - 1), min_size=1))))
    everyone = tuple(range(count))
    for key in KEYS[:300]:
        owner = ring.lookup(key, everyone)[0]
        now = ring.lookup(key, eligible)[0]
        assert now in eligible
        if owner in eligible:
            assert now == owner


def test_views_are_built_once_per_eligible_set() -> None:
    ring = ConsistentHash(TEN, "maglev", table_size=1009)
    first = ring.view([0, 1, 2])
    assert ring.view([2, 1, 0]) is first  # the same set, any order
    assert ring.lookup(KEYS[0], [1, 2, 0]) == first.lookup(KEYS[0])
    for down in range(2, 10):  # as many other sets as the cache keeps
        ring.view([i for i in range(10) if i != down])
    assert ring.view([0, 1, 2]) is not first  # evicted, least recently used first
    again = ring.view([0, 1, 2])
    assert ring.view([2, 0, 1]) is again
    same = (4, 5)
    assert ring.view(same) is ring.view(same) is ring.view([5, 4])
    with pytest.raises(ValueError, match="below 10"):
        ring.view((3, 10))


def test_consistent_hash_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown consistent hash algorithm"):
        ConsistentHash(TEN, "rendezvous")


def test_answers_do_not_depend_on_the_process() -> None:
    """Two servers (two processes, different hash seeds) give a client the same answer."""
    script = (
        "from gslb.policy.endpoints import ConsistentHash, client_key\n"
        "from ipaddress import IPv4Address\n"
        "members = [(f'192.0.2.{i}', 1 + i % 3) for i in range(1, 11)]\n"
        "keys = [client_key(IPv4Address(i << 8))[0] for i in range(2000)]\n"
        "for algorithm in ('ketama', 'maglev'):\n"
        "    ring = ConsistentHash(members, algorithm)\n"
        "    print(algorithm, [ring.lookup(k, (0, 1, 2, 4, 5, 6, 7, 8, 9), 2) for k in keys])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().count("[(") == 2


# weighted


@pytest.mark.parametrize(
    "weights",
    [[1, 1, 1, 1], [60, 15, 25], [1, 2, 3, 4, 10], [5, 0, 5], [0, 0, 3]],
    ids=["equal", "k8gb-example", "uneven", "standby-in-middle", "standby-first"],
)
def test_weighted_shares_within_two_points(weights: list[int]) -> None:
    choice = WeightedChoice(weights)
    rng = random.Random(20240)
    draws = Counter(choice.pick(rng) for _ in range(100_000))
    for i, w in enumerate(weights):
        assert abs(draws[i] / 100_000 - w / sum(weights)) < 0.02
    assert all(draws[i] == 0 for i, w in enumerate(weights) if w == 0)


def test_weighted_all_standby_is_uniform() -> None:
    choice = WeightedChoice([0, 0, 0, 0])
    rng = random.Random(5)
    draws = Counter(choice.pick(rng) for _ in range(100_000))
    assert all(abs(draws[i] / 100_000 - 0.25) < 0.02 for i in range(4))


class Fixed(random.Random):
    """A Random whose random() is one value: the edges of the draw."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("draw", "member"), [(0.0, 1), (0.74, 1), (0.75, 3), (1.0 - 2.0**-53, 3)], ids=["0", "below", "at", "max"]
)
def test_weighted_edge_draws_skip_standbys(draw: float, member: int) -> None:
    """A standby is never drawn, even at the edges (a bisect_left would return 0 for 0.0)."""
    assert WeightedChoice([0, 3, 0, 1, 0]).pick(Fixed(draw)) == member


@pytest.mark.parametrize("weights", [[], [1, -1]], ids=["empty", "negative"])
def test_weighted_rejects(weights: list[int]) -> None:
    with pytest.raises(ValueError, match="weight"):
        WeightedChoice(weights)


# p2c


def test_p2c_never_picks_the_costlier_of_two() -> None:
    rng = random.Random(11)
    assert {p2c([1.0, 2.0], rng) for _ in range(1000)} == {0}
    assert {p2c([2.0, 1.0], rng) for _ in range(1000)} == {1}
    costs = [5.0, 1.0, 4.0, 2.0, 3.0]  # all distinct: the costliest can never win a pair
    picks = Counter(p2c(costs, rng) for _ in range(100_000))
    assert picks[0] == 0
    # rank r (0 = cheapest) of n wins a pair with probability 2 (n - 1 - r) / (n (n - 1))
    for index, rank in [(1, 0), (3, 1), (4, 2), (2, 3)]:
        assert abs(picks[index] / 100_000 - 2 * (4 - rank) / 20) < 0.02


def test_p2c_ties_and_single_member() -> None:
    rng = random.Random(1)
    assert p2c([7.0], rng) == 0
    picks = Counter(p2c([1.0, 1.0, 1.0], rng) for _ in range(30_000))
    assert all(abs(picks[i] / 30_000 - 1 / 3) < 0.02 for i in range(3))  # the first drawn: uniform
    with pytest.raises(ValueError, match="no members"):
        p2c([], rng)


# least load


@pytest.mark.parametrize(
    ("loads", "order"),
    [
        ([0.5, 0.1, 0.9], (1, 0, 2)),
        ([0.5, None, 0.1, None], (2, 0, 1, 3)),
        ([0.3, 0.3, 0.1], (2, 0, 1)),
        ([None, 0.0], (1, 0)),
        ([None, None], None),
        ([], None),
    ],
    ids=["by-load", "unknown-last", "ties-by-index", "zero-is-a-figure", "no-figures", "empty"],
)
def test_least_load_order(loads: list[float | None], order: tuple[int, ...] | None) -> None:
    assert least_load_order(loads) == order
