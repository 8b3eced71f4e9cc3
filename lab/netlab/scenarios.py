"""The lab's scenarios: each acts on a running `Lab`, observes, and returns its numbers.

1. resolution   every client resolves through the private root, example.com's delegation and
                the anycast name servers, and gets the datacenter of its continent
2. node stop    gslb on node1 stops (crash: SIGKILL; stop: SIGTERM with the lame duck):
                its route is withdrawn after the checker's fall, node2 answers; lost queries
                counted on a steady stream to the anycast address and through unbound.
                node1 hangs (SIGSTOP of all its processes): the BGP hold timer removes it
3. drain        `gslb drain region europe`: the European client's answer through unbound moves
                to iad within the TTL (seconds measured), and back after the undrain
4. maintenance  node1's healthcheck disable file: route withdrawn, then restored, no query lost
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from lab.netlab.topology import ADDRESS, ANYCAST, RESOLVER, ROOT, WWW, Lab, LabError, run, wait_for

CLIENTS = {  # client namespace -> the datacenter its continent is steered to
    "eu": "ams",
    "us": "iad",
    "asia": "sin",
}
ANSWERS = {
    "ams": ["192.0.2.10", "192.0.2.11"],
    "iad": ["198.51.100.10", "198.51.100.11"],
    "sin": ["203.0.113.10", "203.0.113.11"],
}
SETTLE_S = 2.0  # steady stream before and after an event


# --- asking --------------------------------------------------------------------------------


def resolve(lab: Lab, client: str, name: str = WWW, *extra: str) -> tuple[list[str], float | None]:
    """A records the client gets from the resolver, and dig's query time in ms."""
    out = lab.dig(client, RESOLVER, name, "A", *extra)
    answer = sorted(
        line.split()[-1] for line in out.splitlines() if not line.startswith(";") and "\tA\t" in line
    )
    took = re.search(r"Query time: (\d+) msec", out)
    return answer, float(took.group(1)) if took else None


def identity(lab: Lab, ns: str, server: str) -> str:
    out = lab.dig(ns, server, "+short", "id.server", "CH", "TXT").strip()
    return out.strip('"')


@dataclass
class Stream:
    """A `python -m lab.netlab.stream` running in a namespace until `stop()`."""

    proc: subprocess.Popen[bytes]
    queries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, lab: Lab, ns: str, *args: str) -> Stream:
        command = ["ip", "netns", "exec", lab.ns(ns), lab.python, "-m", "lab.netlab.stream", *args]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        return cls(proc)

    def stop(self) -> Stream:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0:
            raise LabError(f"query stream failed: {err.decode(errors='replace')}")
        self.queries = json.loads(out)["queries"]
        return self

    @property
    def sent(self) -> int:
        return len(self.queries)

    @property
    def lost(self) -> int:
        return sum(1 for q in self.queries if q["rtt_ms"] is None)

    @property
    def failed(self) -> int:
        """Answered with an error (SERVFAIL from the resolver)."""
        return sum(1 for q in self.queries if q["rcode"] not in (None, "NOERROR"))

    def by(self, node: str) -> list[dict[str, Any]]:
        return [q for q in self.queries if q["by"] == node]


def direct_stream(lab: Lab) -> Stream:
    """A resolver-like stream to the anycast address: 20 q/s with the European client's ECS."""
    return Stream.start(lab, "resolver", "--server", ANYCAST[0], "--subnet", "81.2.69.144/29", "--rate", "20")


def resolver_stream(lab: Lab) -> Stream:
    """A client's stream through unbound, a new name each time (no cache hits): 10 q/s."""
    return Stream.start(
        lab, "eu", "--server", RESOLVER, "--recursion", "--unique", "--name", "stream.gslb.example.com",
        "--rate", "10", "--timeout", "2",
    )  # fmt: skip


def streams(lab: Lab) -> tuple[Stream, Stream]:
    return direct_stream(lab), resolver_stream(lab)


# --- 1. resolution -------------------------------------------------------------------------


@dataclass
class Resolution:
    rows: list[dict[str, Any]]
    served_by: str
    route: str | None

    @property
    def ok(self) -> bool:
        return all(row["ok"] for row in self.rows)


def resolution(lab: Lab) -> Resolution:
    rows: list[dict[str, Any]] = []
    for client, datacenter in CLIENTS.items():
        cold, cold_ms = resolve(lab, client)
        cached, cached_ms = resolve(lab, client)
        rows.append(
            {
                "client": f"{client} ({ADDRESS[client]})",
                "query": WWW,
                "want": datacenter,
                "got": cold,
                "ok": cold == cached == ANSWERS[datacenter],
                "cold_ms": cold_ms,
                "cached_ms": cached_ms,
            }
        )
    cname, cname_ms = resolve(lab, "eu", "www.example.com")  # the parent's CNAME into the delegation
    rows.append(
        {"client": f"eu ({ADDRESS['eu']})", "query": "www.example.com (CNAME)", "want": "ams", "got": cname,
         "ok": cname == ANSWERS["ams"], "cold_ms": cname_ms, "cached_ms": None}
    )  # fmt: skip
    # a client that sends its own ECS: unbound passes it on (client-subnet-always-forward)
    forwarded, forwarded_ms = resolve(lab, "eu", WWW, "+subnet=175.16.199.0/24")
    rows.append(
        {"client": "eu with ECS 175.16.199.0/24", "query": WWW, "want": "sin", "got": forwarded,
         "ok": forwarded == ANSWERS["sin"], "cold_ms": forwarded_ms, "cached_ms": None}
    )  # fmt: skip
    return Resolution(rows, identity(lab, "resolver", ANYCAST[0]), lab.route())


