#!/usr/bin/env python3
"""Measure `gslb serve` with dnsperf: static and steered answers, with and without EDNS/ECS.

The server is pinned to CPU 1 and dnsperf to CPU 0 (taskset), as in ../shared/peers, so the
numbers are per core. Each mix runs RUNS times for DURATION seconds; the median queries/s
and the latency dnsperf reports are printed as a Markdown table to paste into RESULTS.md.

    .venv/bin/python bench/dnsperf_bench.py                 # all mixes
    .venv/bin/python bench/dnsperf_bench.py static static-edns --duration 5 --runs 1
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gslb.dns.codec import is_public_value

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "gslb" / "data" / "gslb.yaml"


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def ecs_query(name: str, subnet24: int) -> bytes:
    header = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1)
    ecs = struct.pack("!HBB", 1, 24, 0) + (subnet24 << 8).to_bytes(4, "big")[:3]
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 4 + len(ecs)) + struct.pack("!HH", 8, len(ecs)) + ecs
    return header + wire_name(name) + struct.pack("!HH", 1, 1) + opt


def public_subnets(count: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    out: list[int] = []
    while len(out) < count:
        n24 = rng.randrange(1 << 24)
        if is_public_value(n24 << 8, v6=False):  # as gslb judges ECS
            out.append(n24)
    return out


def write_queries(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """Query file and extra dnsperf flags per mix."""
    static = folder / "static.txt"
    static.write_text("static.gslb.example.com A\n")
    steered = folder / "steered.txt"
    steered.write_text("www.gslb.example.com A\n")
    mixes: dict[str, tuple[Path, list[str]]] = {
        "static": (static, []),
        "static-edns": (static, ["-e"]),
        "steered-noecs": (steered, ["-e"]),
    }
    for label, count in (("ecs10k", 10_000), ("ecsrand", 1_000_000)):
        path = folder / f"{label}.bin"
        with path.open("wb") as out:
            for subnet in public_subnets(count):
                message = ecs_query("www.gslb.example.com", subnet)
                out.write(struct.pack("!H", len(message)) + message)
        mixes[label] = (path, ["-B"])
    return mixes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [
        "taskset",
        "-c",
        "1",
        str(ROOT / ".venv" / "bin" / "gslb"),
        "serve",
        "-c",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--api-listen",
        f"127.0.0.1:{free_port()}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "XDG_STATE_HOME": str(log.parent / "state")},
        )
    for _ in range(200):
        probe = subprocess.run(
            [
                "dig",
                "+short",
                "+tries=1",
                "+time=1",
                "-p",
                str(port),
                "@127.0.0.1",
                "static.gslb.example.com",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gslb did not start:\n{log.read_text()}")


def dnsperf(port: int, path: Path, flags: list[str], duration: int) -> tuple[float, float, float]:
    command = [
        "taskset",
        "-c",
        "0",
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(path),
        "-l",
        str(duration),
        "-T",
        "4",
        "-c",
        "8",
        "-q",
        "200",
        "-t",
        "2",
        *flags,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+).*?\(min ([\d.]+), max ([\d.]+)\)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    avg_ms = float(latency.group(1)) * 1000 if latency else float("nan")
    lost_n = float(lost.group(1)) if lost else 0.0
    return qps, avg_ms, lost_n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mixes", nargs="*", default=["static", "static-edns", "steered-noecs", "ecs10k", "ecsrand"]
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args()
    for tool in ("dnsperf", "dig", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install dnsperf bind9-dnsutils util-linux)")
    with tempfile.TemporaryDirectory() as tmp:
        mixes = write_queries(Path(tmp))
        print(f"machine: {os.cpu_count()} cores, {platform_cpu()}; python {sys.version.split()[0]}")
        print("| mix | queries/s (median) | avg latency ms | lost |")
        print("|---|---|---|---|")
        for mix in args.mixes:
            path, flags = mixes[mix]
            results = []
            for _ in range(args.runs):
                port = free_port()
                server = start_server(port, args.config, Path(tmp) / f"gslb-{mix}.log")  # cold caches
                try:
                    results.append(dnsperf(port, path, flags, args.duration))
                finally:
                    server.send_signal(signal.SIGTERM)
                    server.wait(10)
            qps = statistics.median(r[0] for r in results)
            latency = statistics.median(r[1] for r in results)
            lost = max(r[2] for r in results)
            print(f"| {mix} | {qps:,.0f} | {latency:.3f} | {lost:.0f} |", flush=True)


def platform_cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown cpu"


if __name__ == "__main__":
    main()
