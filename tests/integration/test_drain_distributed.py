"""Done when: two responders and a `gslb api` on one real Redis; `gslb drain` moves both.

Real processes only: redis-server, two `gslb serve` in distributed mode, `gslb api`, and the
`gslb` CLI run as a subprocess, with answers read by `dig`. Tokens come from a tokens file
made by `gslb token create`. The processes are shared by the tests of this module; every test
leaves no drain behind. Deadlines are generous; no timing is asserted beyond "about a second".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_fixture import RedisServer
from tests.server_fixture import BASIC_CONFIG, GslbProcess, start_gslb, start_gslb_api

pytestmark = pytest.mark.integration

EUROPE = "89.160.20.112/28"  # Linköping in MaxMind's test database: nearest is ams, then iad
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}
DIG_OPTIONS = ("+short", "+time=1", "+tries=2")
# A hang guard, not a bound: the waits end when every responder answers as expected. How fast
# a drain propagates ("within about one second") is measured by bench/health_bench.py.
PROPAGATION_S = 30.0

DISTRIBUTED = (
    BASIC_CONFIG.replace(
        "  tcp: {{",
        '  metrics_listen: "127.0.0.1:{metrics_port}"\n  tcp: {{',
    )
    + """
state:
  redis_url: {redis_url}
  poll_interval_s: 1.0
api:
  listen: "127.0.0.1:{api_port}"
  tokens_file: {tmp}/tokens
  audit_log: {tmp}/audit.jsonl
"""
)


@dataclass
class Cluster:
    tmp: Path
    redis: RedisServer
    responders: list[GslbProcess]
    api: GslbProcess
    operate: str
    read: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"

    def gslb(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "GSLB_API_URL": self.api_url,
            "XDG_STATE_HOME": str(self.tmp / "cli-state"),
            "GSLB_API_TOKEN": self.operate if token is None else token,
        }
        return subprocess.run(
            [sys.executable, "-m", "gslb", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.api_url + path, headers={"Authorization": f"Bearer {self.read}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


def dig(port: int, subnet: str = EUROPE) -> set[str]:
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(port),
            "www.gslb.example.com",
            "A",
            f"+subnet={subnet}",
            *DIG_OPTIONS,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return set(out.split())


def wait_answers(cluster: Cluster, expected: set[str], timeout_s: float) -> float:
    """Seconds until every responder answers `expected` (fails after `timeout_s`)."""
    started = time.monotonic()
    pending = {r.port for r in cluster.responders}
    while pending and time.monotonic() - started < timeout_s:
        pending = {port for port in pending if dig(port) != expected}
        if pending:
            time.sleep(0.02)
    answers = {r.port: dig(r.port) for r in cluster.responders}
    assert not pending, f"after {timeout_s}s: {answers}, wanted {expected}"
    return time.monotonic() - started


def make_token(tmp: Path, name: str, role: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gslb",
            "token",
            "create",
            name,
            "--role",
            role,
            "--file",
            str(tmp / "tokens"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    token = out.stdout.strip()
    assert token.startswith("gslb_")
    assert token not in (tmp / "tokens").read_text()
    assert "shown only now" in out.stderr
    return token


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    (tmp / "redis").mkdir()
    redis = RedisServer(tmp / "redis")
    redis.start()
    operate = make_token(tmp, "ops", "operate")
    read = make_token(tmp, "viewer", "read")
    config = DISTRIBUTED.replace("{redis_url}", redis.url)
    started: list[GslbProcess] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            responders = [start_gslb(tmp, config) for _ in range(2)]
            started += responders
            api = start_gslb_api(tmp, config)
            started.append(api)
        yield Cluster(tmp, redis, responders, api, operate, read)
    finally:
        for process in started:
            process.stop()
        redis.stop()


@pytest.fixture
def clean(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with no drains before and after the test; the audit size before it."""
    yield cluster
    for drain in cluster.get("/v1/state")["drains"]:
        cluster.gslb("undrain", drain["kind"], drain["target"])