# --- 2. node stop --------------------------------------------------------------------------


def transition(lab: Lab, node: str, state: str, after: float) -> float | None:
    """When (time.time()) node's ExaBGP healthcheck last went to `state` after `after`."""
    path = lab.work / f"{node}.health.log"
    times = [
        float(when)
        for when, _, name in (line.partition(" ") for line in path.read_text().splitlines())
        if name.strip() == state and float(when) >= after
    ]
    return times[-1] if times else None


@dataclass
class NodeStop:
    how: str
    checker_down_after_s: float | None  # from the stop to the healthcheck's DOWN (withdraw sent)
    withdrawn_after_s: float  # from the stop to the router's route moving to node2
    node1_answered_for_s: float  # from the stop to node1's last answer on the stream
    restored_after_s: float  # from node1's restart to the route back at node1
    direct_sent: int
    direct_lost: int
    direct_lost_after_withdrawal: int
    direct_by_node2: int
    via_sent: int
    via_lost: int
    via_failed: int
    route_after: str | None
    lame_duck_s: float


def node_stop(lab: Lab, *, crash: bool) -> NodeStop:
    if lab.route() != "node1":
        raise LabError(f"the router routes to {lab.route()}, not node1, before the stop")
    direct, via = streams(lab)
    time.sleep(SETTLE_S)
    stopped_at = time.time()
    # SIGTERM returns at once: the lame duck keeps answering while the route is withdrawn
    lab.processes["node1"].send_signal(signal.SIGKILL if crash else signal.SIGTERM)
    withdrawn = wait_for("node1's route withdrawn", lambda: lab.route() == "node2", 60, step_s=0.02)
    moved_at = time.time()
    route_after = lab.route()
    lame_duck_s = lab.settings.lame_duck_s if lab.lame_duck and not crash else 0.0
    lab.processes["node1"].wait(lame_duck_s + 30)  # the lame duck ends by itself
    lab.stop("node1")
    time.sleep(SETTLE_S)
    direct.stop()
    via.stop()
    down_at = transition(lab, "node1", "DOWN", stopped_at)
    restarted = time.monotonic()
    lab.start_node("node1")
    wait_for("node1's route back", lambda: lab.route() == "node1", 60, step_s=0.02)
    return NodeStop(
        how="crash (SIGKILL)" if crash else "stop (SIGTERM)",
        checker_down_after_s=None if down_at is None else round(down_at - stopped_at, 2),
        withdrawn_after_s=round(withdrawn, 2),
        node1_answered_for_s=round(
            max([q["t"] for q in direct.by("node1")], default=stopped_at) - stopped_at, 2
        ),
        restored_after_s=round(time.monotonic() - restarted, 2),
        direct_sent=direct.sent,
        direct_lost=direct.lost,
        direct_lost_after_withdrawal=sum(
            1 for q in direct.queries if q["t"] >= moved_at and q["rtt_ms"] is None
        ),
        direct_by_node2=len(direct.by("node2")),
        via_sent=via.sent,
        via_lost=via.lost,
        via_failed=via.failed,
        route_after=route_after,
        lame_duck_s=lame_duck_s,
    )


@dataclass
class NodeHung:
    """Every process of node1 stopped (SIGSTOP), as when the machine hangs: its link stays up
    and nobody sends a withdrawal, so the route goes when BIRD's BGP hold timer expires.
    Resumed, node1 answers the queries queued in its socket at once, and response rate
    limiting drops part of that burst: the resolver's account is in debt for a moment."""

    hold_time_s: int
    withdrawn_after_s: float
    restored_after_s: float  # from SIGCONT to the route back at node1
    direct_sent: int
    direct_lost: int
    direct_lost_after_withdrawal: int
    direct_by_node2: int
    route_after: str | None


HOLD_TIME_S = 9  # bird-session.conf and exabgp.conf


