"""State that tells the truth, end to end: a real `gslb serve` (embedded api and prober), drains
of an endpoint, a datacenter and a region made through the api by the token "alice", and what
`gslb state` and `gslb explain --live` then print: each drain as drained with who, why and until
when, the failure reason of an endpoint that refuses connections and no round-trip time for it,
and one state version (the store version) under one name in both commands and their JSON."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.server_fixture import GslbProcess, free_port, start_gslb

pytestmark = pytest.mark.integration

ALICE = "gslb_alice_" + "a" * 32
LONDON = "81.2.69.142/32"  # MaxMind's test database: nearest ams, then fra
AMS = "www.gslb.example.com/ams/127.0.0.11"
FRA_UP = "www.gslb.example.com/fra/127.0.0.41"
FRA_REFUSING = "www.gslb.example.com/fra/127.0.0.42"  # nothing listens there: connection refused
LISTENING = ["127.0.0.11", "127.0.0.41", "127.0.0.21", "127.0.0.22", "127.0.0.31"]
WAIT_S = 30.0

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  fra: {{latitude: 50.11, longitude: 8.68, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip:
  database: {geoip}/GeoIP2-City-Test.mmdb
  default_order: [iad, ams, fra, sin]
services:
  www.gslb.example.com:
    ttl: 5
    check: {{type: tcp, port: CHECK_PORT, interval_s: 0.3, timeout_s: 0.3, rise: 1, fall: 1}}
    datacenters:
      ams: [127.0.0.11]
      fra: [127.0.0.41, 127.0.0.42]
      iad: [127.0.0.21, 127.0.0.22]
      sin: [127.0.0.31]
"""


@contextlib.contextmanager
def listening(addresses: list[str], port: int) -> Iterator[None]:
    """TCP listeners on `addresses` that accept and close every connection (a passing check)."""
    stop = threading.Event()
    servers = [socket.create_server((address, port)) for address in addresses]

    def serve(server: socket.socket) -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for server in servers:
            server.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GslbProcess]:
    port = free_port()
    with listening(LISTENING, port), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the log file start_gslb leaves open
        started = start_gslb(
            tmp_path,
            CONFIG.replace("CHECK_PORT", str(port)),
            env={"GSLB_API_TOKENS": f"alice:operate:{ALICE}"},
        )
        try:
            yield started
        finally:
            started.stop()