def test_drain_region_moves_every_responder_and_undrain_restores(clean: Cluster) -> None:
    cluster = clean
    for responder in cluster.responders:
        assert dig(responder.port) == AMS
    audit_before = len(cluster.get("/v1/audit")["entries"])

    drained = cluster.gslb("drain", "region", "europe", "--reason", "test")
    assert drained.returncode == 0, drained.stderr
    assert "drained region europe" in drained.stdout
    assert "caches clear by" in drained.stdout
    wait_answers(cluster, IAD, PROPAGATION_S)

    entries = cluster.get("/v1/audit")["entries"]
    assert len(entries) == audit_before + 1
    entry = entries[0]
    assert (entry["action"], entry["target"], entry["reason"], entry["token"], entry["result"]) == (
        "drain",
        "region:europe",
        "test",
        "ops",
        "applied",
    )
    assert entry["source"] == "127.0.0.1"
    lines = [json.loads(line) for line in (cluster.tmp / "audit.jsonl").read_text().splitlines()]
    assert (lines[-1]["action"], lines[-1]["target"], lines[-1]["token"]) == ("drain", "region:europe", "ops")

    explained = cluster.get("/v1/explain?name=www.gslb.example.com&client=10.0.0.1&ecs=89.160.20.112/28")
    assert (explained["choice"], explained["mode"]) == ("iad", "failover")
    assert "drained (region europe by ops: test)" in explained["text"]

    state = cluster.gslb("state")
    assert state.returncode == 0, state.stderr
    assert "distributed mode" in state.stdout
    assert any(line.split()[:3] == ["europe", "ams", "drained"] for line in state.stdout.splitlines())

    undrained = cluster.gslb("undrain", "region", "europe")
    assert undrained.returncode == 0, undrained.stderr
    assert "undrained region europe" in undrained.stdout
    wait_answers(cluster, AMS, PROPAGATION_S)


def test_drain_with_expiry_lifts_itself_everywhere(clean: Cluster) -> None:
    cluster = clean
    result = cluster.gslb("drain", "datacenter", "ams", "--reason", "short", "--expires-in", "3")
    assert result.returncode == 0, result.stderr
    wait_answers(cluster, IAD, 3.0)  # seen while the drain lasts
    wait_answers(cluster, AMS, PROPAGATION_S)  # and lifted by its expiry alone


def test_endpoint_drain_through_the_cli(clean: Cluster) -> None:
    cluster = clean
    result = cluster.gslb("drain", "endpoint", "www.gslb.example.com/ams/192.0.2.10", "--reason", "disk")
    assert result.returncode == 0, result.stderr
    wait_answers(cluster, {"192.0.2.11"}, PROPAGATION_S)
    result = cluster.gslb("undrain", "endpoint", "www.gslb.example.com/ams/192.0.2.10")
    assert result.returncode == 0, result.stderr
    wait_answers(cluster, AMS, PROPAGATION_S)


def test_read_token_is_refused_and_draining_everything_needs_force(clean: Cluster) -> None:
    cluster = clean
    refused = cluster.gslb("drain", "region", "europe", "--reason", "x", token=cluster.read)
    assert refused.returncode == 1
    assert "403" in refused.stderr and "read role" in refused.stderr
    nobody = cluster.gslb("drain", "region", "europe", "--reason", "x", token="gslb_nope_" + "n" * 30)
    assert nobody.returncode == 1 and "401" in nobody.stderr

    for region in ("europe", "americas"):
        assert cluster.gslb("drain", "region", region, "--reason", "x").returncode == 0
    last = cluster.gslb("drain", "region", "asia-pacific", "--reason", "x")
    assert last.returncode == 1
    assert "409" in last.stderr and "--force" in last.stderr
    forced = cluster.gslb("drain", "region", "asia-pacific", "--reason", "x", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "(forced)" in forced.stdout
    wait_answers(cluster, set(), PROPAGATION_S)  # NODATA: everything drained, no fallback


def test_unknown_targets_are_404(clean: Cluster) -> None:
    result = clean.gslb("drain", "datacenter", "fra", "--reason", "x")
    assert result.returncode == 1
    assert '404: unknown datacenter "fra" (known: ams, iad, sin)' in result.stderr


def test_each_responder_exposes_its_own_counters(clean: Cluster) -> None:
    cluster = clean
    for _ in range(3):
        dig(cluster.responders[0].port)
    for responder in cluster.responders:
        url = f"http://127.0.0.1:{responder.extra_ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "gslb_dns_responses" in families
        assert "gslb_state_version" in families and "gslb_state_sync_age_seconds" in families
        assert "gslb_datacenter_eligible" in families
    first = _samples(cluster.responders[0], "gslb_dns_answers_total")
    assert first[("www.gslb.example.com", "ams")] >= 3


def _samples(responder: GslbProcess, name: str) -> dict[tuple[str, ...], float]:
    url = f"http://127.0.0.1:{responder.extra_ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[(sample.labels["service"], sample.labels["datacenter"])] = sample.value
    return out
