"""The metrics collector: live values at scrape time, labels from the handler's counters."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from gslb.config.model import Config
from gslb.health.tracker import EndpointState
from gslb.health.view import Health
from tests.unit.api.harness import AMS, Harness, running

WWW = "www.gslb.example.com"
API4 = "api4.gslb.example.com"


async def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await h.client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_replies_are_counted_by_datacenter_and_when_all_down_branch(config: Config) -> None:
    async def check(h: Harness) -> None:
        assert h.answer() == AMS
        # Every www endpoint down (one prober, fresh): fail open to the nearest undrained one.
        down = {e.id: EndpointState(health=Health.DOWN) for e in config.services[WWW + "."].endpoints}
        await h.store.write_states("p1", down, heartbeat_at=time.time())
        h.sync.wake()
        deadline = time.monotonic() + 5
        while h.sync.current.health(f"{WWW}/ams/192.0.2.10") is not Health.DOWN:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert h.answer() == AMS  # fail_open: ams is still the nearest, though down
        await h.post("/v1/datacenters/ams/drain", {"reason": "x"})
        await h.post("/v1/datacenters/iad/drain", {"reason": "x", "force": True})
        assert h.answer(name=API4) == {"192.0.2.99"}  # fallback

        samples = await scrape(h)
        assert samples[("gslb_dns_answers_total", (("datacenter", "ams"), ("service", WWW)))] == 1
        assert samples[("gslb_when_all_down_answers_total", (("mode", "fail_open"), ("service", WWW)))] == 1
        assert samples[("gslb_when_all_down_answers_total", (("mode", "fallback"), ("service", API4)))] == 1
        assert samples[("gslb_dns_responses_total", (("rcode", "NOERROR"), ("service", WWW)))] == 2
        assert samples[("gslb_service_when_all_down", (("policy", "fail_open"), ("service", WWW)))] == 1
        assert samples[("gslb_service_when_all_down", (("policy", "fail_open"), ("service", API4)))] == 1
        health = (("datacenter", "ams"), ("endpoint", f"{WWW}/ams/192.0.2.10"), ("service", WWW))
        assert samples[("gslb_endpoint_health", health)] == 0
        assert samples[("gslb_endpoint_drained", health)] == 1
        assert (
            samples[
                (
                    "gslb_datacenter_state",
                    (("datacenter", "sin"), ("region", "asia-pacific"), ("state", "down")),
                )
            ]
            == 1
        )
        assert samples[("gslb_drains", (("kind", "datacenter"),))] == 2
        assert samples[("gslb_probers", (("freshness", "fresh"),))] == 1
        assert (
            samples[
                ("gslb_endpoint_prober_health", (("endpoint", f"{WWW}/sin/203.0.113.10"), ("prober", "p1")))
            ]
            == 0
        )
        assert samples[("gslb_api_drain_requests_total", (("action", "drain"), ("result", "applied")))] == 2

    async def main() -> None:
        async with running(config) as h:
            await check(h)

    asyncio.run(main())