def api(server: GslbProcess, method: str, path: str, body: object = None) -> Any:
    request = urllib.request.Request(
        f"{server.api_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def cli(server: GslbProcess, tmp: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GSLB_API_URL": server.api_url,
        "GSLB_API_TOKEN": ALICE,
        "XDG_STATE_HOME": str(tmp / "cli-state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gslb", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_S} s")
        time.sleep(0.1)


def endpoint(state: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    return next(e for e in state["endpoints"] if e["id"] == endpoint_id)


def checked(server: GslbProcess) -> bool:
    """The prober has seen the refusing endpoint down and the others up."""
    state = api(server, "GET", "/v1/state")
    refusing = endpoint(state, FRA_REFUSING)
    ups = [endpoint(state, e) for e in (AMS, FRA_UP)]
    return (
        refusing["health"] == "down"
        and any(p["failure"] == "connection refused" for p in refusing["probers"])
        and all(e["health"] == "up" and e["probers"] for e in ups)
    )


def until_text(iso: str) -> str:
    """A drain's expiry as the texts give it: local HH:MM, with the date when not today."""
    return r"(\d{4}-\d\d-\d\d )?" + re.escape(datetime.fromisoformat(iso).astimezone().strftime("%H:%M"))


def row(text: str, *first: str) -> str:
    (line,) = [line for line in text.splitlines() if line.split()[: len(first)] == list(first)]
    return line


def test_drains_failures_and_the_state_version_tell_the_truth(server: GslbProcess, tmp_path: Path) -> None:
    until(lambda: checked(server), "the prober checking every endpoint")
    quoted = urllib.parse.quote(AMS, safe="")
    endpoint_drain = api(
        server, "POST", f"/v1/endpoints/{quoted}/drain", {"reason": "disk swap", "expires_in_s": 600}
    )
    api(server, "POST", "/v1/datacenters/iad/drain", {"reason": "nic swap"})
    region_drain = api(
        server, "POST", "/v1/regions/asia-pacific/drain", {"reason": "typhoon", "expires_in_s": 3600}
    )
    disk_until = until_text(endpoint_drain["drain"]["expires_at"])
    typhoon_until = until_text(region_drain["drain"]["expires_at"])

    # The state version is the same number in /v1/state, gslb state and gslb explain --live
    # (read twice around the commands: it moves only when the store changes).
    explain_args = ("explain", "www.gslb.example.com", "10.0.0.1", "--ecs", LONDON, "--live")

    def consistent() -> tuple[int, str, str, dict[str, Any]] | None:
        before = api(server, "GET", "/v1/state")["state_version"]
        text = cli(server, tmp_path, "state", "--endpoints")
        explained = cli(server, tmp_path, *explain_args)
        as_json = json.loads(cli(server, tmp_path, *explain_args, "--json"))
        after = api(server, "GET", "/v1/state")["state_version"]
        checked = re.search(r" up [0-9.]+ ms [0-9.]+s ago$", row(text, FRA_UP)) is not None
        return (before, text, explained, as_json) if before == after and checked else None

    seen: list[tuple[int, str, str, dict[str, Any]]] = []

    def quiet() -> bool:
        got = consistent()
        if got is not None:
            seen.append(got)
        return got is not None

    until(quiet, "the same state version before and after the commands, the up endpoint checked")
    version, state, explained, as_json = seen[0]
    assert version >= 3  # three drains written

    # gslb state: each drain as drained, with who, why and until when
    assert state.splitlines()[0].startswith(f"gslb state: embedded mode, state version {version}, ")
    assert "store version" not in state
    ams = row(state, "europe", "ams")
    assert ams.split()[2:5] == ["drained", "0/1", "(1"], state
    assert re.search(rf"endpoint 127\.0\.0\.11 drained by alice: disk swap, until {disk_until}$", ams), ams
    iad = row(state, "americas", "iad")
    assert iad.split()[2] == "drained" and iad.endswith("datacenter iad by alice: nic swap"), iad
    sin = row(state, "asia-pacific", "sin")
    assert sin.split()[2] == "drained", sin
    assert re.search(rf"region asia-pacific by alice: typhoon, until {typhoon_until}$", sin), sin
    # a failure reason in the table, and no round-trip time for the refusing endpoint
    fra = row(state, "europe", "fra")
    assert fra.split()[2:4] == ["degraded", "1/2"], fra
    assert fra.endswith("127.0.0.42 down: connection refused"), fra
    refusing = row(state, FRA_REFUSING)
    assert refusing.split()[1] == "down", refusing
    assert re.search(r" down: connection refused [0-9.]+s ago$", refusing), refusing
    assert " ms" not in refusing
    assert re.search(r" up [0-9.]+ ms [0-9.]+s ago$", row(state, FRA_UP)), state
    drained_endpoint = row(state, AMS)
    assert drained_endpoint.split()[1:5] == ["drained", "by", "alice:", "disk"], drained_endpoint

    # gslb explain --live: the same drains, never "0/1 endpoints up" for a drained endpoint
    assert f"health     live, state version {version}\n" in explained
    assert re.search(
        rf"not eligible: 1 endpoint drained \(by alice: disk swap, until {disk_until}\), needs 1 up$",
        row(explained, "ams"),
    ), explained
    assert "0/1 endpoints up" not in explained
    assert row(explained, "fra").endswith("1/2 endpoints up"), explained
    assert row(explained, "iad").endswith("drained (datacenter iad by alice: nic swap)"), explained
    assert re.search(
        rf"drained \(region asia-pacific by alice: typhoon, until {typhoon_until}\)$", row(explained, "sin")
    ), explained
    assert "choice     fra (failover)" in explained
    assert row(explained, "127.0.0.42").endswith("down"), explained
    assert as_json["state_version"] == version and "health_version" not in as_json
