"""`python -m lab.netlab run|up|down` (as root): what `bin/dev netlab` runs.

run [--scenarios 1,2,3,4] [--json FILE]   build the lab from scratch, run the scenarios,
                                           print their numbers, remove everything (even on
                                           failure or Ctrl-C)
up                                         build it and leave it running (logs and configs
                                           in lab/var/netlab); try the commands it prints
down                                       stop every process of the lab, delete its namespaces
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab.netlab import scenarios
from lab.netlab.topology import (
    ANYCAST,
    GSLB,
    HERE,
    NODES,
    RESOLVER,
    WWW,
    Lab,
    LabError,
    Settings,
    lab_namespaces,
    teardown,
)

VAR = HERE.parent / "var" / "netlab"  # lab/var is ignored by git


def show(title: str, values: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for key, value in values.items():
        if key != "rows":
            print(f"  {key:<20} {value}")


def run(lab: Lab, wanted: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {
        "health_command": lab.health_command_kind,
        "lame_duck_s": lab.settings.lame_duck_s if lab.lame_duck else 0,
        "checker": {
            "interval_s": lab.settings.interval_s,
            "rise": lab.settings.rise,
            "fall": lab.settings.fall,
        },
        "ttl": lab.settings.ttl,
    }
    show("lab", results)
    failed: list[str] = []
    if "1" in wanted:
        resolution = scenarios.resolution(lab)
        print("\n== 1. iterative resolution through the delegation (fresh unbound cache)")
        for row in resolution.rows:
            mark = "ok " if row["ok"] else "BAD"
            print(
                f"  {mark} {row['client']:<28} {row['query']:<26} want {row['want']}: {' '.join(row['got'])}"
                f"  ({row['cold_ms']} ms cold, {row['cached_ms']} ms cached)"
            )
        print(
            f"  anycast {ANYCAST[0]} answered by {resolution.served_by}; router's route: {resolution.route}"
        )
        results["resolution"] = asdict(resolution)
        if not resolution.ok or resolution.served_by != "node1":
            failed.append("1")
    if "2" in wanted:  # the hang last: its burst of queued queries puts node1's RRL in debt a moment
        for crash in (True, False):
            stop = scenarios.node_stop(lab, crash=crash)
            show(f"2. node1 {stop.how}: route withdrawn, node2 answers", asdict(stop))
            results["crash" if crash else "stop"] = asdict(stop)
            if stop.route_after != "node2" or stop.direct_by_node2 == 0:
                failed.append("2")
        hung = scenarios.node_hung(lab)
        show("2. node1 hangs (SIGSTOP of all its processes: no withdrawal sent)", asdict(hung))
        results["hang"] = asdict(hung)
        if hung.route_after != "node2":
            failed.append("2")
    if "3" in wanted:
        drained = scenarios.drain(lab)
        show("3. drain region europe through the api", asdict(drained))
        results["drain"] = asdict(drained)
    if "4" in wanted:
        kept = scenarios.maintenance(lab)
        show("4. maintenance (healthcheck --disable file on node1)", asdict(kept))
        results["maintenance"] = asdict(kept)
        if kept.direct_lost or kept.via_lost or kept.via_failed or kept.route_during != "node2":
            failed.append("4")
    results["failed"] = failed
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bin/dev netlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "up", "down"])
    parser.add_argument("--scenarios", default="1,2,3,4", help="comma-separated, of 1-4 (default: all)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--prefix", default="netlab", help="namespace names: PREFIX-router, ... (default: netlab)"
    )
    parser.add_argument("--ttl", type=int, default=Settings().ttl, help="TTL of the steered answers")
    parser.add_argument(
        "--stand-in-check",
        action="store_true",
        help="ExaBGP's healthcheck runs `dig +norec SOA` instead of `gslb healthcheck`",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("netlab: needs root (ip netns, port 53)", file=sys.stderr)
        return 2
    if args.command == "down":
        removed = teardown(args.prefix)
        print(f"removed {len(removed)} namespaces" + (f": {', '.join(sorted(removed))}" if removed else ""))
        return 0
    if lab_namespaces(args.prefix):  # never build over (or tear down) a lab that runs
        print(
            f"netlab: a lab runs already ({args.prefix}-*); `bin/dev netlab down` removes it", file=sys.stderr
        )
        return 1
    # SIGTERM (timeout, CI) unwinds like Ctrl-C: the finally below removes the lab
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    settings = Settings(prefix=args.prefix, ttl=args.ttl, stand_in_check=args.stand_in_check)
    lab = Lab(VAR, settings)
    if args.command == "up":
        try:
            lab.up()
        except BaseException:
            lab.down()
            raise
        ns = f"ip netns exec {args.prefix}"
        tries = [
            (f"{ns}-eu dig @{RESOLVER} {WWW} +short", "ams (a London client)"),
            (f"{ns}-asia dig @{RESOLVER} {WWW} +short", "sin (a Changchun client)"),
            (f"{ns}-resolver dig @{ANYCAST[0]} id.server CH TXT +short", "node1 (nearest by route)"),
            (f"birdc -s {VAR}/bird.ctl show route all", "both announcements: MED 100 wins"),
            (f"touch {lab.disable_file('node1')}", "maintenance: node1 withdraws"),
            (f"{ns}-ops env GSLB_API_TOKEN={lab.token} {GSLB} drain region europe --reason x", "a drain"),
            ("bin/dev netlab down", "removes it all"),
        ]
        print(f"lab up (logs and configs in {VAR}); health command: {lab.health_command_kind}. Try:")
        for command, what in tries:
            print(f"  # {what}\n  {command}")
        return 0
    wanted = set(args.scenarios.split(","))
    try:
        lab.up()
        results = run(lab, wanted)
    except LabError as error:
        print(f"netlab: {error} (logs in {VAR / 'logs'})", file=sys.stderr)
        return 1
    finally:
        lab.down()
        print(f"\nlab removed ({', '.join(lab.ns(n) for n in ('router', *NODES))}, ...)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if results["failed"]:
        print(f"\nnetlab: scenarios {', '.join(results['failed'])} did not behave", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
