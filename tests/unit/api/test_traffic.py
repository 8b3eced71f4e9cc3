"""The api's history of answers per second (`gslb.api.traffic`) and `GET /v1/traffic`."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

import pytest

from gslb.api.traffic import TRAFFIC, TrafficHistory
from gslb.config.model import Config
from gslb.fleet import Registration
from gslb.state.responders import STALE_AFTER_S, ResponderRecord
from tests.unit.api.harness import EUROPE_ECS, running

T0 = 1_800_000_000.0


def record(
    rid: str = "ns1:53",
    *,
    at: float,
    answers: dict[str, int],
    reported: dict[str, float] | None = None,
    pid: int = 100,
    stopped: bool = False,
) -> ResponderRecord:
    return ResponderRecord(
        id=rid,
        at=at,
        host="ns1",
        pid=pid,
        version="test",
        started_at=T0 - 100,
        answers=MappingProxyType(answers),
        answers_per_s=MappingProxyType(reported or {}),
        stopped_at=at if stopped else None,
    )


def by_dc(body: dict[str, Any]) -> dict[str, list[float | None]]:
    return {dc["name"]: dc["series"] for dc in body["datacenters"]}


def test_rates_are_differences_of_the_totals_over_the_heartbeat_times(config: Config) -> None:
    history = TrafficHistory()
    # The first sight of a responder: the rate it reports itself.
    history.add([record(at=T0, answers={"ams": 100}, reported={"ams": 7.0})], now=T0)
    # Then the difference: 50 answers in ams over 5 s of heartbeats, 20 in iad.
    history.add([record(at=T0 + 5, answers={"ams": 150, "iad": 20})], now=T0 + 5.2)
    # A drain of europe: ams stands still, iad takes it all.
    history.add([record(at=T0 + 10, answers={"ams": 150, "iad": 100})], now=T0 + 10.1)

    body = history.to_json(config, None, now=T0 + 10.1)

    assert body["at"] == [T0, T0 + 5.2, T0 + 10.1]
    series = by_dc(body)
    assert series["ams"] == [7.0, 10.0, 0.0]
    assert series["iad"] == [0.0, 4.0, 16.0]
    assert series["sin"] == [0.0, 0.0, 0.0]  # every configured datacenter, answered or not
    assert [dc["answers_per_s"] for dc in body["datacenters"]] == [0.0, 16.0, 0.0]
    assert body["total"]["series"] == [7.0, 14.0, 16.0]
    (responder,) = body["responders"]
    assert responder["id"] == "ns1:53"
    assert responder["series"] == [7.0, 14.0, 16.0]
    assert responder["by_datacenter"] == {"ams": 0.0, "iad": 16.0}
    assert responder["status"] == "gone"  # no current registration was given


def test_two_responders_add_up_per_datacenter(config: Config) -> None:
    history = TrafficHistory()
    history.add(
        [record("ns1:53", at=T0, answers={"ams": 0}), record("ns2:53", at=T0, answers={"ams": 0})], now=T0
    )
    records = [
        record("ns1:53", at=T0 + 5, answers={"ams": 10}),
        record("ns2:53", at=T0 + 4, answers={"ams": 40, "sin": 8}),
    ]
    history.add(records, now=T0 + 5)

    body = history.to_json(config, records, now=T0 + 5)

    assert by_dc(body)["ams"][-1] == 12.0  # 10/5 + 40/4
    assert by_dc(body)["sin"][-1] == 2.0
    assert {r["id"]: (r["status"], r["answers_per_s"]) for r in body["responders"]} == {
        "ns1:53": ("up", 2.0),
        "ns2:53": ("up", 12.0),
    }


def test_a_restarted_responder_is_not_a_negative_rate(config: Config) -> None:
    history = TrafficHistory()
    history.add([record(at=T0, answers={"ams": 5000})], now=T0)
    restarted = record(at=T0 + 5, answers={"ams": 30}, reported={"ams": 6.0}, pid=101)
    history.add([restarted], now=T0 + 5)

    assert by_dc(history.to_json(config, None, now=T0 + 5))["ams"] == [0.0, 6.0]


def test_stopped_counts_as_zero_stale_and_unreadable_as_unknown(config: Config) -> None:
    history = TrafficHistory()
    history.add([record(at=T0, answers={"ams": 0})], now=T0)
    history.add(None, now=T0 + 5)  # the store could not be read
    frozen = record(at=T0 + 6, answers={"ams": 60})
    history.add([frozen], now=T0 + 10)
    history.add([frozen], now=T0 + 10 + STALE_AFTER_S + 1)  # no heartbeat since: stale
    stopped = record(at=T0 + 30, answers={"ams": 60}, stopped=True)
    history.add([stopped], now=T0 + 31)
    history.add([stopped], now=T0 + 36)

    body = history.to_json(config, [stopped], now=T0 + 36)

    assert by_dc(body)["ams"] == [0.0, None, 10.0, None, 0.0, 0.0]
    assert body["total"]["series"] == [0.0, None, 10.0, None, 0.0, 0.0]
    assert body["responders"][0]["status"] == "stopped"


def test_the_history_keeps_the_window_only(config: Config) -> None:
    history = TrafficHistory(interval_s=5.0, window_s=60.0)
    for i in range(100):
        history.add([record(at=T0 + 5 * i, answers={"ams": 10 * i})], now=T0 + 5 * i)

    body = history.to_json(config, None, now=T0 + 5 * 99)

    assert len(history.samples) == 13
    assert body["at"][0] == T0 + 5 * 87 and body["at"][-1] == T0 + 5 * 99
    assert set(by_dc(body)["ams"]) == {2.0}


def test_a_datacenter_only_another_config_has_is_shown_too(config: Config) -> None:
    history = TrafficHistory()
    history.add([record(at=T0, answers={"fra": 1}, reported={"fra": 3.0})], now=T0)

    body = history.to_json(config, None, now=T0)

    assert [(dc["name"], dc["region"]) for dc in body["datacenters"]] == [
        ("ams", "europe"),
        ("iad", "americas"),
        ("sin", "asia-pacific"),
        ("fra", None),
    ]
    assert by_dc(body)["fra"] == [3.0]


def test_get_traffic_samples_the_registered_responders(config: Config) -> None:
    clock = [T0]

    async def main() -> tuple[int, int, dict[str, Any]]:
        async with running(config, clock=lambda: clock[0]) as h:
            registration = Registration(
                h.responder, h.sync, h.store, responder_id="ns1:53", embedded=True, now=lambda: clock[0]
            )
            assert await registration.write_once()
            app = h.client.app
            assert app is not None
            history = app[TRAFFIC]  # the app's own history: its sampler takes one sample at start
            async with asyncio.timeout(5):
                while not history.samples:
                    await asyncio.sleep(0.01)
            history.add(await h.store.responders(), now=clock[0])
            for _ in range(20):
                assert h.answer(EUROPE_ECS)  # ams answers
            clock[0] += 5
            assert await registration.write_once()
            history.add(await h.store.responders(), now=clock[0])
            unauthenticated, _ = await h.get("/v1/traffic", token=None)
            status, body = await h.get("/v1/traffic")
            return unauthenticated, status, body

    unauthenticated, status, body = asyncio.run(main())

    assert (unauthenticated, status) == (401, 200)
    assert body["interval_s"] == 5.0 and body["window_s"] == 900.0
    assert len(body["at"]) == 3  # the sampler's, then ours (its next is 5 s away)
    assert by_dc(body)["ams"][-1] == pytest.approx(4.0)  # 20 answers over 5 s
    assert by_dc(body)["iad"][-1] == 0.0
    (responder,) = body["responders"]
    assert responder["id"] == "ns1:53"
    assert responder["by_datacenter"] == {"ams": pytest.approx(4.0)}
