#!/usr/bin/env python3
"""A soak: `gslb serve` in distributed mode at half its measured throughput for 10 minutes,
5 % of the traffic malformed, with one Redis restart and one prober restart on the way.

Real processes on loopback: redis-server (tests/redis_fixture.py), four HTTP endpoints
(lab/endpoint.py) checked every second by `gslb probe`, and one `gslb serve` responder reading
the state from Redis, with RRL in log-only mode (all traffic comes from 127.0.0.1, far over
the per-network limits; log-only still runs every reply through the limiter's accounts).

Load: dnsperf with a binary file of 200,000 queries (the steered name with a random public
ECS /24, A and AAAA; a static name; a CNAME to the steered name without ECS; NXDOMAIN; apex
types; wildcard names), at `-Q` = 95 % of the target rate; a Python sender adds the other 5 %:
mutated queries from tests/dnsfuzz.py over UDP (every reply judged: parses, ID, QR=1, RA=0,
not SERVFAIL) and a short pipelined TCP session of them every second. The target rate is half
of what a 10 s dnsperf run without -Q measures first, or --rate.

Events: Redis is stopped at 1/3 of the run and started again (empty) 5 s later; the prober is
stopped (SIGTERM) at 2/3 and started again 3 s later.

Reported: RSS of the responder before the load (after the measuring run, if any), after the
warm-up (10 % of the run, at least 30 s: the reply cache fills) and at the end, with the growth
from warm-up to end (must be < 10 %);
SERVFAIL from dnsperf, the malformed sender and the responder's own /metrics (must be 0);
tracebacks and ERROR lines in the gslb logs (must be 0); dnsperf's completed/lost queries.

    .venv/bin/python bench/soak_bench.py                          # 10 minutes
    .venv/bin/python bench/soak_bench.py --duration 180 --rate 4000
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import dns.exception
import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gslb.dns.codec import is_public
from tests.dnsfuzz import (
    Mutator,
    Tally,
    answers_valid_query,
    corpus,
    ecs_option,
    judge_wire,
    log_problems,
    make_query,
    tcp_session,
)
from tests.redis_fixture import RedisServer
from tests.server_fixture import free_ports

ROOT = Path(__file__).resolve().parents[1]

ENDPOINTS = {"ams-1": "127.0.0.11", "ams-2": "127.0.0.12", "iad-1": "127.0.0.21", "sin-1": "127.0.0.31"}
AMS = {"127.0.0.11", "127.0.0.12"}
CONFIG = """
server:
  listen: ["127.0.0.1:{dns_port}"]
  metrics_listen: "127.0.0.1:{metrics_port}"
  rrl: {{log_only: true}}
zones: [{{origin: gslb.example.com, file: {root}/zones/gslb.example.com.zone}}]
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip: {{database: {root}/tests/data/geoip/GeoIP2-City-Test.mmdb, default_order: [iad, ams, sin]}}
services:
  www.gslb.example.com:
    ttl: 30
    check: {{type: http, port: {check_port}, path: /health, interval_s: 1, timeout_s: 0.5, rise: 2, fall: 3}}
    datacenters:
      ams: [127.0.0.11, 127.0.0.12]
      iad: [127.0.0.21]
      sin: [127.0.0.31]
state: {{redis_url: "redis://127.0.0.1:{redis_port}/0", poll_interval_s: 1.0, redis_timeout_s: 0.5,
        snapshot_path: {tmp}/{name}.snapshot.json}}
