#!/usr/bin/env python3
"""Micro-benchmark of the endpoint algorithms in gslb/policy/endpoints.py: cost per call and
build times, in-process, single thread.

Per call (ns, the best of --repeat runs of --calls calls each, loop overhead included, keys
cycling through 4,096 distinct client /24s so no answer is cached anywhere): client_key,
Ketama.lookup, Maglev.lookup, ConsistentHash lookups with every member up and with one down
(its keys take the fallback), WeightedChoice.pick, p2c, least_load_order.
Build times (ms, best of --repeat): Ketama and Maglev of --members members, a weighted Maglev,
and the view a ConsistentHash builds when one member goes down.

    .venv/bin/python bench/policy_bench.py
    .venv/bin/python bench/policy_bench.py --members 50 --table-size 65537 --repeat 7
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gslb.policy.endpoints import (  # noqa: E402
    ConsistentHash,
    Ketama,
    Maglev,
    WeightedChoice,
    client_key,
    fallback_size,
    least_load_order,
    p2c,
)

KEY_COUNT = 4096  # a power of two: the loops index keys with `& mask`


def per_call_ns(body: Callable[[int], object], calls: int, repeat: int) -> float:
    """Best over `repeat` runs of the mean time of `body(i)` for i in range(calls)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for i in range(calls):
            body(i)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def build_ms(build: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        build()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10, help="endpoints per ring/table (default 10)")
    parser.add_argument("--table-size", type=int, default=65537, help="Maglev M (default 65537)")
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timed run (default 200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs, the best is kept (default 5)")
    args = parser.parse_args()
    n, size, calls, repeat = args.members, args.table_size, args.calls, args.repeat

    members = [(f"192.0.2.{i + 1}", 1) for i in range(n)]
    rng = random.Random(1)
    v4 = [IPv4Address(rng.getrandbits(32)) for _ in range(KEY_COUNT)]
    v6 = [IPv6Address(rng.getrandbits(128)) for _ in range(KEY_COUNT)]
    keys = [client_key(a)[0] for a in v4]
    mask = KEY_COUNT - 1

    ketama = Ketama(members)
    maglev = Maglev(members, size)
    everyone = tuple(range(n))
    one_down = everyone[1:]
    hashed = {name: ConsistentHash(members, name, table_size=size) for name in ("ketama", "maglev")}
    for ring in hashed.values():
        ring.view(everyone)
        ring.view(one_down)  # built here, as the caller does when health changes
    maglev_ring, ketama_ring = hashed["maglev"], hashed["ketama"]
    weights = WeightedChoice([1 + i % 4 for i in range(n)])
    costs = [rng.uniform(1.0, 50.0) for _ in range(n)]
    loads: list[float | None] = [None if i % 3 == 0 else rng.random() for i in range(n)]
    draw = random.Random(2)

    calls_table: list[tuple[str, Callable[[int], object]]] = [
        ("client_key IPv4 /24", lambda i: client_key(v4[i & mask])),
        ("client_key IPv6 /56", lambda i: client_key(v6[i & mask])),
        ("Ketama.lookup", lambda i: ketama.lookup(keys[i & mask])),
        ("Ketama.lookup count=2", lambda i: ketama.lookup(keys[i & mask], 2)),
        ("Maglev.lookup", lambda i: maglev.lookup(keys[i & mask])),
        ("Maglev.lookup count=2", lambda i: maglev.lookup(keys[i & mask], 2)),
        ("ConsistentHash ketama, all up", lambda i: ketama_ring.lookup(keys[i & mask], everyone)),
        ("ConsistentHash ketama, one down", lambda i: ketama_ring.lookup(keys[i & mask], one_down)),
        ("ConsistentHash maglev, all up", lambda i: maglev_ring.lookup(keys[i & mask], everyone)),
        ("ConsistentHash maglev, one down", lambda i: maglev_ring.lookup(keys[i & mask], one_down)),
        (
            "ConsistentHash maglev, one down, count=2",
            lambda i: maglev_ring.lookup(keys[i & mask], one_down, 2),
        ),
        ("WeightedChoice.pick", lambda i: weights.pick(draw)),
        ("p2c", lambda i: p2c(costs, draw)),
        ("least_load_order", lambda i: least_load_order(loads)),
        ("(empty loop: the overhead in every row)", lambda i: None),
    ]
    print(
        f"{n} members, Maglev M = {size:,}, {calls:,} calls per run, best of {repeat},"
        f" Python {sys.version.split()[0]}\n"
    )
    print("| call | ns per call |\n|---|---|")
    for label, body in calls_table:
        print(f"| {label} | {per_call_ns(body, calls, repeat):,.0f} |", flush=True)

    weighted_members = [(name, 1 + i % 4) for i, (name, _) in enumerate(members)]
    builds: list[tuple[str, Callable[[], object]]] = [
        (f"Ketama, {n} members ({len(ketama.points):,} points)", lambda: Ketama(members)),
        (f"Maglev, {n} members, M = {size:,}", lambda: Maglev(members, size)),
        (f"Maglev, {n} members weighted 1-4, M = {size:,}", lambda: Maglev(weighted_members, size)),
        (
            "ConsistentHash maglev: the table, then the view with one member down",
            lambda: ConsistentHash(members, "maglev", table_size=size).view(one_down),
        ),
        (
            f"Maglev fallback of a view: {n - 1} members, M = {fallback_size(n - 1, size):,}",
            lambda: Maglev(members[: n - 1], fallback_size(n - 1, size)),
        ),
        (
            "ConsistentHash ketama: view with one member down",
            lambda: ConsistentHash(members, "ketama").view(one_down),
        ),
    ]
    print("\n| build | ms |\n|---|---|")
    for label, build in builds:
        print(f"| {label} | {build_ms(build, repeat):,.1f} |", flush=True)


if __name__ == "__main__":
    main()
