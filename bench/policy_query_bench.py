"""Per-query cost of each endpoint policy and datacenter strategy, through `Handler.handle`.

In process (no sockets): the example config with MaxMind's test City database and its
compiled steering map, four endpoints per datacenter, the service's strategy and `pick`
replaced per row. Three query streams per row, each timed after one warm-up pass:

- `hit`: 10,000 ECS /24s asked again (the reply cache; a varying reply is one pick more);
- `new /24`: 20,000 ECS /24s never asked before (the shape path; consistent hashing takes the
  full path, since its reply depends on the hashed network, not only on the map block);
- `no ECS`: 1,000 resolver addresses without ECS (the per-client cache after the first).

    .venv/bin/python bench/policy_query_bench.py [--repeat 3]

Prints microseconds per query (the best of `--repeat` runs).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gslb.config.loader import load
from gslb.config.model import Config, Endpoint, HashAlgorithm, Pick, PickPolicy, Strategy
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.responder import build_parts, maps_for_config
from gslb.zone.name import from_text
from tests.dnsfuzz import EXAMPLE_CONFIG, TEST_GEOIP

NAME = "www.gslb.example.com."
ROWS: dict[str, tuple[Strategy, Pick]] = {
    "nearest + all": (Strategy.NEAREST, Pick()),
    "nearest + round_robin": (Strategy.NEAREST, Pick(PickPolicy.ROUND_ROBIN)),
    "nearest + weighted": (Strategy.NEAREST, Pick(PickPolicy.WEIGHTED, max_records=1)),
    "nearest + ketama": (
        Strategy.NEAREST,
        Pick(PickPolicy.CONSISTENT_HASH, max_records=1, algorithm=HashAlgorithm.KETAMA),
    ),
    "nearest + maglev": (Strategy.NEAREST, Pick(PickPolicy.CONSISTENT_HASH, max_records=1)),
    "nearest + p2c_ewma": (Strategy.NEAREST, Pick(PickPolicy.P2C_EWMA, max_records=1)),
    "nearest + least_load": (Strategy.NEAREST, Pick(PickPolicy.LEAST_LOAD, max_records=1)),
    "failover + all": (Strategy.FAILOVER, Pick()),
    "weighted + all": (Strategy.WEIGHTED, Pick()),
}


def ecs_query(qid: int, address: bytes) -> bytes:
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1) + from_text(NAME) + struct.pack("!HH", 1, 1)
    ecs = struct.pack("!HBB", 1, 24, 0) + address
    options = struct.pack("!HH", 8, len(ecs)) + ecs
    return wire + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options


def plain_query(qid: int) -> bytes:
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1) + from_text(NAME) + struct.pack("!HH", 1, 1)
    return wire + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def configure(base: Config, strategy: Strategy, pick: Pick) -> Config:
    """Four IPv4 endpoints per datacenter (costs and loads made up below)."""
    service = next(iter(base.services.values()))
    endpoints: list[Endpoint] = []
    for n, dc in enumerate(service.datacenters()):
        for k in range(4):
            address = ip_address(f"10.{n}.0.{k + 1}")
            check = service.endpoints[0].check
            endpoints.append(Endpoint(f"www/{dc}/{address}", service.name, dc, address, check, weight=k + 1))
    weights = {dc: 10 * (i + 1) for i, dc in enumerate(service.datacenters())}
    service = replace(
        service,
        strategy=strategy,
        pick=pick,
        endpoints=tuple(endpoints),
        weights=weights if strategy is Strategy.WEIGHTED else {},
    )
    return replace(base, services={service.name: service})


def build(config: Config, maps_dir: Path) -> Handler:
    endpoints = next(iter(config.services.values())).endpoints
    view = HealthView(
        costs={e.id: 5.0 + i for i, e in enumerate(endpoints)},
        loads={e.id: float(len(endpoints) - i) for i, e in enumerate(endpoints)},
    )
    parts = build_parts(config, view)
    parts.orders.use_maps(maps_for_config(config, maps_dir))
    parts.handler.maps_ready()
    return parts.handler


def timed(run: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - began) / count)
    return best * 1e6


def measure(
    handler: Handler, hits: list[bytes], fresh: list[bytes], peers: list[str], repeat: int
) -> tuple[float, float, float]:
    """(hit, new /24, no ECS) microseconds per query; `fresh` is used up 10,000 per run."""
    plain = plain_query(1)
    for q in hits:
        handler.handle(q, "198.18.0.1")
    for p in peers:
        handler.handle(plain, p)
    unused = iter(fresh)

    def run_hits() -> int:
        for q in hits:
            handler.handle(q, "198.18.0.1")
        return len(hits)

    def run_fresh() -> int:
        count = 0
        for q in unused:
            handler.handle(q, "198.18.0.1")
            count += 1
            if count == 10_000:
                break
        return count

    def run_plain() -> int:
        for p in peers:
            handler.handle(plain, p)
        return len(peers)

    return timed(run_hits, repeat), timed(run_fresh, min(repeat, 3)), timed(run_plain, repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = load(EXAMPLE_CONFIG)
    base = replace(base, geoip=replace(base.geoip, database=TEST_GEOIP))
    rng = random.Random(7)
    subnets = [
        bytes((rng.choice((2, 81, 89, 175, 216)), rng.randrange(256), rng.randrange(256)))
        for _ in range(40_000)
    ]
    peers = [f"198.18.{i // 256}.{i % 256}" for i in range(1000)]
    print(f"{'policy':<24} {'hit':>8} {'new /24':>9} {'no ECS':>8}   (microseconds per query)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (strategy, pick) in ROWS.items():
            handler = build(configure(base, strategy, pick), Path(tmp))
            hits = [ecs_query(i & 0xFFFF, s) for i, s in enumerate(subnets[:10_000])]
            fresh = [ecs_query(i & 0xFFFF, s) for i, s in enumerate(subnets[10_000:])]
            hit, new, per_client = measure(handler, hits, fresh, peers, args.repeat)
            print(f"{label:<24} {hit:>8.2f} {new:>9.2f} {per_client:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
