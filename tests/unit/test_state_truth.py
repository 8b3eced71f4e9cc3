"""State that tells the truth: drains of every level shown as drained (who, why, until when),
failure reasons in the `gslb state` table, no round-trip time for a failing check, and one
version name (`state version`, the store version) in `gslb state`, `/v1/state` and explain.

From the report the api builds (`build_state`, pure) to the text the CLI prints
(`render_state`), and `explain` over a live view (`_reason`, `render`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gslb.api.report import SyncInfo, build_state
from gslb.cli import render_state
from gslb.config.loader import load
from gslb.config.model import Config
from gslb.explain import explain, render
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.responder import Parts, build_parts
from tests.server_fixture import BASIC_CONFIG
from tests.unit.api.conftest import write_config

# One endpoint in ams and sin, two in iad: a drained endpoint can empty ams, or leave iad one.
CONFIG = BASIC_CONFIG.split("services:")[0] + (
    "services:\n"
    "  www.gslb.example.com:\n"
    "    ttl: 30\n"
    "    check: {{type: tcp, port: 80}}\n"
    "    datacenters:\n"
    "      ams: [192.0.2.10]\n"
    "      iad: [198.51.100.10, 198.51.100.11]\n"
    "      sin: [203.0.113.10]\n"
)
AMS = "www.gslb.example.com/ams/192.0.2.10"
IAD1 = "www.gslb.example.com/iad/198.51.100.10"
IAD2 = "www.gslb.example.com/iad/198.51.100.11"
SIN = "www.gslb.example.com/sin/203.0.113.10"
LINKOPING = "89.160.20.112/28"  # MaxMind's test database: nearest is ams
STORE_VERSION, VIEW_GENERATION = 14, 11

NOW = time.time()
UNTIL = NOW + 600.0


def hhmm(ts: float) -> str:
    """How the texts name a drain's expiry: local HH:MM, with the date when not today."""
    return r"(\d{4}-\d\d-\d\d )?" + time.strftime("%H:%M", time.localtime(ts))


def ok(rtt: float) -> EndpointState:
    return EndpointState(
        health=Health.UP, ewma_rtt_ms=rtt, checked_at=NOW - 0.5, last_ok=True, last_rtt_ms=rtt
    )


def refused(detail: str = "connection refused") -> EndpointState:
    # failures count as a full timeout in the EWMA: 499.9 ms is the 0.5 s timeout, not a round trip
    return EndpointState(
        health=Health.DOWN,
        fail_streak=5,
        ewma_rtt_ms=499.9,
        checked_at=NOW - 0.5,
        last_ok=False,
        detail=detail,
    )


HEALTHY = {AMS: ok(12.0), IAD1: ok(80.0), IAD2: ok(81.0), SIN: ok(150.0)}

ENDPOINT_DRAIN = Drain(DrainKind.ENDPOINT, AMS, "disk swap", "alice@127.0.0.1", NOW - 60, UNTIL)
REGION_DRAIN = Drain(DrainKind.REGION, "europe", "network work", "alice@10.0.0.1", NOW - 60, UNTIL)
DC_DRAIN = Drain(DrainKind.DATACENTER, "iad", "nic swap", "bob@10.0.0.2", NOW - 60, None)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load(write_config(tmp_path_factory.mktemp("truth"), CONFIG))


@pytest.fixture(scope="module")
def parts(config: Config) -> Iterator[Parts]:
    built = build_parts(config, HealthView())
    yield built
    built.locator.close()


def view_of(states: dict[str, EndpointState], drains: tuple[Drain, ...]) -> HealthView:
    return HealthView(VIEW_GENERATION, {e: s.health for e, s in states.items()}, drains)


def report(config: Config, states: dict[str, EndpointState], *drains: Drain) -> dict[str, Any]:
    """`GET /v1/state` for one prober's `states` and `drains`."""
    snapshot = Snapshot(STORE_VERSION, NOW, {"p1": ProberReport.of("p1", NOW - 0.2, states)}, drains)
    sync = SyncInfo("distributed", True, NOW - 0.3, STORE_VERSION, VIEW_GENERATION, (), 1.0, True)
    return build_state(config, view_of(states, drains), snapshot, snapshot, sync, now=NOW)


def row(text: str, *first: str) -> str:
    """The one line of `text` whose first words are `first`."""
    (line,) = [line for line in text.splitlines() if line.split()[: len(first)] == list(first)]
    return line


