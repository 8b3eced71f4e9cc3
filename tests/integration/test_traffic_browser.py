"""The status page's traffic view and its truthful state, in a real headless Chromium.

Done when (issue 11): "The traffic view shows a drain moving answers from one datacenter to
another in a headless-browser test". An embedded `gslb serve` (it runs the api) gets a small
steady query load from a thread here: every query carries an ECS subnet that MaxMind's test
database places in Linköping, so ams answers all of it. The page shows ams's rate above zero
on the map and in its chart; the test drains the europe region with the page's button and
waits until the page shows ams at zero and iad (the next nearest) above zero. Figures are read
from data-* attributes of the page's DOM; every wait has a deadline and no timing is asserted.

Then the page tells the truth about drains and failures: a read token sees no Drain buttons;
an endpoint drain of a datacenter's only endpoint shows that datacenter as drained with who,
why and until when (not "down 0/1"); an endpoint whose check fails shows the failure reason
and no round-trip time. Skipped only when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.server_fixture import BASIC_CONFIG, GslbProcess, free_port

pytestmark = pytest.mark.integration

READ = "gslb_trafficread_" + "r" * 32
OPERATE = "gslb_trafficop_" + "o" * 32
ENV = {"GSLB_API_TOKENS": f"viewer:read:{READ},ops:operate:{OPERATE}"}
EUROPE = "89.160.20.112"  # Linköping in MaxMind's test database: nearest is ams, then iad
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}
DEADLINE_MS = 60_000  # a hang guard, not a bound: the api samples every 5 s

# ams's and iad's only endpoints need no check; sin's is checked on a port nobody listens on.
TRUTH_CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip:
  database: {geoip}/GeoIP2-City-Test.mmdb
  default_order: [iad, ams, sin]
services:
  www.gslb.example.com:
    ttl: 30
    datacenters:
      ams: [192.0.2.10]
      iad: [198.51.100.10]
      sin:
        check: {{type: tcp, port: CLOSED_PORT, interval_s: 0.5, timeout_s: 0.5, rise: 1, fall: 1}}
        endpoints: [127.0.0.1]
"""
AMS_ENDPOINT = "www.gslb.example.com/ams/192.0.2.10"
SIN_ENDPOINT = "www.gslb.example.com/sin/127.0.0.1"


class Load:
    """A small steady query load from a thread: one query every `pause_s`, the last answer kept."""

    def __init__(self, server: GslbProcess, *, pause_s: float = 0.02) -> None:
        self.server = server
        self.pause_s = pause_s
        self.stop = threading.Event()
        self.sent = 0
        self.last: set[str] = set()
        self.thread = threading.Thread(target=self.run, name="query-load", daemon=True)

    def run(self) -> None:
        query = dns.message.make_query(
            "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(EUROPE, 28)]
        )
        while not self.stop.is_set():
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=self.server.port, timeout=1)
                self.last = {r.to_text() for rrset in reply.answer for r in rrset}
            except dns.exception.Timeout:
                pass
            self.sent += 1
            self.stop.wait(self.pause_s)  # pacing the load, not waiting for a condition


@contextmanager
def load(server: GslbProcess) -> Iterator[Load]:
    running = Load(server)
    running.thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(5)


