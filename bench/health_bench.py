#!/usr/bin/env python3
"""Health numbers for bench/RESULTS.md: failover, recovery, propagation, Redis outage, flapping.

Real processes on loopback: redis-server, HTTP endpoints (lab/endpoint.py), `gslb probe`
and two `gslb serve` responders in distributed mode, checks every 1 s with fall 3, rise 2.

    .venv/bin/python bench/health_bench.py                # everything (~5 minutes)
    .venv/bin/python bench/health_bench.py failover --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gslb.health.view import Drain, DrainKind  # noqa: E402
from gslb.state.redis_store import RedisStore  # noqa: E402

ENDPOINTS = {"ams-1": "127.0.0.11", "ams-2": "127.0.0.12", "iad-1": "127.0.0.21", "sin-1": "127.0.0.31"}
CONFIG = """
server: {{listen: ["127.0.0.1:{dns_port}"]}}
zones: [{{origin: gslb.example.com, file: {root}/zones/gslb.example.com.zone}}]
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip: {{database: {root}/tests/data/geoip/GeoIP2-City-Test.mmdb, default_order: [iad, ams, sin]}}
services:
  www.gslb.example.com:
    ttl: 5
    check: {{type: http, port: {check_port}, path: /health, interval_s: 1, timeout_s: 0.5, rise: 2, fall: 3}}
    datacenters:
      ams: [127.0.0.11, 127.0.0.12]
      iad: [127.0.0.21]
      sin: [127.0.0.31]
state: {{redis_url: "redis://127.0.0.1:{redis_port}/0", poll_interval_s: 1.0, redis_timeout_s: 0.5,
        snapshot_path: {tmp}/{name}.snapshot.json}}
prober: {{id: bench}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.check_port = free_port()
        self.redis_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.dns_ports: list[int] = []

    def spawn(self, name: str, args: list[str]) -> None:
        with (self.tmp / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)

    def redis_up(self) -> None:
        self.spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
        )
        time.sleep(0.3)

    def endpoint_up(self, name: str) -> None:
        self.spawn(
            name,
            [
                sys.executable,
                str(ROOT / "lab" / "endpoint.py"),
                "--bind",
                ENDPOINTS[name],
                "--port",
                str(self.check_port),
                "--name",
                name,
            ],
        )

    def config(self, name: str, dns_port: int) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            CONFIG.format(
                dns_port=dns_port,
                root=ROOT,
                check_port=self.check_port,
                redis_port=self.redis_port,
                tmp=self.tmp,
                name=name,
            )
        )
        return path

    def start(self, responders: int = 1) -> None:
        self.redis_up()
        for name in ENDPOINTS:
            self.endpoint_up(name)
        for index in range(responders):
            port = free_port()
            self.dns_ports.append(port)
            self.spawn(
                f"responder{index}",
                [sys.executable, "-m", "gslb", "serve", "-c", str(self.config(f"r{index}", port))],
            )
        self.spawn("prober", [sys.executable, "-m", "gslb", "probe", "-c", str(self.config("prober", 0))])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(ask(p) == ("NOERROR", {"127.0.0.11", "127.0.0.12"}) for p in self.dns_ports):
                    return
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.1)
        raise SystemExit("lab did not come up; see logs in " + str(self.tmp))

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


def ask(port: int) -> tuple[str, set[str]]:
    query = dns.message.make_query(
        "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption("81.2.69.142", 32)]
    )
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    return dns.rcode.to_text(reply.rcode()), {i.address for r in reply.answer for i in r}


def until(predicate: object, timeout_s: float = 20.0, step_s: float = 0.002) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(step_s)
    return float("inf")