def datacenter(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(dc for dc in body["datacenters"] if dc["name"] == name)


# --- drains of every level -------------------------------------------------------------------------


def test_an_endpoint_drain_shows_as_drained_with_who_why_and_until(config: Config) -> None:
    body = report(config, HEALTHY, ENDPOINT_DRAIN)
    ams = datacenter(body, "ams")
    assert (ams["state"], ams["drain"]) == ("drained", None)  # not "down": the endpoint is held out
    assert [d["target"] for d in ams["endpoint_drains"]] == [AMS]
    assert ams["services"][0]["endpoints_drained"] == 1

    text = render_state(body, endpoints=True)
    line = row(text, "europe", "ams")
    assert line.split()[2:5] == ["drained", "0/1", "(1"], line
    assert re.search(rf"endpoint 192\.0\.2\.10 drained by alice: disk swap, until {hhmm(UNTIL)}$", line), line
    assert "down" not in line
    endpoint = row(text, AMS)
    assert endpoint.split()[1] == "drained", endpoint
    assert re.search(rf"drained +by alice: disk swap, until {hhmm(UNTIL)} +p1 up 12\.0 ms", endpoint), (
        endpoint
    )


def test_a_drained_endpoint_beside_an_up_one_leaves_its_datacenter_degraded(config: Config) -> None:
    drain = Drain(DrainKind.ENDPOINT, IAD2, "kernel update", "carol@10.0.0.3", NOW - 60, None)
    body = report(config, HEALTHY, drain)
    assert datacenter(body, "iad")["state"] == "degraded"
    line = row(render_state(body), "americas", "iad")
    assert line.split()[2:6] == ["degraded", "1/2", "(1", "drained)"], line
    assert line.endswith("endpoint 198.51.100.11 drained by carol: kernel update"), line


def test_region_and_datacenter_drains_say_who_why_and_until(config: Config) -> None:
    body = report(config, HEALTHY, REGION_DRAIN, DC_DRAIN)
    text = render_state(body, endpoints=True)
    europe = row(text, "europe", "ams")
    assert europe.split()[2] == "drained"
    assert re.search(rf"region europe by alice: network work, until {hhmm(UNTIL)}$", europe), europe
    americas = row(text, "americas", "iad")
    assert americas.split()[2] == "drained"
    assert americas.endswith("datacenter iad by bob: nic swap"), americas  # no expiry: no "until"
    for endpoint in (IAD1, IAD2):
        assert row(text, endpoint).split()[1:5] == ["drained", "datacenter", "iad", "by"]
    assert row(text, SIN).split()[1] == "up"
    # the drains list keeps its full form (the drain flow's text)
    assert "  datacenter iad: 'nic swap' by bob@10.0.0.2 at " in text


def test_a_long_drain_reason_is_cut_to_fit_and_kept_whole_in_json(config: Config) -> None:
    reason = "replacing the second power supply of rack 12 after the vendor's advisory"
    drain = Drain(DrainKind.DATACENTER, "iad", reason, "bob@10.0.0.2", NOW - 60, None)
    body = report(config, HEALTHY, drain)
    assert datacenter(body, "iad")["drain"]["reason"] == reason
    line = row(render_state(body), "americas", "iad")
    assert line.endswith("datacenter iad by bob: replacing the second power supply of…"), line


# --- failure reasons, and no round-trip time for a failing check -----------------------------------


def test_a_refusing_endpoint_shows_its_reason_and_no_rtt(config: Config) -> None:
    body = report(config, {**HEALTHY, SIN: refused()})
    (prober,) = next(e for e in body["endpoints"] if e["id"] == SIN)["probers"]
    assert (prober["ewma_rtt_ms"], prober["failure"]) == (None, "connection refused")
    assert prober["detail"] == "connection refused"

    text = render_state(body, endpoints=True)
    line = row(text, "asia-pacific", "sin")
    assert line.split()[2:4] == ["down", "0/1"], line
    assert line.endswith("203.0.113.10 down: connection refused"), line
    assert re.search(r"p1 down: connection refused 0\.5s ago$", row(text, SIN)), row(text, SIN)
    assert "499.9" not in text
    assert re.search(
        r"p1 up 150\.0 ms 0\.5s ago$", row(render_state(report(config, HEALTHY), endpoints=True), SIN)
    )


def test_a_long_failure_reason_is_shortened_in_the_table(config: Config) -> None:
    detail = "HTTP 503, expected 200-399: the upstream said it is overloaded and will be back later"
    body = report(config, {**HEALTHY, SIN: refused(detail)})
    text = render_state(body, endpoints=True)
    short = "HTTP 503, expected 200-399: the…"  # at most 40 characters, cut at a word
    assert row(text, "asia-pacific", "sin").endswith(f"203.0.113.10 down: {short}")
    assert f"p1 down: {short} 0.5s ago" in row(text, SIN)
    assert detail not in text


def test_the_reason_is_read_from_an_older_api_without_failure_and_no_rtt_shown() -> None:
    """An api from before this change sends the timeout as ewma_rtt_ms and no `failure`."""
    prober = {
        "prober": "p1",
        "health": "down",
        "ewma_rtt_ms": 499.9,
        "last_ok": False,
        "last_check_age_s": 1.0,
        "detail": "connection refused",
    }
    endpoint = {
        "id": SIN,
        "datacenter": "sin",
        "address": "203.0.113.10",
        "health": "down",
        "drained": False,
        "drain": None,
        "probers": [prober],
    }
    state = minimal(endpoints=[endpoint])
    text = render_state(state, endpoints=True)
    assert "499.9" not in text
    assert "p1 down 1.0s ago" in row(text, SIN)


# --- one version name ----------------------------------------------------------------------------


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "mode": "distributed",
        "state_version": STORE_VERSION,
        "view_generation": VIEW_GENERATION,
        "sync": {"age_s": 0.5, "connected": True, "stale": False},
        "regions": [],
        "datacenters": [],
        "services": [],
        "drains": [],
        "probers": [],
        **extra,
    }


