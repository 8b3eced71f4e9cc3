#!/usr/bin/env python3
"""In-process fuzzing of the query handler: a million mutated queries, every reply judged.

The seeded mutation fuzzer of tests/dnsfuzz.py (structure-aware edits of valid queries:
header counts and flags, label lengths, pointers, long names, pointer chains, OPT and ECS
faults; then bit flips, truncation, splicing; some random bytes) feeds `Handler.handle`
directly, from several client addresses, over "UDP" and "TCP". Each reply must be nothing or a
message dnspython parses with the query's ID, QR=1, RA=0, not SERVFAIL, within 1232 bytes over
UDP; no exception may escape and nothing may be logged at ERROR. The health generation moves
on every 10,000 inputs, as on a health change.

Half the inputs go to the example config's handler with MaxMind's test database and compiled
steering maps (ECS queries take the shape path), half to the embedded default config
(GeoLite2 2018, no compiled maps). Prints inputs/s, replies by rcode (drop = no reply) and
the failures with reproducible examples; exits 1 if there was any.

    .venv/bin/python bench/fuzz_bench.py                       # 1,000,000 inputs
    .venv/bin/python bench/fuzz_bench.py --inputs 50000 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gslb.config.loader import load
from gslb.health.view import HealthView
from gslb.responder import build_parts
from tests.dnsfuzz import EXAMPLE_CONFIG, Tally, build_handler, fuzz_handler


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    def progress(tally: Tally) -> None:
        rate = tally.inputs / tally.seconds if tally.seconds else 0.0
        print(f"  {tally.inputs:,} inputs, {rate:,.0f}/s, failures {tally.failures}", flush=True)

    total = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        handlers = {
            "test GeoIP database, compiled maps": build_handler(Path(tmp)),
            "embedded default config": build_parts(load(EXAMPLE_CONFIG), HealthView()).handler,
        }
        share = args.inputs // len(handlers)
        for index, (name, handler) in enumerate(handlers.items()):
            count = share if index else args.inputs - share * (len(handlers) - 1)
            print(f"{name}: {count:,} inputs, seed {args.seed + index}", flush=True)
            tally = fuzz_handler(handler, count, seed=args.seed + index, progress=progress)
            print(tally.report(), flush=True)
            total.merge(tally)
            total.seconds += tally.seconds
    print("\ntotal:\n" + total.report())
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
