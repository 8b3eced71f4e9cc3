#!/usr/bin/env python3
"""Fair TCP under issue 9's attack: held idle connections and slow senders against a fresh client.

The server (`gslb serve`, the embedded default config unless --config, default TCP limits: 1,024
connections in total, 64 per address, 128 per /24; response rate limiting off unless --keep-rrl,
as dnsperf asks one name from one address) is pinned to CPU 1; this script and dnsperf share
CPU 0. In order:

1. UDP baseline: `dnsperf -s 127.0.0.1 -p PORT -d FILE -l 5` (one static name), then a fresh
   client's 100 TCP queries with nobody else connected.
2. The attack: --idle (2,000) connections from --addresses (40) source addresses, opened and then
   left silent, and --slow (20) slowloris connections that send half a query and stop. Every
   connection the server closes is opened again, at most --reconnect-rate per second, so the
   attacker keeps up the pressure (slow senders are cut by the read timeout and come back).
   The addresses are 127.1.N.1 (one /24 each, so the per-network cap does not bind and only
   closing idle connections can make room) or, with --same-network, 127.1.0.N (one /24).
3. Under the attack: the fresh client (127.0.200.1, another /24) sends 100 TCP queries, each on
   a new connection (a resolver falling back to TCP after TC=1), 2 s timeout each; then
   dnsperf again for the UDP throughput during the attack, and the fresh client once more.
4. The attacker closes everything; dnsperf a third time. The throughput under attack is
   compared with the mean of before and after (the machine's other load drifts).

Reported: answered/100 and latencies of the fresh client, UDP queries/s before and during the
attack (issue 9 asks for >= 99 % and within 20 %), the attacker's connections and the server's
`gslb_tcp_*` counters from /metrics.

    .venv/bin/python bench/tcp_fairness_bench.py
    .venv/bin/python bench/tcp_fairness_bench.py --same-network
    .venv/bin/python bench/tcp_fairness_bench.py --gslb "env PYTHONPATH=/tmp/h $PWD/.venv/bin/python -m gslb"

`--gslb` is the command that runs gslb, e.g. another checkout exported to /tmp/h (`git archive
HEAD | tar -x -C /tmp/h`), to measure before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "gslb" / "data" / "gslb.yaml"
NAME = "static.gslb.example.com"
FRESH_SOURCE = "127.0.200.1"


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def query(name: str, qid: int) -> bytes:
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + wire_name(name) + struct.pack("!HH", 1, 1)


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))  # free for UDP too (else: the caller's start fails loudly)
    return port


def default_config(folder: Path, *, keep_rrl: bool) -> Path:
    """The embedded default config (default TCP limits), with RRL off unless `keep_rrl`."""
    shutil.copy(DEFAULT_CONFIG.parent / "gslb.example.com.zone", folder)
    text = DEFAULT_CONFIG.read_text()
    if not keep_rrl:
        text = text.replace("server:\n", "server:\n  rrl: {enabled: false}\n", 1)
    path = folder / "gslb.yaml"
    path.write_text(text)
    return path


def listen_overflows() -> int:
    """The kernel's count of listen-queue overflows (system-wide: TcpExt ListenOverflows)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names[0] == "TcpExt:":
            return int(values[names.index("ListenOverflows")])
    return 0


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    command: list[str]
    log: Path
    port: int
    api_port: int

    @classmethod
    def start(cls, gslb: list[str], config: Path, folder: Path) -> Server:
        port, api_port = free_port(), free_port()
        command = ["taskset", "-c", "1", *gslb, "serve", "-c", str(config)]
        command += ["--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{api_port}"]
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
        server = cls(proc, command, log, port, api_port)
        server.wait_ready()
        server.wait_log("steering map")  # compiled (or loaded) in a child on the server's CPU
        return server

    def wait_log(self, text: str, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"no log line with {text!r}:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        message = query(NAME, 0x5151)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gslb exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.settimeout(0.2)
                udp.sendto(message, ("127.0.0.1", self.port))
                try:
                    if udp.recv(4096)[:2] == message[:2]:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise SystemExit(f"gslb did not answer within {timeout_s:.0f} s:\n{self.log.read_text()[-4000:]}")

    def tcp_metrics(self) -> dict[str, float]:
        """The `gslb_tcp_*` samples of /metrics (empty for a gslb without them)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("gslb_tcp_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def dnsperf(port: int, path: Path, duration: int) -> tuple[list[str], float, float]:
    """(command, queries/s, queries lost)."""
    command = ["taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(path)]
    command += ["-l", str(duration)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if qps is None or lost is None:
        raise SystemExit(f"unexpected dnsperf output:\n{out}")
    return command, float(qps.group(1)), float(lost.group(1))


@dataclass
class Slot:
    source: str
    slow: bool
    sock: socket.socket | None = None


@dataclass
class Attacker:
    """Holds idle and slow connections; opens again (rate-limited) what the server closes."""

    port: int
    slots: list[Slot]
    reconnect_rate: float
    closed_by_server: int = 0
    reopened: int = 0
    connect_failures: int = 0
    _selector: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    _pending: deque[Slot] = field(default_factory=deque)  # closed, to be opened again
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    HALF_QUERY = framed(query(NAME, 0x0BAD))[:9]

    def open_all(self) -> None:
        for slot in self.slots:
            self._open(slot)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for slot in self.slots:
            if slot.sock is not None:
                self._selector.unregister(slot.sock)
                slot.sock.close()
        self._selector.close()

    def held(self) -> int:
        return sum(1 for slot in self.slots if slot.sock is not None)

    def _open(self, slot: Slot) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.bind((slot.source, 0))
            sock.connect(("127.0.0.1", self.port))
            if slot.slow:
                sock.sendall(self.HALF_QUERY)
        except OSError:
            sock.close()
            self.connect_failures += 1
            self._pending.append(slot)
            return
        sock.setblocking(False)
        slot.sock = sock
        self._selector.register(sock, selectors.EVENT_READ, slot)

    def _run(self) -> None:
        budget, last = 0.0, time.monotonic()
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                slot: Slot = key.data
                assert slot.sock is not None
                try:
                    data = slot.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # a reply the attacker ignores
                self._selector.unregister(slot.sock)
                slot.sock.close()
                slot.sock = None
                self.closed_by_server += 1
                if slot.slow:
                    self._pending.appendleft(slot)  # slow senders come back first
                else:
                    self._pending.append(slot)
            now = time.monotonic()
            budget = min(self.reconnect_rate, budget + (now - last) * self.reconnect_rate)
            last = now
            while self._pending and budget >= 1.0 and not self._stop.is_set():
                budget -= 1.0
                self.reopened += 1
                self._open(self._pending.popleft())


def attack_slots(args: argparse.Namespace) -> list[Slot]:
    if args.same_network:
        sources = [f"127.1.0.{n + 1}" for n in range(args.addresses)]
    else:
        sources = [f"127.1.{n + 1}.1" for n in range(args.addresses)]
    slots = [Slot(sources[n % len(sources)], slow=False) for n in range(args.idle)]
    slots += [Slot(f"127.2.0.{n % 250 + 1}", slow=True) for n in range(args.slow)]
    return slots


@dataclass
class FreshResult:
    answered: int
    asked: int
    latencies_ms: list[float]


def fresh_client(port: int, count: int, timeout_s: float = 2.0, gap_s: float = 0.02) -> FreshResult:
    """`count` TCP queries from FRESH_SOURCE, each on a new connection."""
    answered = 0
    latencies: list[float] = []
    for qid in range(count):
        message = framed(query(NAME, qid))
        started = time.perf_counter()
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=timeout_s, source_address=(FRESH_SOURCE, 0)
            ) as sock:
                sock.sendall(message)
                reply = b""
                while len(reply) < 2 or len(reply) < 2 + int.from_bytes(reply[:2], "big"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            if len(reply) > 6 and reply[2:4] == qid.to_bytes(2, "big") and reply[5] & 0x0F == 0:
                answered += 1
                latencies.append((time.perf_counter() - started) * 1000)
        except OSError:
            pass
        time.sleep(gap_s)
    return FreshResult(answered, count, latencies)


def describe(result: FreshResult) -> str:
    if not result.latencies_ms:
        return f"{result.answered}/{result.asked}"
    ordered = sorted(result.latencies_ms)
    return (
        f"{result.answered}/{result.asked} (p50 {statistics.median(ordered):.1f} ms, "
        f"max {ordered[-1]:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=2000, help="idle connections (default 2,000)")
    parser.add_argument("--addresses", type=int, default=40, help="their source addresses (default 40)")
    parser.add_argument("--slow", type=int, default=20, help="slowloris connections (default 20)")
    parser.add_argument("--same-network", action="store_true", help="all attacker addresses in one /24")
    parser.add_argument(
        "--reconnect-rate", type=float, default=100.0, help="connections re-opened per second (100)"
    )
    parser.add_argument("--queries", type=int, default=100, help="the fresh client's TCP queries (100)")
    parser.add_argument("--duration", type=int, default=5, help="dnsperf seconds (default 5)")
    parser.add_argument("--config", type=Path, help="gslb.yaml (default: the embedded default config)")
    parser.add_argument(
        "--keep-rrl",
        action="store_true",
        help="leave response rate limiting on in the default config (dnsperf repeats one name from "
        "one address: RRL would measure itself; and for a gslb without RRL, which has no such key)",
    )
    parser.add_argument("--gslb", default=str(ROOT / ".venv" / "bin" / "gslb"), help="command running gslb")
    args = parser.parse_args()
    for tool in ("taskset", "dnsperf"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install dnsperf util-linux)")
    fds = raise_fd_limit()
    if fds < args.idle + args.slow + 200:
        raise SystemExit(f"open-file limit {fds} is too low for {args.idle + args.slow} connections")
    os.sched_setaffinity(0, {0})  # with dnsperf; CPU 1 is the server's alone
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="tcp-fairness-") as tmp:
        folder = Path(tmp)
        queries = folder / "queries.txt"
        queries.write_text(f"{NAME} A\n")
        config = args.config.resolve() if args.config else default_config(folder, keep_rrl=args.keep_rrl)
        server = Server.start(shlex.split(args.gslb), config, folder)
        attacker: Attacker | None = None
        try:
            print(f"server: {shlex.join(server.command)}")
            command, base_qps, base_lost = dnsperf(server.port, queries, args.duration)
            print(f"dnsperf: {shlex.join(command)}")
            quiet = fresh_client(server.port, args.queries)

            attacker = Attacker(server.port, attack_slots(args), args.reconnect_rate)
            overflows = listen_overflows()
            started = time.monotonic()
            attacker.open_all()
            opened_s = time.monotonic() - started
            attacker.start()
            time.sleep(1.0)  # the server has taken in the last connections
            held_before = attacker.held()
            under = fresh_client(server.port, args.queries)
            _, attack_qps, attack_lost = dnsperf(server.port, queries, args.duration)
            after = fresh_client(server.port, args.queries)
            held_after = attacker.held()
            attack_counts = (attacker.closed_by_server, attacker.reopened, attacker.connect_failures)
            overflows = listen_overflows() - overflows
            counters = server.tcp_metrics()
            attacker.stop()
            attacker = None
            _, post_qps, post_lost = dnsperf(server.port, queries, args.duration)
            closed, reopened, failures = attack_counts
        finally:
            if attacker is not None:
                attacker.stop()
            server.stop()
        tracebacks = server.log.read_text(errors="replace").count("Traceback")

    layout = "one /24" if args.same_network else f"{args.addresses} /24s"
    print("\n| measure | value |\n|---|---|")
    print(
        f"| UDP queries/s, no attack (dnsperf -l {args.duration}) | {base_qps:,.0f} (lost {base_lost:,.0f}) |"
    )
    print(f"| fresh client, no attack: TCP answered | {describe(quiet)} |")
    print(
        f"| attack: {args.idle:,} idle from {args.addresses} addresses ({layout}) + {args.slow} slowloris "
        f"| opened in {opened_s:.1f} s; {held_before:,} open on the attacker's side before, "
        f"{held_after:,} after |"
    )
    print(f"| kernel listen-queue overflows during the attack (dropped SYNs) | {overflows:,} |")
    print(f"| fresh client under attack: TCP answered | {describe(under)} |")
    baseline = (base_qps + post_qps) / 2
    print(
        f"| UDP queries/s under attack | {attack_qps:,.0f} (lost {attack_lost:,.0f}), "
        f"{attack_qps / baseline:.1%} of the mean of before and after |"
    )
    print(f"| fresh client after dnsperf, attack still on: TCP answered | {describe(after)} |")
    print(
        f"| attacker: closed by the server / re-opened / connect failures | "
        f"{closed:,} / {reopened:,} / {failures:,} |"
    )
    print(f"| UDP queries/s after the attack | {post_qps:,.0f} (lost {post_lost:,.0f}) |")
    for name, value in sorted(counters.items()):
        print(f"| server `{name}` | {value:,.0f} |")
    print(f"| tracebacks in the server log | {tracebacks} |")


if __name__ == "__main__":
    main()
