"""Loud staleness: a dead prober's held verdicts in `/v1/state`, `gslb state` and `/metrics`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gslb.cli import render_state
from gslb.config.model import Config
from gslb.health.tracker import EndpointState
from gslb.health.view import Health
from tests.unit.api.harness import Harness, running

DEAD = "www.gslb.example.com/ams/192.0.2.10"


async def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await h.client.get("/metrics")
    assert response.status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_dead_probers_verdicts_hold_and_say_so_everywhere(config: Config) -> None:
    async def main() -> tuple[dict[str, Any], dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        async with running(config) as h:
            # The only prober saw ams-1 die, then died itself a minute ago (stale_after_s is 5).
            died = time.time() - 60.0
            await h.store.write_states("p1", {DEAD: EndpointState(health=Health.DOWN)}, heartbeat_at=died)
            h.sync.wake(full=True)
            await until(lambda: h.sync.staleness.hold is not None)
            assert h.sync.current.health(DEAD) is Health.DOWN
            assert h.answer() == {"192.0.2.11"}  # not resurrected by the prober's death
            status, state = await h.get("/v1/state")
            assert status == 200
            return state, await scrape(h)

    state, samples = asyncio.run(main())

    hold = state["hold"]
    assert (hold["holding"], hold["released"], hold["probers"], hold["hold_stale_s"]) == (
        True,
        False,
        ["p1"],
        None,
    )
    assert hold["endpoints"] == {DEAD: "down"}
    assert hold["since"] is not None and hold["age_s"] >= 50.0
    assert state["stale_probers"] == ["p1"]
    (prober,) = state["probers"]
    assert prober["stale"] is True and prober["stale_since"] == hold["since"]
    endpoint = next(e for e in state["endpoints"] if e["id"] == DEAD)
    assert (endpoint["health"], endpoint["held"], endpoint["votes_held"]) == ("down", True, True)
    assert endpoint["votes"] == {"p1": "down"}
    other = next(e for e in state["endpoints"] if e["id"] == "www.gslb.example.com/ams/192.0.2.11")
    assert (other["health"], other["held"]) == ("up", False)

    text = render_state(state, endpoints=True)
    lines = text.splitlines()
    assert lines[0].endswith(", HOLDING LAST VERDICTS")
    assert lines[1].startswith(f"no fresh prober since {hold['since']} (")
    assert lines[1].endswith(": holding the last verdicts of p1 forever")
    assert lines[2] == f"held out of answers: {DEAD} down"
    assert any(line.startswith(DEAD) and "down (held)" in line for line in lines)
    assert any(
        line.startswith("  p1: heartbeat ") and f"(STALE since {hold['since']})" in line for line in lines
    )

    assert samples[("gslb_prober_stale", (("prober", "p1"),))] == 1
    assert samples[("gslb_prober_stale_since_timestamp_seconds", (("prober", "p1"),))] > 0
    assert samples[("gslb_health_held", ())] == 1
    assert samples[("gslb_health_held_seconds", ())] >= 50.0
    assert samples[("gslb_endpoints_held", (("health", "down"),))] == 1
    assert samples[("gslb_endpoints_held", (("health", "degraded"),))] == 0
    assert samples[("gslb_endpoint_held", (("endpoint", DEAD),))] == 1
    assert samples[("gslb_probers", (("freshness", "stale"),))] == 1


def test_with_a_fresh_prober_nothing_is_held(config: Config) -> None:
    async def main() -> tuple[dict[str, Any], dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        async with running(config) as h:
            await h.store.write_states(
                "p1", {DEAD: EndpointState(health=Health.DOWN)}, heartbeat_at=time.time()
            )
            await h.store.write_states("p2", {DEAD: EndpointState(health=Health.DOWN)}, heartbeat_at=0.0)
            h.sync.wake(full=True)
            await until(
                lambda: h.sync.current.health(DEAD) is Health.DOWN and h.sync.stale_probers == ("p2",)
            )
            return (await h.get("/v1/state"))[1], await scrape(h)

    state, samples = asyncio.run(main())
    assert state["hold"]["holding"] is False and state["hold"]["since"] is None
    assert state["stale_probers"] == ["p2"]
    endpoint = next(e for e in state["endpoints"] if e["id"] == DEAD)
    assert (endpoint["health"], endpoint["held"], endpoint["votes"]) == ("down", False, {"p1": "down"})
    text = render_state(state)
    assert "HOLDING" not in text and "held out of answers" not in text
    assert samples[("gslb_health_held", ())] == 0
    assert samples[("gslb_prober_stale", (("prober", "p1"),))] == 0
    assert samples[("gslb_prober_stale", (("prober", "p2"),))] == 1
    assert ("gslb_endpoint_held", (("endpoint", DEAD),)) not in samples


def test_a_released_hold_is_shown_as_such() -> None:
    state: dict[str, Any] = {
        "mode": "distributed",
        "state_version": 3,
        "view_generation": 2,
        "sync": {"age_s": 0.5, "connected": True, "stale": False},
        "hold": {
            "holding": False,
            "since": "2026-11-30T09:00:00.000Z",
            "age_s": 7300.0,
            "probers": ["p1"],
            "endpoints": {DEAD: "down"},
            "released": True,
            "hold_stale_s": 7200.0,
        },
        "regions": [],
        "datacenters": [],
        "services": [],
        "drains": [],
        "probers": [],
    }
    lines = render_state(state).splitlines()
    assert "HOLDING" not in lines[0]
    assert lines[1] == (
        "no fresh prober since 2026-11-30T09:00:00.000Z (7300.0 s): the held verdicts were RELEASED "
        f"after prober.hold_stale_s (7200 s); every endpoint counts as up (were held: {DEAD} down)"
    )
