"""Done when: kill the only prober while an endpoint is down; it stays out, and the staleness is loud.

Real processes: redis-server, HTTP endpoints (lab/endpoint.py), `gslb probe`, `gslb serve`
(distributed mode, with `server.metrics_listen`) and `gslb api`. With ams-1 down, the prober
gets `kill -9`. From that moment the test asks the responder over and over: while waiting
for the positive signals (the api and the responder both report the prober stale and ams-1
held), and then 300 more times, over many `stale_after_s` periods (1 s here; before the hold,
the dead address was back about one period after the kill). Not one answer may contain
ams-1, nor lose ams-2. Then the staleness must show in `/v1/state`, `gslb state`, both
`/metrics` and (when Chromium is installed) the status page; the responder logs the hold
once. Restarting the prober ends the hold. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_health_e2e import AMS, ENDPOINTS, Lab
from tests.redis_fixture import RedisServer
from tests.server_fixture import free_ports, wait_http

pytestmark = pytest.mark.integration

READ = "gslb_read_" + "r" * 32
DEAD = "www.gslb.example.com/ams/127.0.0.11"
ALIVE = {"127.0.0.12"}
QUERIES_AFTER_SIGNALS = 300  # 0.05 s apart: well over ten stale_after_s periods of 1 s

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class HoldLab(Lab):
    """The health lab plus a `gslb api` and the responder's own metrics listener."""

    def __init__(self, tmp: Path, redis: RedisServer) -> None:
        super().__init__(tmp, redis)
        self.api_port, self.metrics_port = _two_more_ports(self.dns_port, self.check_port)

    def config(self, name: str, *, prober_id: str = "p1", ams_port: int | None = None) -> Path:
        path = super().config(name, prober_id=prober_id, ams_port=ams_port)
        text = path.read_text().replace(
            "server:\n", f'server:\n  metrics_listen: "127.0.0.1:{self.metrics_port}"\n', 1
        )
        path.write_text(text + f'api:\n  listen: "127.0.0.1:{self.api_port}"\n')
        return path

    def api(self, config: Path) -> subprocess.Popen[bytes]:
        proc = self.gslb("api", "-c", str(config), log="api")
        wait_http(self.api_port, proc, self.tmp / "api.log")
        return proc

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            self._get(f"http://127.0.0.1:{self.api_port}/v1/state", token=READ)
        )
        return state

    def metrics(self, port: int) -> Samples:
        text = self._get(f"http://127.0.0.1:{port}/metrics").decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def _get(self, url: str, token: str | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            body: bytes = response.read()
        return body

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))


def _two_more_ports(*taken: int) -> tuple[int, int]:
    ports = [p for p in free_ports(len(taken) + 2) if p not in taken]
    return ports[0], ports[1]


@pytest.fixture
def lab(tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HoldLab]:
    monkeypatch.setenv("GSLB_API_TOKENS", f"viewer:read:{READ}")  # inherited by `gslb api`
    lab = HoldLab(tmp_path, redis_server)
    for name in ENDPOINTS:
        lab.endpoint_up(name)
    try:
        yield lab
    finally:
        lab.close()


def ask_alive(lab: HoldLab) -> None:
    """One query: ams-1 is not in the answer and ams-2 still is."""
    assert lab.ask() == ("NOERROR", ALIVE)


def query_until(lab: HoldLab, done: Callable[[], bool], *, limit: int = 400) -> None:
    """Keep asking (every answer checked) until `done()`; fail after `limit` rounds."""
    for _ in range(limit):
        ask_alive(lab)
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"no positive signal after {limit} rounds\n{lab.logs()}")


def test_killing_the_only_prober_holds_the_dead_endpoint_out_and_says_so(lab: HoldLab) -> None:
    config = lab.config("gslb")
    prober = lab.prober(config)
    lab.responder(config)
    lab.api(config)
    lab.wait_for(AMS)
    lab.endpoint_down("ams-1")
    lab.wait_for(ALIVE)

    prober.send_signal(signal.SIGKILL)
    prober.wait(5)

    # Positive signals, asking all the while: the api sees the hold, and so does the responder.
    query_until(lab, lambda: lab.state()["hold"]["holding"])
    query_until(lab, lambda: lab.metrics(lab.metrics_port).get(("gslb_health_held", ())) == 1.0)
    for _ in range(QUERIES_AFTER_SIGNALS):
        ask_alive(lab)
        time.sleep(0.05)

    state = lab.state()
    assert state["hold"]["probers"] == ["p1"]
    assert state["hold"]["endpoints"] == {DEAD: "down"}
    assert state["stale_probers"] == ["p1"]
    (p1,) = state["probers"]
    assert p1["stale"] is True and p1["stale_since"] == state["hold"]["since"]
    endpoint = next(e for e in state["endpoints"] if e["id"] == DEAD)
    assert (endpoint["health"], endpoint["held"]) == ("down", True)

    cli = subprocess.run(
        [sys.executable, "-m", "gslb", "state", "--endpoints"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "GSLB_API_URL": f"http://127.0.0.1:{lab.api_port}",
            "GSLB_API_TOKEN": READ,
            "XDG_STATE_HOME": str(lab.tmp / "cli-state"),
        },
    )
    assert cli.returncode == 0, cli.stderr
    assert ", HOLDING LAST VERDICTS" in cli.stdout.splitlines()[0]
    assert "holding the last verdicts of p1 forever" in cli.stdout
    assert f"held out of answers: {DEAD} down" in cli.stdout
    assert f"(STALE since {p1['stale_since']})" in cli.stdout

    for port in (lab.api_port, lab.metrics_port):
        samples = lab.metrics(port)
        assert samples[("gslb_prober_stale", (("prober", "p1"),))] == 1
        assert samples[("gslb_health_held", ())] == 1
        assert samples[("gslb_endpoints_held", (("health", "down"),))] == 1
        assert samples[("gslb_endpoint_held", (("endpoint", DEAD),))] == 1
        labels = (("datacenter", "ams"), ("endpoint", DEAD), ("service", "www.gslb.example.com"))
        assert samples[("gslb_endpoint_health", labels)] == 0

    if CHROMIUM.exists():
        check_status_page(lab)

    responder_log = (lab.tmp / "responder.log").read_text(errors="replace")
    holds = [line for line in responder_log.splitlines() if "holding the last verdicts of p1" in line]
    assert len(holds) == 1, holds  # one line for the change, not one per poll
    assert f"1 endpoint held: {DEAD} down" in holds[0]
    assert f"endpoint {DEAD} is up" not in responder_log

    # A prober back (same id: it resumes its counters) ends the hold; ams-1 returns when it is up.
    lab.prober(config, log="prober-again")
    query_until(lab, lambda: not lab.state()["hold"]["holding"])
    lab.endpoint_up("ams-1")
    lab.wait_for(AMS)


def check_status_page(lab: HoldLab) -> None:
    """The page's summary line names the hold and the prober table says since when."""
    from playwright.sync_api import expect, sync_playwright  # only with Chromium

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{lab.api_port}/")
            page.fill("#token-input", READ)
            page.click("#token-save")
            expect(page.locator("#summary")).to_contain_text("holding the last verdicts of p1")
            expect(page.locator("#summary")).to_contain_text(f"held: {DEAD} down")
            expect(page.locator("#probers tbody")).to_contain_text("stale since")
            expect(page.locator("#endpoints tbody")).to_contain_text("held")
        finally:
            browser.close()
    assert errors == []
