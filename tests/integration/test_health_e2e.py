"""Health end to end: real HTTP endpoints, real redis-server, real `gslb probe` and `gslb serve`.

Each test starts endpoints on 127.0.0.x (lab/endpoint.py), probers and a responder in
distributed mode, then watches the answers over UDP while endpoints die, come back and
turn slow, while probers disagree or go stale, and while Redis dies and returns.
Intervals are short (0.2 s) so the suite stays fast; tests never assert timings, only
that the answer changes before a generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from gslb.health.view import Health
from gslb.state.snapshot_file import load_snapshot
from tests.redis_fixture import RedisServer
from tests.server_fixture import ROOT, free_port, wait_ready

pytestmark = pytest.mark.integration

EUROPE = "81.2.69.142"  # London in MaxMind's test database: nearest is ams
AMS = {"127.0.0.11", "127.0.0.12"}
IAD = {"127.0.0.21", "127.0.0.22"}
ENDPOINTS = {"ams-1": "127.0.0.11", "ams-2": "127.0.0.12", "iad-1": "127.0.0.21", "sin-1": "127.0.0.31"}

CONFIG = """
server:
  listen: ["127.0.0.1:{dns_port}"]
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip:
  database: {geoip}
  default_order: [iad, ams, sin]
services:
  www.gslb.example.com:
    ttl: 5
    check: {{type: http, port: {check_port}, path: /health, interval_s: 0.2, timeout_s: 0.15,
            rise: 2, fall: 2, degraded_rtt_ms: 60}}
    datacenters:
      ams: {{check: {{port: {ams_port}}}, endpoints: [127.0.0.11, 127.0.0.12]}}
      iad: [127.0.0.21]
      sin: [127.0.0.31]
state:
  redis_url: {redis_url}
  poll_interval_s: 0.2
  redis_timeout_s: 0.2
  snapshot_path: {snapshot}
prober:
  id: {prober_id}
  heartbeat_interval_s: 0.2
  stale_after_s: 1.0
