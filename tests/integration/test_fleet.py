"""Done when: two responders on one Redis show in `gslb state`, `/v1/state`, `/metrics` and the
status page with their zone serials and sync ages; a reload of one with a new serial shows a
serial drift; a failed reload shows on state and in `/metrics`; a drain says which responders
applied it.

Real processes only: redis-server, two `gslb serve` in distributed mode and a `gslb api`, the
`gslb` CLI as a subprocess. The two responders run byte-identical config files from two folders
(zone paths are relative to the config file, so each has its own zone file) with `--listen`
giving each its port: the way two hosts run one config. Every wait polls for a condition with a
generous deadline; no timing is asserted. The tests share the processes and put back what they
change.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.redis_fixture import RedisServer
from tests.server_fixture import EXAMPLE_ZONE, GEOIP_DATA, free_ports, start_gslb_api, wait_ready

pytestmark = pytest.mark.integration

READ = "gslb_fleetread_" + "r" * 32
OPERATE = "gslb_fleetop_" + "o" * 32
TOKENS = {"GSLB_API_TOKENS": f"viewer:read:{READ},ops:operate:{OPERATE}"}
ZONE = "gslb.example.com."
SERIAL = 2026112701  # zones/gslb.example.com.zone
DEADLINE_S = 30.0  # a hang guard, not a bound

RESPONDER_CONFIG = """
server:
  identity: {{id_server: ns.gslb.example.com}}
zones:
  - origin: gslb.example.com
    file: gslb.example.com.zone
regions: [europe, americas]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
geoip:
  database: {geoip}/GeoIP2-City-Test.mmdb
services:
  www.gslb.example.com:
    ttl: 30
    datacenters:
      ams: [192.0.2.10, 192.0.2.11]
      iad: [198.51.100.10, 198.51.100.11]
state:
  redis_url: {redis_url}
  poll_interval_s: 1.0