def node_hung(lab: Lab) -> NodeHung:
    if lab.route() != "node1":
        raise LabError(f"the router routes to {lab.route()}, not node1, before the hang")
    direct = direct_stream(lab)
    time.sleep(SETTLE_S)
    pids = [int(pid) for pid in run(["ip", "netns", "pids", lab.ns("node1")]).split()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        withdrawn = wait_for("node1's route gone", lambda: lab.route() == "node2", 60, step_s=0.02)
        moved_at = time.time()
        route_after = lab.route()
        time.sleep(SETTLE_S)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    direct.stop()
    wait_for("node1's route back", lambda: lab.route() == "node1", 120, step_s=0.02)
    restored = time.monotonic() - resumed
    wait_for("node1 out of its rate limiting debt", lambda: all(answers_in_full(lab) for _ in range(5)), 60)
    return NodeHung(
        hold_time_s=HOLD_TIME_S,
        withdrawn_after_s=round(withdrawn, 2),
        restored_after_s=round(restored, 2),
        direct_sent=direct.sent,
        direct_lost=direct.lost,
        direct_lost_after_withdrawal=sum(
            1 for q in direct.queries if q["t"] >= moved_at and q["rtt_ms"] is None
        ),
        direct_by_node2=len(direct.by("node2")),
        route_after=route_after,
    )


def answers_in_full(lab: Lab) -> bool:
    """The anycast address answers the stream's question over UDP, not truncated (TC=1 is
    what response rate limiting slips) and not dropped."""
    out = lab.dig("resolver", ANYCAST[0], "+ignore", "+subnet=81.2.69.144/29", WWW)
    flags = re.search(r"flags: ([a-z ]+);", out)
    return flags is not None and "tc" not in flags.group(1).split() and "status: NOERROR" in out


# --- 3. drain ------------------------------------------------------------------------------


@dataclass
class Drain:
    ttl: int
    before: list[str]
    moved_after_s: float  # from `gslb drain` to the European client's answer being iad
    nodes_after_s: float  # from `gslb drain` to both nodes answering iad for Europe directly
    back_after_s: float  # from `gslb undrain` to ams again through unbound


def drain(lab: Lab) -> Drain:
    before, _ = resolve(lab, "eu")  # fresh in unbound's cache: the move waits for its TTL
    if before != ANSWERS["ams"]:
        raise LabError(f"the European client gets {before} before the drain, not ams")
    started = time.monotonic()
    lab.gslb("ops", "drain", "region", "europe", "--reason", "netlab scenario 3")

    def nodes_moved() -> bool:
        return all(
            sorted(lab.dig(n, ADDRESS[n], "+short", "+subnet=81.2.69.144/29", WWW).split()) == ANSWERS["iad"]
            for n in ("node1", "node2")
        )

    wait_for("both nodes answer iad for Europe", nodes_moved, 60, step_s=0.05)
    nodes = time.monotonic() - started
    patience = lab.settings.ttl * 3 + 30
    wait_for("the European client moves to iad", lambda: resolve(lab, "eu")[0] == ANSWERS["iad"], patience)
    moved = time.monotonic() - started
    resolve(lab, "eu")
    started = time.monotonic()
    lab.gslb("ops", "undrain", "region", "europe", "--reason", "netlab scenario 3 done")
    wait_for("the European client is back at ams", lambda: resolve(lab, "eu")[0] == ANSWERS["ams"], patience)
    return Drain(
        ttl=lab.settings.ttl,
        before=before,
        moved_after_s=round(moved, 2),
        nodes_after_s=round(nodes, 2),
        back_after_s=round(time.monotonic() - started, 2),
    )


# --- 4. maintenance ------------------------------------------------------------------------


@dataclass
class Maintenance:
    checker_disabled_after_s: float | None  # from the disable file to the healthcheck's DISABLED
    withdrawn_after_s: float  # from the disable file to the route at node2
    restored_after_s: float  # from removing it to the route back at node1
    direct_sent: int
    direct_lost: int
    direct_by_node2: int
    via_sent: int
    via_lost: int
    via_failed: int
    route_during: str | None


def maintenance(lab: Lab) -> Maintenance:
    if lab.route() != "node1":
        raise LabError(f"the router routes to {lab.route()}, not node1, before maintenance")
    direct, via = streams(lab)
    time.sleep(SETTLE_S)
    disabled_at = time.time()
    lab.disable_file("node1").touch()
    withdrawn = wait_for("node1's route withdrawn", lambda: lab.route() == "node2", 60, step_s=0.02)
    route_during = lab.route()
    time.sleep(SETTLE_S)
    lab.disable_file("node1").unlink()
    restored = wait_for("node1's route back", lambda: lab.route() == "node1", 60, step_s=0.02)
    time.sleep(SETTLE_S)
    direct.stop()
    via.stop()
    disabled = transition(lab, "node1", "DISABLED", disabled_at)
    return Maintenance(
        checker_disabled_after_s=None if disabled is None else round(disabled - disabled_at, 2),
        withdrawn_after_s=round(withdrawn, 2),
        restored_after_s=round(restored, 2),
        direct_sent=direct.sent,
        direct_lost=direct.lost,
        direct_by_node2=len(direct.by("node2")),
        via_sent=via.sent,
        via_lost=via.lost,
        via_failed=via.failed,
        route_during=route_during,
    )
