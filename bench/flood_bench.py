#!/usr/bin/env python3
"""Measure `gslb serve` under a flood of steered queries, each from a distinct client subnet.

A cache-miss flood: dnsperf (pinned to CPU 0) sends `www.example.test A` at full load, every query
carrying an EDNS Client Subnet option for one of --subnets distinct random public IPv4 /24s
(dnsperf cannot vary ECS per line, so the queries are written as a `-B` binary file of wire
messages, the way ../shared/peers/tools/genqueries.py writes ecsrand.bin). The server is pinned to
CPU 1. This script (also on CPU 0) meanwhile sends 100 q/s of ordinary queries, the steered name
with one fixed ECS subnet and a static name alternately, open loop over UDP, and times each reply
(no reply within 1 s = lost), for a few seconds before the flood and then during it.

Reported: the flood's queries/s, the ordinary client's p50/p99/max latency and losses (before and
during the flood) and the server's RSS (/proc/PID/status) before and after the flood.

    .venv/bin/python bench/flood_bench.py                          # bench/peers.yaml, 20 s
    .venv/bin/python bench/flood_bench.py --config default         # the embedded default config
    .venv/bin/python bench/flood_bench.py --duration 10 --subnets 100000
    .venv/bin/python bench/flood_bench.py --measure-rss [--wait-log 'steering map']

`--measure-rss` only starts the server, waits until it answers (and, with --wait-log REGEX, until
its log has a matching line) and prints its RSS. `--gslb` is the command that runs gslb, e.g.
`--gslb "env PYTHONPATH=/tmp/gslb-head .venv/bin/python -m gslb"` to measure another checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gslb.dns.codec import is_public_value

ROOT = Path(__file__).resolve().parents[1]
PEERS_CONFIG = ROOT / "bench" / "peers.yaml"
DNSPERF_ARGS = ["-T", "4", "-c", "8", "-q", "200", "-t", "2"]  # as ../shared/peers and dnsperf_bench.py
PROBE_ECS = (8 << 16) | (8 << 8) | 8  # 8.8.8.0/24, the ordinary client's fixed subnet


def unique_subnets(count: int, seed: int) -> list[int]:
    """`count` distinct random public /24s, as 24-bit numbers."""
    rng = random.Random(seed)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < count:
        n24 = rng.randrange(1 << 24)
        if n24 not in seen and is_public_value(n24 << 8, v6=False):  # as gslb judges ECS
            seen.add(n24)
            out.append(n24)
    return out


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def query(name: str, qid: int = 0, qtype: int = 1, ecs24: int | None = None, edns: bool = False) -> bytes:
    """A DNS query message (RD clear); with `ecs24`, EDNS0 (1232) and an ECS option for that /24."""
    opt = b""
    if ecs24 is not None or edns:
        option = b""
        if ecs24 is not None:
            ecs = struct.pack("!HBB", 1, 24, 0) + (ecs24 << 8).to_bytes(4, "big")[:3]
            option = struct.pack("!HH", 8, len(ecs)) + ecs
        opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1 if opt else 0)
    return header + wire_name(name) + struct.pack("!HH", qtype, 1) + opt


def write_flood_file(path: Path, name: str, subnets: list[int]) -> None:
    """dnsperf -B format: a 2-byte length, then the message, per query."""
    with path.open("wb") as out:
        for n24 in subnets:
            message = query(name, ecs24=n24)
            out.write(struct.pack("!H", len(message)) + message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


def answered(port: int, message: bytes, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(message, ("127.0.0.1", port))
        try:
            reply = s.recv(4096)
        except OSError:
            return False
        return reply[:2] == message[:2] and reply[3] & 0x0F == 0 and reply[6:8] != b"\x00\x00"


@dataclass
class Server:
    """A `gslb serve` pinned to CPU 1, logging to `log`, state under a private XDG_STATE_HOME."""

    proc: subprocess.Popen[bytes]
    command: list[str]
    log: Path
    started: float

    @classmethod
    def start(cls, gslb: list[str], config: Path | None, port: int, folder: Path) -> Server:
        command = ["taskset", "-c", "1", *gslb, "serve"]
        if config is not None:
            command += ["-c", str(config)]
        command += ["--listen", f"127.0.0.1:{port}", "--api-listen", "127.0.0.1:0"]
        log = folder / "gslb.log"
        (folder / "state").mkdir(exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,  # not the checkout: `python -m gslb` would import gslb from the cwd first
                env={**os.environ, "XDG_STATE_HOME": str(folder / "state")},
            )
        return cls(proc, command, log, time.monotonic())

    @property
    def pid(self) -> int:
        return self.proc.pid  # taskset (and env) exec the server: same PID

    def wait_answer(self, port: int, name: str, timeout: float = 300) -> float:
        """Seconds from start until `name A` is answered."""
        message = query(name, qid=0x5151)
        while time.monotonic() - self.started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"gslb exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            if answered(port, message):
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise SystemExit(f"gslb did not answer within {timeout:.0f} s:\n{self.log.read_text()[-4000:]}")

    def wait_log(self, pattern: str, offset: int = 0, timeout: float = 300) -> float:
        """Monotonic time at which a log line after byte `offset` matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if any(regex.search(line) for line in text.splitlines()):
                return time.monotonic()
            if self.proc.poll() is not None:
                raise SystemExit(f"gslb exited ({self.proc.returncode}):\n{text[-4000:]}")
            time.sleep(0.01)
        raise SystemExit(f"no log line matching {pattern!r} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Sample:
    sent: float
    latency: float | None = None  # seconds; None: no reply (yet)
    rcode: int = -1


@dataclass
class Prober:
    """Open-loop UDP client: `rate` queries/s cycling over `messages`; every reply is timed."""

    port: int
    messages: list[bytes]
    rate: float
    timeout: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _pending: dict[int, Sample] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.sock.connect(("127.0.0.1", self.port))

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._receive), threading.Thread(target=self._send)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop sending, wait `timeout` for the last replies, stop receiving."""
        self._stop.set()
        self._threads[1].join()
        time.sleep(self.timeout + 0.2)
        self._done.set()
        self._threads[0].join()
        self.sock.close()

    def _send(self) -> None:
        start = time.perf_counter()
        n = 0
        while not self._stop.is_set():
            delay = start + n / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            qid = n & 0xFFFF
            message = struct.pack("!H", qid) + self.messages[n % len(self.messages)][2:]
            sample = Sample(time.perf_counter())
            self._pending[qid] = sample
            self.samples.append(sample)
            with contextlib.suppress(OSError):  # ECONNREFUSED from an earlier send: counted as lost
                self.sock.send(message)
            n += 1

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                reply = self.sock.recv(4096)
            except OSError:
                continue  # timeout (0.1 s): look at _done again
            now = time.perf_counter()
            sample = self._pending.pop(struct.unpack("!H", reply[:2])[0], None)
            if sample is not None:
                sample.latency = now - sample.sent
                sample.rcode = reply[3] & 0x0F

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, float]:
        """Counts and latencies (ms) of the queries sent in [since, until) (perf_counter times).

        p50 and p99 are over the replies within `timeout`; max is over every reply, late ones too.
        """
        window = [s for s in self.samples if since <= s.sent < until]
        ok = sorted(s.latency for s in window if s.latency is not None and s.latency <= self.timeout)
        late = sum(1 for s in window if s.latency is not None and s.latency > self.timeout)
        errors = sum(1 for s in window if s.latency is not None and s.rcode != 0)
        return {
            "sent": len(window),
            "answered": len(ok),
            "lost": len(window) - len(ok),
            "late": late,
            "errors": errors,
            "p50": percentile(ok, 50) * 1000,
            "p99": percentile(ok, 99) * 1000,
            "max": max((s.latency for s in window if s.latency is not None), default=float("nan")) * 1000,
        }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


def dnsperf(port: int, path: Path, duration: int) -> tuple[list[str], dict[str, float]]:
    command = ["taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", str(path)]
    command += ["-l", str(duration), *DNSPERF_ARGS]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    stats: dict[str, float] = {}
    for key, label in (("sent", "Queries sent"), ("lost", "Queries lost"), ("qps", "Queries per second")):
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        if match is None:
            raise SystemExit(f"unexpected dnsperf output:\n{out}")
        stats[key] = float(match.group(1))
    return command, stats


def names(args: argparse.Namespace) -> tuple[str, str]:
    """(steered name, static name) for the config."""
    zone = "gslb.example.com" if args.config == "default" else "example.test"
    return args.steered or f"www.{zone}", args.static or f"static.{zone}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=20, help="flood seconds (default 20)")
    parser.add_argument("--subnets", type=int, default=200_000, help="distinct client /24s (default 200,000)")
    parser.add_argument("--config", default=str(PEERS_CONFIG), help="gslb.yaml, or 'default' (embedded)")
    parser.add_argument("--gslb", default=str(ROOT / ".venv" / "bin" / "gslb"), help="command running gslb")
    parser.add_argument("--port", type=int, default=0, help="DNS port (default: a free one)")
    parser.add_argument(
        "--idle", type=float, default=3.0, help="seconds of ordinary queries before the flood"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="ordinary queries/s (default 100)")
    parser.add_argument("--steered", help="steered name (default www.example.test or www.gslb.example.com)")
    parser.add_argument("--static", help="static name (default static.example.test or static.gslb...)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--measure-rss", action="store_true", help="only start, wait until ready, print RSS")
    parser.add_argument("--wait-log", metavar="REGEX", help="also wait for a server log line matching REGEX")
    args = parser.parse_args()
    for tool in ("taskset", "dnsperf"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install dnsperf util-linux)")
    os.sched_setaffinity(0, {0})  # this client shares dnsperf's CPU; CPU 1 is the server's alone
    steered, static = names(args)
    config = None if args.config == "default" else Path(args.config).resolve()
    port = args.port or free_port()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="flood-bench-") as tmp:
        folder = Path(tmp)
        flood_file = folder / "flood.bin"
        if not args.measure_rss:
            write_flood_file(flood_file, steered, unique_subnets(args.subnets, args.seed))
        server = Server.start(shlex.split(args.gslb), config, port, folder)
        try:
            print(f"server: {shlex.join(server.command)}")
            ready = server.wait_answer(port, static)
            log_ready = server.wait_log(args.wait_log) - server.started if args.wait_log else None
            if args.measure_rss:
                report_rss(server, ready, log_ready, args.wait_log)
            else:
                flood(args, server, port, flood_file, (steered, static))
        finally:
            server.stop()


def report_rss(server: Server, ready: float, log_ready: float | None, pattern: str | None) -> None:
    memory = memory_kib(server.pid)
    print("\n| measure | value |\n|---|---|")
    print(f"| start → first answer | {ready:.2f} s |")
    if log_ready is not None:
        print(f"| start → log line matching `{pattern}` | {log_ready:.2f} s |")
    print(f"| server RSS (VmRSS) | {mib(memory['VmRSS'])} |")
    print(f"| server peak RSS (VmHWM) | {mib(memory['VmHWM'])} |")


def flood(
    args: argparse.Namespace, server: Server, port: int, flood_file: Path, names: tuple[str, str]
) -> None:
    steered, static = names
    before = memory_kib(server.pid)
    messages = [query(steered, ecs24=PROBE_ECS), query(static)]
    prober = Prober(port, messages, args.rate)
    prober.start()
    time.sleep(args.idle)
    flood_start = time.perf_counter()
    try:
        command, stats = dnsperf(port, flood_file, args.duration)
    finally:
        flood_end = time.perf_counter()
        after = memory_kib(server.pid)
        prober.stop()
    print(f"dnsperf: {shlex.join(command)}")
    idle = prober.summary(until=flood_start)
    during = prober.summary(flood_start, flood_end)
    repeats = stats["sent"] / args.subnets
    print("\n| measure | value |\n|---|---|")
    print(f"| flood: queries/s (dnsperf, {args.duration} s) | {stats['qps']:,.0f} |")
    print(f"| flood: queries sent / lost | {stats['sent']:,.0f} / {stats['lost']:,.0f} |")
    print(f"| flood: distinct ECS /24s in the file (each sent ≈{repeats:.2f}x) | {args.subnets:,} |")
    for label, s in (("before the flood", idle), ("during the flood", during)):
        print(
            f"| ordinary client {label}: sent / lost (late, errors) | "
            f"{s['sent']:,.0f} / {s['lost']:,.0f} ({s['late']:,.0f}, {s['errors']:,.0f}) |"
        )
        print(
            f"| ordinary client {label}: p50 / p99 / max latency | "
            f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms |"
        )
    print(f"| server RSS before → after the flood | {mib(before['VmRSS'])} → {mib(after['VmRSS'])} |")
    print(f"| server peak RSS (VmHWM) after the flood | {mib(after['VmHWM'])} |")


if __name__ == "__main__":
    main()