"""


class Lab:
    """Processes of one test; everything is stopped at teardown."""

    def __init__(self, tmp: Path, redis: RedisServer) -> None:
        self.tmp = tmp
        self.redis = redis
        self.check_port = free_port()
        self.dns_port = free_port()
        self.endpoints: dict[str, subprocess.Popen[bytes]] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    def config(self, name: str, *, prober_id: str = "p1", ams_port: int | None = None) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            CONFIG.format(
                dns_port=self.dns_port,
                zone=ROOT / "zones" / "gslb.example.com.zone",
                geoip=ROOT / "tests" / "data" / "geoip" / "GeoIP2-City-Test.mmdb",
                check_port=self.check_port,
                ams_port=ams_port or self.check_port,
                redis_url=self.redis.url,
                snapshot=self.tmp / f"{name}.snapshot.json",
                prober_id=prober_id,
            )
        )
        return path

    def endpoint_up(self, name: str, *, slow: bool = False) -> None:
        args = [sys.executable, str(ROOT / "lab" / "endpoint.py"), "--bind", ENDPOINTS[name]]
        args += ["--port", str(self.check_port), "--name", name, "--slow-ms", "120"]
        self.endpoints[name] = subprocess.Popen(
            [*args, *(["--slow"] if slow else [])], stdout=subprocess.DEVNULL
        )

    def endpoint_down(self, name: str) -> None:
        proc = self.endpoints.pop(name)
        proc.terminate()
        proc.wait(5)

    def toggle_slow(self, name: str) -> None:
        self.endpoints[name].send_signal(signal.SIGUSR1)

    def gslb(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{log}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gslb", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "XDG_STATE_HOME": str(self.tmp / "state")},
            )
        self.processes.append(proc)
        return proc

    def prober(self, config: Path, log: str = "prober") -> subprocess.Popen[bytes]:
        return self.gslb("probe", "-c", str(config), log=log)

    def responder(self, config: Path, log: str = "responder") -> subprocess.Popen[bytes]:
        proc = self.gslb("serve", "-c", str(config), log=log)
        wait_ready(self.dns_port, proc, self.tmp / f"{log}.log")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(10)

    def close(self) -> None:
        for proc in [*self.processes, *self.endpoints.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def ask(self, subnet: str = EUROPE) -> tuple[str, set[str]]:
        option = dns.edns.ECSOption(subnet, 32)
        query = dns.message.make_query("www.gslb.example.com", "A", use_edns=0, options=[option])
        reply = dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=1, ignore_unexpected=True)
        return dns.rcode.to_text(reply.rcode()), {item.address for rrset in reply.answer for item in rrset}

    def wait_for(self, expected: set[str], *, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        seen: tuple[str, set[str]] = ("", set())
        while time.monotonic() < deadline:
            seen = self.ask()
            if seen == ("NOERROR", expected):
                return
            time.sleep(0.05)
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))
        raise AssertionError(f"expected {expected}, still {seen}\n{logs}")


@pytest.fixture
def lab(tmp_path: Path, redis_server: RedisServer) -> Iterator[Lab]:
    lab = Lab(tmp_path, redis_server)
    for name in ENDPOINTS:
        lab.endpoint_up(name)
    try:
        yield lab
    finally:
        lab.close()


def until(predicate: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Wait for a positive signal; the deadline is a hang guard."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(0.05)


def seen_down_by(lab: Lab, responder_config: str, prober_id: str) -> set[str]:
    """Endpoints the responder has read as DOWN according to `prober_id` (from the state
    snapshot the responder saves after each change it reads)."""
    snapshot = load_snapshot(lab.tmp / f"{responder_config}.snapshot.json")
    report = snapshot.probers.get(prober_id) if snapshot is not None else None
    return set() if report is None else {e for e, health in report.health.items() if health is Health.DOWN}


UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@contextlib.contextmanager
def failing_endpoints(addresses: list[str], port: int) -> Iterator[Counter[str]]:
    """HTTP listeners on `addresses` that answer every request 503 (a failed check); yields
    how many requests each has answered, so a test knows the prober has checked them."""
    answered: Counter[str] = Counter()
    stop = threading.Event()
    servers = [socket.create_server((address, port)) for address in addresses]

    def serve(server: socket.socket, address: str) -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(1.0)
                conn.recv(4096)
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                answered[address] += 1

    threads = [threading.Thread(target=serve, args=pair) for pair in zip(servers, addresses, strict=True)]
    for thread in threads:
        thread.start()
    try:
        yield answered
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for server in servers:
            server.close()


def started(lab: Lab) -> Lab:
    """One prober and one responder, answering from ams."""
    config = lab.config("gslb")
    lab.prober(config)
    lab.responder(config)
    lab.wait_for(AMS)
    return lab


def test_failover_and_recovery(lab: Lab) -> None:
    started(lab)
    lab.endpoint_down("ams-1")
    lab.wait_for({"127.0.0.12"})  # the dead endpoint leaves the answer, the datacenter stays
    lab.endpoint_down("ams-2")
    lab.wait_for({"127.0.0.21"})  # nothing left in ams: the next nearest datacenter
    lab.endpoint_up("ams-1")
    lab.endpoint_up("ams-2")
    lab.wait_for(AMS)


def test_a_slow_endpoint_is_soft_drained_and_used_again(lab: Lab) -> None:
    started(lab)
    lab.toggle_slow("ams-1")  # 120 ms per answer, above degraded_rtt_ms 60, below the timeout
    lab.wait_for({"127.0.0.12"})
    lab.toggle_slow("ams-1")
    lab.wait_for(AMS)


def test_quorum_with_two_probers_disagreeing_and_a_stale_prober_left_out(lab: Lab) -> None:
    good = lab.config("good", prober_id="good")
    blind = lab.config("blind", prober_id="blind", ams_port=free_port())  # sees ams down
    good_prober = lab.prober(good, log="good")
    lab.prober(blind, log="blind")
    lab.responder(good)
    # one prober says down, one says up: no majority of the two fresh probers says down
    lab.wait_for(AMS)
    until(lambda: len(seen_down_by(lab, "good", "blind")) == 2, "the responder reading the blind verdicts")
    assert lab.ask() == ("NOERROR", AMS)
    # the good prober stops: once its heartbeat is stale it is left out of the vote
    lab.stop(good_prober)
    lab.wait_for({"127.0.0.21"}, timeout_s=20)


def test_redis_killed_and_restarted(lab: Lab) -> None:
    started(lab)
    lab.redis.stop()
    # no Redis: once the responder has noticed, it answers from its last view, never SERVFAIL
    responder_log = lab.tmp / "responder.log"
    until(
        lambda: "state store unreachable" in responder_log.read_text(errors="replace"), "the outage noticed"
    )
    assert lab.ask() == ("NOERROR", AMS)
    # a change while Redis is away is served once it is back (it comes back empty)
    lab.endpoint_down("ams-1")
    lab.endpoint_down("ams-2")
    ams = [ENDPOINTS["ams-1"], ENDPOINTS["ams-2"]]
    with failing_endpoints(ams, lab.check_port) as checked:
        # fall is 2: after three failed checks of each the prober holds them down
        until(lambda: all(checked[address] >= 3 for address in ams), "the prober checking ams")
        assert lab.ask() == ("NOERROR", AMS)
    lab.redis.start()
    lab.wait_for({"127.0.0.21"})


def test_cold_start_from_the_local_snapshot_with_redis_down(lab: Lab) -> None:
    config = lab.config("gslb")
    prober = lab.prober(config)
    responder = lab.responder(config)
    lab.endpoint_down("ams-1")
    lab.endpoint_down("ams-2")
    lab.wait_for({"127.0.0.21"})
    lab.stop(responder)
    lab.stop(prober)
    lab.redis.stop()
    lab.endpoint_up("ams-1")  # would be up again, but nobody can tell the responder
    lab.responder(config, log="responder-cold")
    assert lab.ask() == ("NOERROR", {"127.0.0.21"})  # the last known state, not a default