"""
API_CONFIG = RESPONDER_CONFIG.replace("file: gslb.example.com.zone", "file: {zone}") + (
    '\napi:\n  listen: "127.0.0.1:{api_port}"\n'
)


@dataclass
class Responder:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def id(self) -> str:
        return f"{socket.gethostname()}:{self.port}"

    @property
    def zone(self) -> Path:
        return self.folder / "gslb.example.com.zone"

    @property
    def config(self) -> Path:
        return self.folder / "gslb.yaml"

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Fleet:
    tmp: Path
    responders: list[Responder]
    api_url: str

    def get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.api_url + path, headers={"Authorization": f"Bearer {READ}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.api_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def gslb(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "GSLB_API_URL": self.api_url,
            "GSLB_API_TOKEN": OPERATE,
            "XDG_STATE_HOME": str(self.tmp / "cli-state"),
        }
        return subprocess.run(
            [sys.executable, "-m", "gslb", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    def wait_state(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """/v1/state once `predicate` holds for it (fails after DEADLINE_S, showing the last one)."""
        deadline = time.monotonic() + DEADLINE_S
        state = self.get("/v1/state")
        while not predicate(state):
            if time.monotonic() > deadline:
                shown = {"responders": state["responders"], "fleet": state["fleet"]}
                raise AssertionError(f"not within {DEADLINE_S} s: {what}\n{json.dumps(shown, indent=1)}")
            time.sleep(0.1)
            state = self.get("/v1/state")
        return state


def by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in state["responders"]}


def start_responder(folder: Path, config_text: str, port: int) -> Responder:
    folder.mkdir()
    shutil.copy(EXAMPLE_ZONE, folder / "gslb.example.com.zone")
    (folder / "gslb.yaml").write_text(config_text)
    log = folder / "gslb.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(folder / "state")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gslb",
                "serve",
                "-c",
                str(folder / "gslb.yaml"),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    try:
        wait_ready(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Responder(folder, port, proc, log)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    (tmp / "redis").mkdir()
    redis = RedisServer(tmp / "redis")
    redis.start()
    text = RESPONDER_CONFIG.format(geoip=GEOIP_DATA, redis_url=redis.url)
    responders: list[Responder] = []
    api = None
    try:
        for name, port in zip(("a", "b"), free_ports(2), strict=True):
            responders.append(start_responder(tmp / name, text, port))
        api_config = API_CONFIG.replace("{redis_url}", redis.url)
        api = start_gslb_api(tmp, api_config, env=TOKENS)
        yield Fleet(tmp, responders, f"http://127.0.0.1:{api.port}")
    finally:
        if api is not None:
            api.stop()
        for responder in responders:
            responder.stop()
        redis.stop()


def both_up(fleet: Fleet) -> Callable[[dict[str, Any]], bool]:
    ids = {r.id for r in fleet.responders}
    return lambda state: ids <= set(state["fleet"]["up"])


def test_state_shows_both_responders_with_serials_and_sync_ages(fleet: Fleet) -> None:
    state = fleet.wait_state(both_up(fleet), "both responders registered")
    assert state["fleet"]["problems"] == []
    rows = by_id(state)
    digest = rows[fleet.responders[0].id]["config_hash"]
    for responder in fleet.responders:
        row = rows[responder.id]
        assert row["zones"] == {ZONE: SERIAL}
        assert row["listen"] == [f"127.0.0.1:{responder.port}"]
        assert row["mode"] == "distributed" and row["identity"] == "ns.gslb.example.com"
        assert row["config_hash"] == digest  # one config file content: no config drift
        assert row["sync_age_s"] is not None and row["store_connected"]
        assert row["state_applied_at"] is not None and row["last_reload"] is None

    out = fleet.gslb("state")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for responder in fleet.responders:
        line = next(line for line in lines if line.startswith(responder.id + " "))
        assert line.split()[1] == "up"
        assert f"gslb.example.com {SERIAL}" in line
    assert "fleet problems" not in out.stdout

    samples = fleet.metrics()
    for responder in fleet.responders:
        assert (
            samples[("gslb_responder_zone_serial", (("responder", responder.id), ("zone", ZONE)))] == SERIAL
        )
        assert samples[("gslb_responder_up", (("responder", responder.id),))] == 1
        assert ("gslb_responder_sync_age_seconds", (("responder", responder.id),)) in samples
    assert samples[("gslb_zone_serial_drift", (("zone", ZONE),))] == 0


def test_a_drain_says_which_responders_applied_it(fleet: Fleet) -> None:
    fleet.wait_state(both_up(fleet), "both responders registered")
    out = fleet.gslb("drain", "region", "europe", "--reason", "fleet test", "--json")
    try:
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        applied = {a["id"] for a in result["responders"]["applied"]}
        assert applied == {r.id for r in fleet.responders}, result["responders"]
        assert result["responders"]["pending"] == [] and result["responders_reported"] is True
        state = fleet.get("/v1/state")
        (drain,) = state["drains"]
        assert set(drain["responders"]["applied"]) == applied and drain["responders"]["pending"] == []
        for row in state["responders"]:
            assert row["state_version"] >= result["state_version"]
    finally:
        assert fleet.gslb("undrain", "region", "europe").returncode == 0
    text = fleet.gslb("drain", "datacenter", "iad", "--reason", "fleet test")
    try:
        assert text.returncode == 0, text.stderr
        assert "(reported)" in text.stdout
        applied_line = next(line for line in text.stdout.splitlines() if "applied by" in line)
        for responder in fleet.responders:
            assert responder.id in applied_line
    finally:
        assert fleet.gslb("undrain", "datacenter", "iad").returncode == 0


def test_a_new_serial_on_one_responder_is_a_serial_drift(fleet: Fleet) -> None:
    fleet.wait_state(both_up(fleet), "both responders registered")
    a, b = fleet.responders
    original = b.zone.read_text()
    try:
        b.zone.write_text(original.replace(f"{SERIAL} ; serial", f"{SERIAL + 1} ; serial"))
        b.reload()
        state = fleet.wait_state(lambda s: ZONE in s["fleet"]["zone_serial_drift"], "serial drift flagged")
        assert state["fleet"]["zone_serial_drift"][ZONE] == {str(SERIAL): [a.id], str(SERIAL + 1): [b.id]}
        assert by_id(state)[b.id]["last_reload"]["ok"] is True
        assert by_id(state)[b.id]["last_reload"]["zones"] == {ZONE: SERIAL + 1}
        out = fleet.gslb("state")
        assert f"zone {ZONE}: serial drift: {SERIAL} on {a.id}; {SERIAL + 1} on {b.id}" in out.stdout
        assert fleet.metrics()[("gslb_zone_serial_drift", (("zone", ZONE),))] == 1
        assert f"serial {SERIAL + 1}" in b.log.read_text()  # the reload line names the serial
    finally:
        b.zone.write_text(original)
        b.reload()
        fleet.wait_state(lambda s: not s["fleet"]["zone_serial_drift"], "serial drift cleared")


def test_a_failed_reload_shows_on_state_and_in_metrics(fleet: Fleet) -> None:
    fleet.wait_state(both_up(fleet), "both responders registered")
    _, b = fleet.responders
    original = b.zone.read_text()
    key = ("gslb_responder_last_reload_success", (("responder", b.id),))
    try:
        b.zone.write_text(original.replace("IN SOA", "IN SOAP", 1))
        b.reload()
        state = fleet.wait_state(lambda s: s["fleet"]["failed_reloads"] == [b.id], "failed reload flagged")
        row = by_id(state)[b.id]
        assert row["last_reload"]["ok"] is False and str(b.zone) in row["last_reload"]["problem"]
        assert row["zones"] == {ZONE: SERIAL}  # still the previous zone
        assert any(p.startswith(f"responder {b.id}: last reload failed") for p in state["fleet"]["problems"])
        assert fleet.metrics()[key] == 0
        out = fleet.gslb("state")
        assert "FAILED" in next(line for line in out.stdout.splitlines() if line.startswith(b.id + " "))
        assert f"responder {b.id}: last reload failed" in out.stdout
    finally:
        b.zone.write_text(original)
        b.reload()
        fleet.wait_state(lambda s: s["fleet"]["failed_reloads"] == [], "reload works again")
    assert fleet.metrics()[key] == 1


def test_a_changed_config_file_is_a_config_drift(fleet: Fleet) -> None:
    fleet.wait_state(both_up(fleet), "both responders registered")
    a, b = fleet.responders
    original = b.config.read_text()
    try:
        b.config.write_text(original + "# changed on b only\n")
        b.reload()
        state = fleet.wait_state(lambda s: bool(s["fleet"]["config_drift"]), "config drift flagged")
        assert sorted(state["fleet"]["config_drift"].values()) == sorted([[a.id], [b.id]])
        assert fleet.metrics()[("gslb_config_drift", ())] == 1
    finally:
        b.config.write_text(original)
        b.reload()
        fleet.wait_state(lambda s: not s["fleet"]["config_drift"], "config drift cleared")


def test_a_responder_that_stops_heartbeating_is_stale(fleet: Fleet) -> None:
    fleet.wait_state(both_up(fleet), "both responders registered")
    _, b = fleet.responders
    b.proc.send_signal(signal.SIGSTOP)  # hung: no heartbeat, no clean stop
    try:
        state = fleet.wait_state(lambda s: s["fleet"]["stale"] == [b.id], "stale responder flagged")
        assert by_id(state)[b.id]["status"] == "stale"
        assert fleet.metrics()[("gslb_responder_up", (("responder", b.id),))] == 0
        assert "STALE" in fleet.gslb("state").stdout
    finally:
        b.proc.send_signal(signal.SIGCONT)
    fleet.wait_state(both_up(fleet), "fresh again")


def test_the_status_page_lists_both_responders(fleet: Fleet) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package chromium; bin/dev test installs it)")
    from playwright.sync_api import expect, sync_playwright

    fleet.wait_state(both_up(fleet), "both responders registered")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(fleet.api_url + "/")
            page.fill("#token-input", READ)
            page.click("#token-save")
            expect(page.locator("#whoami")).to_have_text("viewer (read)")
            for responder in fleet.responders:
                row = page.locator(f'#responders tr[data-responder="{responder.id}"]')
                expect(row).to_contain_text(f"gslb.example.com {SERIAL}")
                expect(row).to_contain_text(" s")  # the sync age column
                expect(row.locator(".badge")).to_have_text("up")
            expect(page.locator("#fleet-problems li")).to_have_count(0)
        finally:
            browser.close()
    assert errors == []


def test_answers_per_datacenter_reach_the_api(fleet: Fleet) -> None:
    a, _ = fleet.responders
    query = dns.message.make_query(
        "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption("89.160.20.112", 28)]
    )

    def ask_and_see(state: dict[str, Any]) -> bool:
        """Queries keep coming while we wait, so the rate is above zero whenever we look."""
        reply = dns.query.udp(query, "127.0.0.1", port=a.port, timeout=2)
        assert {r.to_text() for rrset in reply.answer for r in rrset} == {"192.0.2.10", "192.0.2.11"}
        row = by_id(state)[a.id]
        count: int = row["answers"].get("ams", 0)
        rate: float = row["answers_per_s"].get("ams", 0.0)
        return count >= 5 and rate > 0

    state = fleet.wait_state(ask_and_see, "answers and their rate counted")
    assert state["fleet"]["answers_per_s"]["ams"] > 0
    key = ("gslb_responder_answers_total", (("datacenter", "ams"), ("responder", a.id)))
    assert fleet.metrics()[key] >= 5