def test_state_names_the_store_version_state_version(config: Config) -> None:
    body = report(config, HEALTHY)
    assert (body["state_version"], body["view_generation"]) == (STORE_VERSION, VIEW_GENERATION)
    first = render_state(body).splitlines()[0]
    assert first.startswith(
        f"gslb state: distributed mode, state version {STORE_VERSION}, last sync 0.3 s ago"
    )
    assert "store version" not in render_state(body)
    assert render_state(minimal()).startswith(f"gslb state: distributed mode, state version {STORE_VERSION},")


def test_explain_names_the_same_state_version_not_the_view_generation(parts: Parts) -> None:
    view = view_of(HEALTHY, ())
    result = explain(
        parts, view, "www.gslb.example.com", "10.0.0.1", ecs=LINKOPING, state_version=STORE_VERSION, now=NOW
    )
    assert (result.state_version, result.view_generation) == (STORE_VERSION, VIEW_GENERATION)
    json = result.to_json()
    assert (json["state_version"], json["view_generation"]) == (STORE_VERSION, VIEW_GENERATION)
    assert "health_version" not in json
    text = render(result)
    assert f"health     live, state version {STORE_VERSION}\n" in text
    assert f"state version {VIEW_GENERATION}" not in text

    offline = explain(parts, None, "www.gslb.example.com", "10.0.0.1", ecs=LINKOPING)
    assert offline.state_version is None
    assert "health     not loaded" in render(offline)


# --- explain --live: drains named, never counted as endpoints down ------------------------------------


def explained(parts: Parts, *drains: Drain, states: dict[str, EndpointState] = HEALTHY) -> str:
    view = view_of(states, drains)
    result = explain(
        parts, view, "www.gslb.example.com", "10.0.0.1", ecs=LINKOPING, state_version=STORE_VERSION, now=NOW
    )
    return render(result)


def test_explain_names_a_drained_endpoint_not_endpoints_up(parts: Parts) -> None:
    text = explained(parts, ENDPOINT_DRAIN)
    ams = row(text, "ams")
    assert re.search(
        rf"not eligible: 1 endpoint drained \(by alice: disk swap, until {hhmm(UNTIL)}\), needs 1 up$", ams
    ), ams
    assert "0/1" not in ams
    assert "choice     iad (failover)" in text


def test_explain_counts_a_drained_endpoint_apart_from_the_up_ones(parts: Parts) -> None:
    drain = Drain(DrainKind.ENDPOINT, IAD2, "kernel update", "carol@10.0.0.3", NOW - 60, None)
    text = explained(parts, drain, REGION_DRAIN)
    assert row(text, "iad").endswith("1/1 endpoints up, 1 endpoint drained (by carol: kernel update)")
    assert "choice     iad (failover)" in text
    # the chosen datacenter's endpoint lines say who drained it and why
    line = row(text, "*", "198.51.100.10")
    assert "in this answer" in line
    assert row(text, "198.51.100.11").endswith("drained (by carol: kernel update)")


def test_explain_names_who_why_and_until_for_region_and_datacenter_drains(parts: Parts) -> None:
    text = explained(parts, REGION_DRAIN, DC_DRAIN)
    assert re.search(
        rf"drained \(region europe by alice: network work, until {hhmm(UNTIL)}\)$", row(text, "ams")
    ), text
    assert row(text, "iad").endswith("drained (datacenter iad by bob: nic swap)")
    assert "choice     sin (failover)" in text


def test_explain_counts_down_endpoints_as_before(parts: Parts) -> None:
    text = explained(parts, states={**HEALTHY, AMS: refused()})
    assert row(text, "ams").endswith("not eligible: 0/1 endpoints up, needs 1 up")


def test_explain_a_drain_with_no_who_keeps_the_short_form(parts: Parts) -> None:
    drain = Drain(DrainKind.DATACENTER, "ams", "maintenance", "", NOW - 60, None)
    assert row(explained(parts, drain), "ams").endswith("drained (datacenter ams: maintenance)")


def test_a_state_body_without_endpoints_still_renders() -> None:
    assert "drains: none" in render_state(minimal())
