#!/usr/bin/env python3
"""Measure a SIGHUP reload of a big zone under query load, and `gslb check` on a bigger one.

Writes bench/peers.yaml's config with a generated example.test zone of --records records (A, AAAA,
TXT, MX and CNAME names in turn, besides the SOA, NS, ns1 and static of bench/example.test.zone),
starts `gslb serve` on it (pinned to CPU 1; this client on CPU 0), sends --rate queries/s for
`static.example.test A` open loop over UDP (no reply within 1 s = lost), sends SIGHUP after
--before seconds, waits for the server's "reloaded" log line, keeps querying --after seconds more
and reports queries sent, lost, max latency and the reload time (SIGHUP → "reloaded" line).

Then times `gslb check -c CONFIG` on a zone of --check-records records: wall time and maximum RSS
(/usr/bin/time -v, else getrusage of the child).

    .venv/bin/python bench/reload_bench.py                                  # 100k reload, 500k check
    .venv/bin/python bench/reload_bench.py --records 20000 --check-records 0   # quick, no check
    .venv/bin/python bench/reload_bench.py --gslb "env PYTHONPATH=/tmp/other .venv/bin/python -m gslb"
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flood_bench import PEERS_CONFIG, ROOT, Prober, Server, free_port, memory_kib, mib, query

ZONE_HEADER = ROOT / "bench" / "example.test.zone"
STATIC = "static.example.test"


def write_setup(folder: Path, records: int) -> Path:
    """bench/peers.yaml and an example.test zone of `records` generated records in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "gslb.yaml"
    shutil.copy(PEERS_CONFIG, config)  # its zone file, example.test.zone, is relative: the one below
    with (folder / "example.test.zone").open("w") as out:
        out.write(ZONE_HEADER.read_text())
        for i in range(records):
            kind = i % 5
            if kind == 0:
                out.write(f"r{i} IN A 192.0.2.{i % 254 + 1}\n")
            elif kind == 1:
                out.write(f"r{i} IN AAAA 2001:db8::{i >> 16:x}:{i & 0xFFFF:x}\n")
            elif kind == 2:
                out.write(f'r{i} IN TXT "bench record {i}"\n')
            elif kind == 3:
                out.write(f"r{i} IN MX 10 r{i - 3}.example.test.\n")
            else:
                out.write(f"r{i} IN CNAME r{i - 4}\n")
    return config


def reload_under_load(args: argparse.Namespace, folder: Path) -> None:
    config = write_setup(folder / "reload", args.records)
    port = args.port or free_port()
    server = Server.start(shlex.split(args.gslb), config, port, folder / "reload")
    try:
        print(f"server: {shlex.join(server.command)}")
        ready = server.wait_answer(port, STATIC)
        rss_before = memory_kib(server.pid)["VmRSS"]
        prober = Prober(port, [query(STATIC)], args.rate)
        prober.start()
        try:
            time.sleep(args.before)
            offset = server.log.stat().st_size
            hup = time.monotonic()
            hup_perf = time.perf_counter()
            server.proc.send_signal(signal.SIGHUP)
            done = server.wait_log(r"reloaded|reload of .* failed", offset)
            took = done - hup
            time.sleep(args.after)
        finally:
            prober.stop()
        tail = server.log.read_bytes()[offset:].decode(errors="replace")
        failed = "failed" if re.search(r"reload of .* failed", tail) else "ok"
        memory = memory_kib(server.pid)
    finally:
        server.stop()
    total = prober.summary()
    before = prober.summary(until=hup_perf)
    during = prober.summary(hup_perf, hup_perf + took + 1)
    print(
        f"\n{args.records:,} records, {args.rate:.0f} q/s of `{STATIC} A`, SIGHUP after {args.before:.0f} s\n"
    )
    table(
        [
            ("start → first answer", f"{ready:.2f} s"),
            ("reload (SIGHUP → 'reloaded' log line)", f"{took:.2f} s ({failed})"),
            (
                "queries sent / lost (of which late > 1 s)",
                f"{total['sent']:,.0f} / {total['lost']:,.0f} ({total['late']:,.0f})",
            ),
            (
                "latency p50 / p99 (within 1 s) / max (any reply)",
                f"{total['p50']:.2f} / {total['p99']:.2f} / {total['max']:.0f} ms",
            ),
            ("latency p99 before SIGHUP", f"{before['p99']:.2f} ms"),
            ("sent / lost from SIGHUP to reload + 1 s", f"{during['sent']:,.0f} / {during['lost']:,.0f}"),
            (
                "server RSS before → after reload (peak)",
                f"{mib(rss_before)} → {mib(memory['VmRSS'])} ({mib(memory['VmHWM'])})",
            ),
        ]
    )


def table(rows: list[tuple[str, str]]) -> None:
    print("| measure | value |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


def time_check(args: argparse.Namespace, folder: Path) -> None:
    config = write_setup(folder / "check", args.check_records)
    command = [*shlex.split(args.gslb), "check", "-c", str(config)]
    timer = ["/usr/bin/time", "-v"] if os.access("/usr/bin/time", os.X_OK) else []
    print(f"\ncheck: {shlex.join([*timer, *command])}")
    start = time.monotonic()
    result = subprocess.run([*timer, *command], capture_output=True, text=True, cwd=folder, check=False)
    wall = time.monotonic() - start
    if timer:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        max_rss = int(match.group(1)) if match else 0
    else:
        max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB; the largest child so far
    print(f"\n`gslb check` on {args.check_records:,} records\n")
    table(
        [("exit status", str(result.returncode)), ("wall time", f"{wall:.2f} s"), ("max RSS", mib(max_rss))]
    )
    if result.returncode:
        print(f"\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="zone records for the reload")
    parser.add_argument("--check-records", type=int, default=500_000, help="zone records for check (0: skip)")
    parser.add_argument("--rate", type=float, default=200.0, help="queries/s (default 200)")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of queries before SIGHUP")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of queries after the reload")
    parser.add_argument("--gslb", default=str(ROOT / ".venv" / "bin" / "gslb"), help="command running gslb")
    parser.add_argument("--port", type=int, default=0, help="DNS port (default: a free one)")
    args = parser.parse_args()
    if not shutil.which("taskset"):
        raise SystemExit("taskset is missing (apt-get install util-linux)")
    os.sched_setaffinity(0, {0})  # the client on CPU 0, the server alone on CPU 1
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
        # The check first: RUSAGE_CHILDREN (without /usr/bin/time) then sees only the check.
        if args.check_records:
            time_check(args, Path(tmp))
        if args.records:
            reload_under_load(args, Path(tmp))


if __name__ == "__main__":
    main()