prober: {{id: soak}}
"""


class Lab:
    """The processes of the soak; every one started here is stopped by `close`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dns_port, self.metrics_port, self.check_port = free_ports(3)
        redis_dir = tmp / "redis"
        redis_dir.mkdir()
        self.redis = RedisServer(redis_dir)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.dns_port)

    def spawn(self, name: str, log_name: str, args: list[str]) -> None:
        log = self.tmp / f"{log_name}.log"
        self.logs.append(log)
        with log.open("ab") as out:
            self.procs[name] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def config(self, name: str) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            CONFIG.format(
                dns_port=self.dns_port,
                metrics_port=self.metrics_port,
                check_port=self.check_port,
                redis_port=self.redis.port,
                root=ROOT,
                tmp=self.tmp,
                name=name,
            )
        )
        return path

    def prober(self, log_name: str) -> None:
        self.spawn(
            "prober", log_name, [sys.executable, "-m", "gslb", "probe", "-c", str(self.config("prober"))]
        )

    def start(self) -> None:
        self.redis.start()
        for name, address in ENDPOINTS.items():
            self.spawn(
                name,
                name,
                [
                    sys.executable,
                    str(ROOT / "lab" / "endpoint.py"),
                    "--bind",
                    address,
                    "--port",
                    str(self.check_port),
                    "--name",
                    name,
                ],
            )
        self.spawn(
            "responder", "responder", [sys.executable, "-m", "gslb", "serve", "-c", str(self.config("r"))]
        )
        self.prober("prober-1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.procs["responder"].poll() is not None:
                break
            if steered_answer(self.dns_port) == AMS:
                return
            time.sleep(0.1)
        self.close()
        raise SystemExit(f"the lab did not come up; see the logs in {self.tmp}")

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.redis.stop()


def steered_answer(port: int) -> set[str]:
    """The addresses of www for 81.2.69.142 (London in the test database: ams when up)."""
    query = make_query(
        0x4242, "www.gslb.example.com", 1, edns=True, options=(ecs_option(1, 32, bytes([81, 2, 69, 142])),)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(query.wire, ("127.0.0.1", port))
            reply = dns.message.from_wire(sock.recv(4096))
        except (OSError, dns.exception.DNSException):
            return set()
    return {item.to_text() for rrset in reply.answer for item in rrset}


def write_load(path: Path, count: int, seed: int) -> None:
    """dnsperf -B input: a 2-byte length, then the message, per query."""
    rng = random.Random(seed)

    def public24() -> bytes:
        while True:
            n24 = rng.randrange(1 << 24)
            if is_public(ip_address(n24 << 8)):
                return (n24 << 8).to_bytes(4, "big")[:3]

    with path.open("wb") as out:
        for index in range(count):
            roll = index % 20
            if roll < 9:
                wire = make_query(
                    0, "www.gslb.example.com", 1, edns=True, options=(ecs_option(1, 24, public24()),)
                )
            elif roll < 11:
                wire = make_query(
                    0, "www.gslb.example.com", 28, edns=True, options=(ecs_option(1, 24, public24()),)
                )
            elif roll < 14:
                wire = make_query(0, "static.gslb.example.com", 1, edns=True)
            elif roll < 16:
                wire = make_query(0, "api.gslb.example.com", 1)
            elif roll < 18:
                wire = make_query(0, f"n{rng.randrange(10**6)}.gslb.example.com", 1, edns=True)
            elif roll < 19:
                wire = make_query(0, "gslb.example.com", rng.choice((2, 6, 15, 16, 257)), edns=True)
            else:
                wire = make_query(0, f"x{rng.randrange(1000)}.apps.gslb.example.com", 16)
            out.write(len(wire.wire).to_bytes(2, "big") + wire.wire)


@dataclass
class Perf:
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    rcodes: dict[str, int] = field(default_factory=dict)
    output: str = ""


def dnsperf(port: int, data: Path, seconds: float, rate: float | None, log: Path) -> subprocess.Popen[bytes]:
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", str(data), "-l", f"{seconds:.0f}"]
    command += ["-c", "4", "-T", "1", "-q", "200", "-t", "2"]
    if rate is not None:
        command += ["-Q", f"{rate:.0f}", "-S", "60"]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def parse_dnsperf(text: str) -> Perf:
    def number(pattern: str) -> float:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    rcodes: dict[str, int] = {}
    found = re.search(r"Response codes:\s+(.*)", text)
    if found:
        for name, count in re.findall(r"([A-Z]+) (\d+) \(", found.group(1)):
            rcodes[name] = int(count)
    return Perf(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        sent=int(number(r"Queries sent:\s+(\d+)")),
        completed=int(number(r"Queries completed:\s+(\d+)")),
        lost=int(number(r"Queries lost:\s+(\d+)")),
        rcodes=rcodes,
        output=text,
    )


def malformed_sender(address: tuple[str, int], rate: float, seconds: float, seed: int, tally: Tally) -> None:
    """`rate` mutated queries per second over UDP for `seconds`, each reply judged; one TCP
    session of ten of them (pipelined, in random chunks) every second."""
    rng = random.Random(seed)
    seeds = corpus()
    mutator = Mutator(rng, seeds)
    sent: dict[bytes, bytes] = {}
    started = time.monotonic()
    next_tcp = started + 1.0
    count = 0
    sessions = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.setblocking(False)
        while (now := time.monotonic()) < started + seconds:
            due = int(rate * (now - started)) - count
            for _ in range(max(due, 0)):
                wire = mutator.input()
                if len(wire) >= 2:
                    sent[wire[:2]] = wire
                try:
                    sock.send(wire)
                except OSError:
                    tally.notes["UDP send failed"] += 1
                count += 1
                tally.inputs += 1
            while True:
                try:
                    reply = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                tally.notes["UDP replies"] += 1
                judge_wire(reply, sent, tally, tcp=False, where="UDP")
            if now >= next_tcp:
                next_tcp += 1.0
                sessions += 1
                wires = [mutator.input() for _ in range(10)]
                tcp_session(address, wires, sessions, rng, tally)
            time.sleep(0.005)
    tally.seconds = time.monotonic() - started


def rss_kib(pid: int) -> int:
    """VmRSS of the process and its direct children, in KiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def servfail_from_metrics(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("gslb_dns_responses_total{") and 'rcode="SERVFAIL"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, help="total queries/s (default: half of a measured run)")
    parser.add_argument("--measure-seconds", type=float, default=10.0)
    parser.add_argument("--malformed-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf is not installed (apt-get install dnsperf)")

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    data = tmp / "load.bin"
    write_load(data, 200_000, args.seed)
    lab = Lab(tmp)
    lab.start()
    failures = 0
    try:
        responder = lab.procs["responder"].pid
        rate = args.rate
        if rate is None:
            measure = dnsperf(lab.dns_port, data, args.measure_seconds, None, tmp / "dnsperf-measure.log")
            measure.wait()
            measured = parse_dnsperf((tmp / "dnsperf-measure.log").read_text(errors="replace"))
            rate = measured.qps / 2
            print(
                f"measured {measured.qps:,.0f} q/s in {args.measure_seconds:.0f} s; soak at {rate:,.0f} q/s"
            )
        idle_rss = rss_kib(responder)
        perf_rate = rate * (1 - args.malformed_share)
        bad_rate = rate * args.malformed_share
        print(
            f"soak: {args.duration:.0f} s at {rate:,.0f} q/s: dnsperf {perf_rate:,.0f} q/s, "
            f"malformed {bad_rate:,.0f} q/s; responder pid {responder}, RSS {idle_rss / 1024:.1f} MiB",
            flush=True,
        )
        malformed = Tally()
        load = dnsperf(lab.dns_port, data, args.duration, perf_rate, tmp / "dnsperf-soak.log")
        sender = threading.Thread(
            target=malformed_sender, args=(lab.address, bad_rate, args.duration, args.seed, malformed)
        )
        started = time.monotonic()
        sender.start()
        warmup_at = max(30.0, args.duration * 0.1)
        events = [
            (args.duration / 3, "stop redis"),
            (args.duration / 3 + 5, "start redis"),
            (2 * args.duration / 3, "stop prober"),
            (2 * args.duration / 3 + 3, "start prober"),
        ]
        samples: list[tuple[float, int]] = []
        warm_rss = 0
        next_sample = 0.0
        while load.poll() is None:
            elapsed = time.monotonic() - started
            while events and elapsed >= events[0][0]:
                _, event = events.pop(0)
                print(f"  {elapsed:6.1f} s: {event}", flush=True)
                if event == "stop redis":
                    lab.redis.stop()
                elif event == "start redis":
                    lab.redis.start()
                elif event == "stop prober":
                    lab.stop("prober")
                else:
                    lab.prober("prober-2")
            if not warm_rss and elapsed >= warmup_at:
                warm_rss = rss_kib(responder)
                print(f"  {elapsed:6.1f} s: RSS after warm-up {warm_rss / 1024:.1f} MiB", flush=True)
            if elapsed >= next_sample:
                samples.append((elapsed, rss_kib(responder)))
                print(
                    f"  {elapsed:6.1f} s: RSS {samples[-1][1] / 1024:.1f} MiB, malformed sent "
                    f"{malformed.inputs:,}, failures {malformed.failures}",
                    flush=True,
                )
                next_sample += 30.0
            time.sleep(0.2)
        sender.join()
        end_rss = rss_kib(responder)
        perf = parse_dnsperf((tmp / "dnsperf-soak.log").read_text(errors="replace"))
        running = lab.procs["responder"].poll() is None
        udp_ok = running and answers_valid_query(lab.address, tcp=False)
        tcp_ok = running and answers_valid_query(lab.address, tcp=True)
        metrics_servfail = servfail_from_metrics(lab.metrics_port) if running else -1
        steered = steered_answer(lab.dns_port)
    finally:
        lab.close()

    growth = (end_rss - warm_rss) / warm_rss * 100 if warm_rss else float("nan")
    tracebacks = sum(log.read_text(errors="replace").count("Traceback") for log in lab.logs)
    bad_lines = [line for log in lab.logs for line in log_problems(log.read_text(errors="replace"))]
    servfail = perf.rcodes.get("SERVFAIL", 0)
    malformed_servfail = sum(n for what, n in malformed.problems.items() if "SERVFAIL" in what)
    print(
        f"\ndnsperf: sent {perf.sent:,}, completed {perf.completed:,}, lost {perf.lost:,}, "
        f"{perf.qps:,.0f} q/s"
    )
    print(f"dnsperf rcodes: {perf.rcodes}")
    print("malformed sender:\n" + malformed.report())
    print(
        f"RSS: before the load {idle_rss / 1024:.1f} MiB, after warm-up {warm_rss / 1024:.1f} MiB, "
        f"end {end_rss / 1024:.1f} MiB"
    )
    print(f"RSS growth from warm-up to end: {growth:+.1f} % (must be < 10 %)")
    print("RSS every 30 s (MiB): " + ", ".join(f"{rss / 1024:.0f}" for _, rss in samples))
    print(
        f"SERVFAIL: dnsperf {servfail}, malformed sender {malformed_servfail}, "
        f"responder /metrics {metrics_servfail} (must be 0)"
    )
    print(f"tracebacks in the gslb logs: {tracebacks}; ERROR lines: {len(bad_lines)}")
    for line in bad_lines[:10]:
        print("  " + line)
    print(
        f"after the soak: running {running}, answers UDP {udp_ok}, TCP {tcp_ok}, "
        f"steered to ams {steered == AMS}"
    )
    failures += (growth >= 10) + bool(servfail) + bool(metrics_servfail) + malformed.failures
    failures += tracebacks + len(bad_lines) + (not running) + (not udp_ok) + (not tcp_ok)
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
