"""`server.workers`: several `gslb serve` processes share the listeners (SO_REUSEPORT)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from gslb.config.loader import load
from gslb.errors import ConfigError
from tests.redis_fixture import RedisServer
from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration


def workers_config(redis_url: str) -> str:
    return (
        BASIC_CONFIG.replace("server:\n", "server:\n  workers: 2\n", 1)
        + f"state:\n  redis_url: {redis_url}\n"
    )


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(line) for line in out.split()}


def static_answer(port: int) -> set[str]:
    """Asked like a resolver does: a datagram lost while a worker dies is asked again."""
    query = dns.message.make_query("static.gslb.example.com", "A")
    for _ in range(4):
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5, ignore_unexpected=True)
        except (dns.exception.Timeout, dns.query.BadResponse, OSError):
            continue
        assert reply.rcode() == dns.rcode.NOERROR
        return {item.address for rrset in reply.answer for item in rrset}
    raise AssertionError("no answer in 4 tries")


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Until `predicate()` holds; the timeout only guards against a hang (a busy CI machine
    starts a worker process in seconds, not milliseconds)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_workers_share_the_port_restart_reload_and_stop(
    tmp_path: Path, redis_server: RedisServer, gslb_factory: Callable[..., GslbProcess]
) -> None:
    server = gslb_factory(workers_config(redis_server.url))
    wait_until(lambda: len(children(server.proc.pid)) == 2)
    # both serve before one is killed: else the restarted one's line would be only the second
    wait_until(lambda: server.output().count("gslb serving") >= 2)
    first = children(server.proc.pid)
    assert static_answer(server.port) == {"192.0.2.80"}
    # a worker that dies is replaced; the other one keeps answering meanwhile
    victim = min(first)
    subprocess.run(["kill", "-9", str(victim)], check=True)
    assert static_answer(server.port) == {"192.0.2.80"}
    wait_until(lambda: len(children(server.proc.pid)) == 2 and victim not in children(server.proc.pid))
    # SIGHUP reaches every worker: many queries (each from a new source port, spread by the
    # kernel over both workers) all see the new zone data
    zone = tmp_path / "gslb.example.com.zone"
    zone.write_text(zone.read_text().replace("192.0.2.80", "192.0.2.81"))
    # the restarted worker says it serves once its SIGHUP handler is in place: then reload
    wait_until(lambda: server.output().count("gslb serving") >= 3, timeout_s=60.0)
    server.signal(signal.SIGHUP)
    wait_until(lambda: all(static_answer(server.port) == {"192.0.2.81"} for _ in range(40)))
    pids = children(server.proc.pid)
    assert server.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_workers_need_redis(tmp_path: Path) -> None:
    zone = Path(__file__).resolve().parents[2] / "zones" / "gslb.example.com.zone"
    path = tmp_path / "gslb.yaml"
    path.write_text(
        BASIC_CONFIG.replace("server:\n", "server:\n  workers: 2\n", 1)
        .format(port=5353, api_port=0, metrics_port=0, zone=zone, geoip=tmp_path, tmp=tmp_path)
        .replace(f"database: {tmp_path}/GeoIP2-City-Test.mmdb", "database: null")
    )
    with pytest.raises(ConfigError, match=r"server.workers: 2 workers need state.redis_url"):
        load(path)