def post(server: GslbProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        server.api_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {OPERATE}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# What data-rate holds: a number as JavaScript writes it, "" when unknown. (The page's CSP has
# no 'unsafe-eval', so the waits match attributes rather than evaluate script in the page.)
POSITIVE = re.compile(r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)(?:e[-+]?[0-9]+)?$")
ZERO = "0"


def chart(dc: str) -> str:
    return f'#traffic [data-traffic-dc="{dc}"]'


def marker(dc: str) -> str:
    return f'#markers [data-dc="{dc}"]'


def test_traffic_view_shows_a_region_drain_moving_answers(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package chromium; bin/dev test installs it)")
    from playwright.sync_api import expect, sync_playwright

    server = gslb_factory(BASIC_CONFIG, env=ENV)
    errors: list[str] = []
    foreign: list[str] = []

    with load(server) as queries, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith(server.api_url) else foreign.append(r.url))
            page.goto(server.api_url + "/")
            page.fill("#token-input", OPERATE)
            page.click("#token-save")
            expect(page.locator("#whoami")).to_have_text("ops (operate)")

            def rates(dc: str, value: str | re.Pattern[str]) -> None:
                """Until the page shows `value` answers per second for `dc`, in its chart and on the map."""
                for where in (chart(dc), marker(dc)):
                    expect(page.locator(where)).to_have_attribute("data-rate", value, timeout=DEADLINE_MS)

            # Before: every answer comes from ams, on the chart and on the map; iad answers none.
            rates("ams", POSITIVE)
            rates("iad", ZERO)
            rates("sin", ZERO)
            assert queries.last == AMS
            expect(page.locator(f"{chart('ams')} svg.spark")).to_have_count(1)

            page.click('button[data-action="drain"][data-kind="region"][data-name="europe"]')
            page.fill("#drain-reason", "traffic test")
            page.click("#drain-submit")
            expect(page.locator("#banner")).to_contain_text("Drained region europe (state version")

            # After: ams falls to zero and iad, the next nearest, takes the answers.
            rates("ams", ZERO)
            rates("iad", POSITIVE)
            assert queries.last == IAD
            # iad's chart has drawn its rise, and ams's chart marks the drain that caused the fall.
            expect(page.locator(f"{chart('iad')} svg.spark path.line")).not_to_have_count(0)
            expect(page.locator(f"{chart('ams')} svg.spark line.mark.drain")).to_have_count(1)
            expect(page.locator('#datacenters tr[data-datacenter="ams"]')).to_have_attribute(
                "data-state", "drained"
            )
            expect(page.locator("#traffic [data-traffic-total]")).to_have_attribute("data-rate", POSITIVE)
        finally:
            browser.close()

    assert errors == []
    assert foreign == []  # no CDN, nothing off this host


def test_the_page_shows_drains_and_failures_truthfully_and_no_buttons_to_a_read_token(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package chromium; bin/dev test installs it)")
    from playwright.sync_api import expect, sync_playwright

    server = gslb_factory(TRUTH_CONFIG.replace("CLOSED_PORT", str(free_port())), env=ENV)
    drained = post(
        server, f"/v1/endpoints/{AMS_ENDPOINT}/drain", {"reason": "disk swap", "expires_in_s": 3600}
    )
    assert drained["drain"]["who"].startswith("ops@")
    errors: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(server.api_url + "/")
            page.fill("#token-input", READ)
            page.click("#token-save")
            expect(page.locator("#whoami")).to_have_text("viewer (read)")
            expect(page.locator('#regions tr[data-region="europe"]')).to_contain_text("ams")

            # A read token may not drain: no Drain or Undrain button anywhere.
            expect(page.locator("#datacenters tbody tr")).to_have_count(3)
            expect(page.locator("#endpoints tbody tr")).to_have_count(3)
            expect(page.locator("button[data-action]")).to_have_count(0)

            # ams's only endpoint is drained: ams reads drained, with who, why and until when.
            ams = page.locator('#datacenters tr[data-datacenter="ams"]')
            expect(ams).to_have_attribute("data-state", "drained")
            expect(ams.locator(".badge")).to_have_text("drained")
            expect(ams).to_contain_text("1 drained of 1")
            expect(ams).to_contain_text(f"endpoint {AMS_ENDPOINT} drained by ops@")
            expect(ams).to_contain_text("“disk swap”, until ")
            expect(ams).not_to_contain_text("down")
            expect(page.locator('#markers [data-dc="ams"]')).to_have_attribute("data-state", "drained")
            endpoint = page.locator(f'#endpoints tr[data-endpoint="{AMS_ENDPOINT}"]')
            expect(endpoint).to_have_attribute("data-state", "drained")
            expect(endpoint).to_contain_text("drained by ops@")
            expect(endpoint).to_contain_text("“disk swap”")

            # sin's endpoint refuses connections: its reason is in the table, and no RTT.
            sin = page.locator(f'#endpoints tr[data-endpoint="{SIN_ENDPOINT}"]')
            expect(sin).to_have_attribute("data-health", "down")
            reason = sin.locator("[data-reason]")
            expect(reason).to_have_count(1)
            expect(reason).to_contain_text("refused")
            expect(sin).not_to_contain_text(" ms")
            expect(page.locator("#summary")).to_contain_text("state version")
        finally:
            browser.close()

    assert errors == []
