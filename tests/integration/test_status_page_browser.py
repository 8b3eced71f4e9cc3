"""The status page in a real headless Chromium (Debian's, driven by Playwright).

Starts an embedded `gslb serve` (it runs the api), opens `/`, enters the per-user token the
server created, sees the three datacenters on the offline map, drains the europe region with
the page's button and checks with DNS that the European client now gets iad; then undrains.
Skipped only when /usr/bin/chromium is missing (CI installs the Debian package).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.server_fixture import GslbProcess

pytestmark = pytest.mark.integration

EUROPE = "89.160.20.112"  # Linköping in MaxMind's test database: nearest is ams
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}


def answer(server: GslbProcess) -> set[str]:
    query = dns.message.make_query(
        "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(EUROPE, 28)]
    )
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
    return {r.to_text() for rrset in reply.answer for r in rrset}


def test_status_page_shows_the_map_and_drains_from_a_button(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package chromium; bin/dev test installs it)")
    from playwright.sync_api import expect, sync_playwright

    server = gslb_factory()
    token = (tmp_path / "state" / "gslb" / "api-token").read_text().strip()
    assert answer(server) == AMS
    errors: list[str] = []
    foreign: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith(server.api_url) else foreign.append(r.url))
            page.goto(server.api_url + "/")

            # No token yet: the page asks for one before showing anything.
            expect(page.locator("#token-dialog")).to_be_visible()
            page.fill("#token-input", token)
            page.click("#token-save")
            expect(page.locator("#whoami")).to_have_text("local (operate)")

            markers = page.locator("#markers .marker")
            expect(markers).to_have_count(3)
            for name in ("ams", "iad", "sin"):
                expect(page.locator(f'#markers [data-dc="{name}"]')).to_have_attribute("data-state", "up")
            assert len(page.locator("#land").get_attribute("d") or "") > 10_000  # the offline map is drawn
            expect(page.locator('#regions tr[data-region="europe"]')).to_contain_text("ams")

            page.click('button[data-action="drain"][data-kind="region"][data-name="europe"]')
            expect(page.locator("#drain-dialog")).to_be_visible()
            page.fill("#drain-reason", "browser test")
            page.click("#drain-submit")
            expect(page.locator('#markers [data-dc="ams"]')).to_have_attribute("data-state", "drained")
            expect(page.locator("#banner")).to_contain_text("Drained region europe")
            assert answer(server) == IAD
            expect(page.locator("#audit tbody")).to_contain_text("region:europe")
            expect(page.locator("#audit tbody")).to_contain_text("browser test")

            page.click('button[data-action="undrain"][data-kind="region"][data-name="europe"]')
            expect(page.locator('#markers [data-dc="ams"]')).to_have_attribute("data-state", "up")
            assert answer(server) == AMS
        finally:
            browser.close()

    assert errors == []
    assert foreign == []  # no CDN, nothing off this host
