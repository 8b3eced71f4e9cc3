#!/usr/bin/env python3
"""Fuzz a running `gslb serve` over UDP and TCP with the mutations of tests/dnsfuzz.py.

The server is started as tests/server_fixture.py starts it (BASIC_CONFIG: the example zone,
MaxMind's test GeoIP database, TCP idle 1 s, read 0.5 s), with response rate limiting in
log-only mode (all inputs come from 127.0.0.1; `--rrl on` limits, and slipped TC=1 replies
are judged like the others). UDP inputs go in batches closed by
a sentinel query whose reply says the batch is done; TCP inputs go pipelined on connections,
written in chunks of 1 to 1500 bytes with the odd pause, a tenth of the connections ending in
a length prefix that is never filled (the server must cut them). Every reply is judged as in
process (parses, ID, QR=1, RA=0, no SERVFAIL, fits 1232 bytes over UDP). Afterwards the server
must still run, answer a valid query over UDP and TCP, and its log must hold no traceback and
no ERROR line. Prints inputs/s, replies by rcode, drops, RSS before and after; exits 1 on any
failure.

    .venv/bin/python bench/wire_fuzz.py                        # 200,000 inputs, 30 % over TCP
    .venv/bin/python bench/wire_fuzz.py --inputs 20000 --seed 3 --keep
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dnsfuzz import WIRE_CONFIG, Tally, answers_valid_query, log_problems, wire_fuzz
from tests.server_fixture import BASIC_CONFIG, start_gslb


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tcp-share", type=float, default=0.3)
    parser.add_argument("--tcp-workers", type=int, default=2)
    parser.add_argument(
        "--rrl",
        choices=["log-only", "on"],
        default="log-only",
        help="response rate limiting (default log-only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (config, log)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wire-fuzz-"))
    server = start_gslb(tmp, WIRE_CONFIG if args.rrl == "log-only" else BASIC_CONFIG)
    failures = 0
    try:
        before = rss_kib(server.proc.pid)

        def progress(tally: Tally) -> None:
            rate = tally.inputs / tally.seconds if tally.seconds else 0.0
            print(f"  UDP: {tally.inputs:,} inputs, {rate:,.0f}/s, failures {tally.failures}", flush=True)

        print(f"gslb serve on 127.0.0.1:{server.port}, pid {server.proc.pid}, RSS {before / 1024:.1f} MiB")
        tally = wire_fuzz(
            server.address,
            args.inputs,
            seed=args.seed,
            tcp_share=args.tcp_share,
            tcp_workers=args.tcp_workers,
            progress=progress,
        )
        print(tally.report())
        udp_sent = tally.inputs - int(args.inputs * args.tcp_share)
        print(f"UDP drops: {udp_sent - tally.notes['UDP replies']:,} of {udp_sent:,}")
        failures += tally.failures
        running = server.proc.poll() is None
        udp_ok = running and answers_valid_query(server.address, tcp=False)
        tcp_ok = running and answers_valid_query(server.address, tcp=True)
        after = rss_kib(server.proc.pid) if running else 0
        print(f"server running: {running}, answers over UDP: {udp_ok}, over TCP: {tcp_ok}")
        print(f"RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB")
        failures += (not running) + (not udp_ok) + (not tcp_ok)
    finally:
        code = server.stop()
    bad_lines = log_problems(server.output())
    print(f"server exit code {code}; log lines with a traceback or ERROR: {len(bad_lines)}")
    for line in bad_lines[:10]:
        print("  " + line)
    failures += len(bad_lines) + (code != 0)
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
