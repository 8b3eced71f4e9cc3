"""Prober throughput: N local endpoints, one Prober over a MemoryStore, checks/s and CPU.

Starts a helper process that listens on N ports of 127.0.0.1 (plain TCP accept, or a minimal
keep-alive HTTP/1.1 responder), pinned to the last CPU, then runs `gslb.probe.Prober` pinned
to CPU 0 for `--duration` seconds and reports the checks it achieved against the N/interval
it was asked for, and the CPU time the prober process used.

    .venv/bin/python bench/probe_bench.py --kind tcp --endpoints 1000 --interval 1 --duration 20
    .venv/bin/python bench/probe_bench.py --kind http --endpoints 1000 --loop uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gslb.config.model import (
    Check,
    CheckKind,
    Config,
    Datacenter,
    Endpoint,
    ProberConfig,
    Service,
    Strategy,
    WhenAllDown,
)
from gslb.probe.prober import Prober
from gslb.state.store import MemoryStore

HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _HttpResponder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if self.transport is not None:
                self.transport.write(HTTP_REPLY)


async def serve(kind: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for _ in range(count):
        if kind == "http":
            server = await loop.create_server(_HttpResponder, "127.0.0.1", 0, backlog=128)
        else:
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, backlog=128)
        servers.append(server)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


def build_config(kind: str, ports: list[int], interval_s: float, concurrency: int) -> Config:
    check_kind = CheckKind.HTTP if kind == "http" else CheckKind.TCP
    endpoints = tuple(
        Endpoint(
            id=f"www/dc{i % 10}/127.0.0.1:{port}",
            service="www.bench.test.",
            datacenter=f"dc{i % 10}",
            address=ip_address("127.0.0.1"),
            check=Check(kind=check_kind, port=port, interval_s=interval_s, timeout_s=1.0, path="/health"),
        )
        for i, port in enumerate(ports)
    )
    service = Service(
        name="www.bench.test.",
        zone="bench.test.",
        ttl=30,
        strategy=Strategy.NEAREST,
        min_up=1,
        when_all_down=WhenAllDown.FAIL_OPEN,
        fallback=(),
        endpoints=endpoints,
    )
    return Config(
        source=Path("bench"),
        regions=("r",),
        datacenters={f"dc{i}": Datacenter(f"dc{i}", 0.0, 0.0, "r") for i in range(10)},
        services={service.name: service},
        prober=ProberConfig(max_concurrency=concurrency),
    )


async def bench(config: Config, duration_s: float, warmup_s: float) -> dict[str, float]:
    store = MemoryStore()
    async with Prober(config, store, "bench") as prober:
        await asyncio.sleep(warmup_s)  # the first round is spread over one interval
        start_stats = prober.stats
        start_wall = time.perf_counter()
        start_cpu = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(duration_s)
        end_cpu = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - start_wall
        stats = prober.stats
    checks = stats.checks - start_stats.checks
    cpu = (end_cpu.ru_utime - start_cpu.ru_utime) + (end_cpu.ru_stime - start_cpu.ru_stime)
    down = sum(1 for s in prober.states.values() if s.health.value != "up")
    return {
        "wall_s": wall,
        "checks": checks,
        "checks_per_s": checks / wall,
        "failures": stats.failures - start_stats.failures,
        "timeouts": stats.timeouts - start_stats.timeouts,
        "late": stats.late - start_stats.late,
        "mean_check_ms": 1000 * (stats.check_seconds - start_stats.check_seconds) / max(checks, 1),
        "max_check_ms": 1000 * stats.max_check_seconds,
        "writes": stats.writes - start_stats.writes,
        "cpu_s": cpu,
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "cpu_us_per_check": 1e6 * cpu / max(checks, 1),
        "endpoints_not_up": down,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["tcp", "http"], default="tcp")
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        asyncio.run(serve(args.kind, args.endpoints))
        return 0

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cpus = sorted(os.sched_getaffinity(0))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--kind", args.kind, "--endpoints", str(args.endpoints)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        if len(cpus) > 1:
            os.sched_setaffinity(server.pid, {cpus[-1]})
            os.sched_setaffinity(0, {cpus[0]})
        config = build_config(args.kind, ports, args.interval, args.concurrency)
        if args.loop == "uvloop":
            import uvloop  # noqa: PLC0415

            uvloop.install()
        result = asyncio.run(bench(config, args.duration, args.warmup))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    target = args.endpoints / args.interval
    print(
        f"probe_bench kind={args.kind} endpoints={args.endpoints} interval={args.interval:g}s "
        f"duration={args.duration:g}s loop={args.loop} python={sys.version.split()[0]} "
        f"cpus={len(cpus)} (prober on cpu {cpus[0]}, endpoints on cpu {cpus[-1]})"
    )
    print(f"  asked {target:.0f} checks/s, achieved {result['checks_per_s']:.0f} checks/s")
    for key, value in result.items():
        print(f"  {key:26} {value:.2f}" if isinstance(value, float) else f"  {key:26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