def failover(trials: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start()
            port = bench.dns_ports[0]
            out, back = [], []
            for _ in range(trials):
                bench.kill("ams-1")
                out.append(until(lambda: "127.0.0.11" not in ask(port)[1]))
                bench.endpoint_up("ams-1")
                back.append(until(lambda: "127.0.0.11" in ask(port)[1]))
                time.sleep(0.5)
            report("failover (endpoint killed -> out of answers), bound fall*interval+1 = 4 s", out)
            report("recovery (endpoint back -> in answers), bound rise*interval+1 = 3 s", back)
        finally:
            bench.close()


def propagation(trials: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start(responders=2)
            for publish in (True, False):
                delays: list[float] = []
                for _ in range(trials):
                    for add in (True, False):
                        t0 = time.monotonic()
                        asyncio.run(write_drain(bench.redis_port, add=add, publish=publish))
                        want = {"127.0.0.21"} if add else {"127.0.0.11", "127.0.0.12"}
                        for port in bench.dns_ports:
                            until(lambda p=port, w=want: ask(p)[1] == w, timeout_s=5, step_s=0.001)
                            delays.append(time.monotonic() - t0)
                path = "pub/sub hint" if publish else "poll only (no PUBLISH)"
                report(f"propagation to 2 responders, {path}", delays)
        finally:
            bench.close()


async def write_drain(port: int, *, add: bool, publish: bool) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    try:
        if add:
            await store.add_drain(
                Drain(DrainKind.DATACENTER, "ams", "bench", "bench", time.time()), publish=publish
            )
        else:
            await store.remove_drain(
                DrainKind.DATACENTER, "ams", who="bench", now=time.time(), publish=publish
            )
    finally:
        await store.aclose()


def redis_outage(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start()
            port = bench.dns_ports[0]
            counts = {"queries": 0, "servfail": 0, "wrong": 0, "timeouts": 0}
            expected = {"127.0.0.11", "127.0.0.12"}

            def load(duration: float) -> None:
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    counts["queries"] += 1
                    try:
                        rcode, answers = ask(port)
                    except dns.exception.Timeout:
                        counts["timeouts"] += 1
                        continue
                    counts["servfail"] += rcode == "SERVFAIL"
                    counts["wrong"] += answers != expected

            load(2)
            bench.kill("redis")
            load(seconds / 2)
            bench.kill("ams-1")  # changes while Redis is away
            bench.kill("ams-2")
            load(seconds / 2)
            bench.redis_up()
            converged = until(lambda: ask(port)[1] == {"127.0.0.21"}, timeout_s=20)
            print(
                f"- Redis down {seconds:.0f} s under a query loop: {counts['queries']} queries, "
                f"{counts['servfail']} SERVFAIL, {counts['wrong']} answers not matching the last known "
                f"state, {counts['timeouts']} timeouts; change made meanwhile served {converged:.2f} s "
                "after Redis returned"
            )
        finally:
            bench.close()


def flapping(seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start()
            port = bench.dns_ports[0]
            changes, last = 0, "127.0.0.11" in ask(port)[1]
            end = time.monotonic() + seconds
            next_flip, up = time.monotonic() + 1, True
            while time.monotonic() < end:
                if time.monotonic() >= next_flip:
                    if up:
                        bench.kill("ams-1")
                    else:
                        bench.endpoint_up("ams-1")
                    up, next_flip = not up, next_flip + 1
                now = "127.0.0.11" in ask(port)[1]
                changes += now != last
                last = now
                time.sleep(0.01)
            log = (Path(tmp) / "prober.log").read_text()
            transitions = sum("127.0.0.11 is " in line for line in log.splitlines())
            print(
                f"- flapping endpoint (down/up every 1 s for {seconds} s, rise 2 fall 3): {changes} answer "
                f"changes, {transitions} state changes logged by the prober"
            )
        finally:
            bench.close()


def report(label: str, values: list[float]) -> None:
    finite = [v for v in values if v != float("inf")]
    missing = len(values) - len(finite)
    print(
        f"- {label}: n={len(values)} median {statistics.median(finite):.3f} s, "
        f"max {max(finite):.3f} s{f', {missing} never' if missing else ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="*", default=["failover", "propagation", "outage", "flapping"])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for part in args.parts:
        {
            "failover": lambda: failover(args.trials),
            "propagation": lambda: propagation(args.trials),
            "outage": lambda: redis_outage(20),
            "flapping": lambda: flapping(20),
        }[part]()


if __name__ == "__main__":
    main()
