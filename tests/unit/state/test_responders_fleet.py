"""The fleet view: drift and staleness rules, a live registration, and what the api shows.

In-process and real: a `Responder` built from a config on disk, the `MemoryStore`, the health
sync and the api app (tests/unit/api/harness.py); only time is a parameter where a rule
depends on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dns.edns
import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gslb.api.report import (
    applied_split,
    config_drift,
    drain_responders,
    fleet_json,
    responder_status,
    serial_drift,
)
from gslb.cli import render_state
from gslb.config.loader import load
from gslb.fleet import AnswerCounter, Registration, responder_id
from gslb.health.view import Drain, DrainKind
from gslb.responder import Responder
from gslb.state.redis_store import RedisStore
from gslb.state.responders import ReloadResult, ResponderRecord, drain_id
from tests.unit.api.conftest import write_config
from tests.unit.api.harness import EUROPE_ECS, Harness, running

NOW = 10_000.0
SERIAL = 2026112701  # zones/gslb.example.com.zone


def rec(
    name: str,
    *,
    at: float = NOW,
    serial: int = 1,
    digest: str = "h1",
    zone: str = "shop.example.net.",
    store_connected: bool = True,
    **kw: Any,
) -> ResponderRecord:
    return ResponderRecord(
        id=name,
        at=at,
        host=name,
        pid=1,
        version="0.1.0",
        started_at=1.0,
        config_hash=digest,
        serials=MappingProxyType({zone: serial}),
        last_sync_at=at,
        store_connected=store_connected,
        **kw,
    )


# -- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "status"),
    [
        (rec("a", at=NOW - 1), "up"),
        (rec("a", at=NOW - 6), "stale"),
        (rec("a", at=NOW - 6, stopped_at=NOW - 6), "stopped"),
    ],
    ids=["fresh", "stale", "stopped"],
)
def test_status_of_a_responder(record: ResponderRecord, status: str) -> None:
    assert responder_status(record, now=NOW).value == status


def test_serial_and_config_drift_are_found_among_live_responders() -> None:
    same = [rec("ns1"), rec("ns2")]
    assert serial_drift(same) == {} and config_drift(same) == {}
    drifting = [rec("ns1", serial=2025010102), rec("ns2", serial=2025010101, digest="h2"), rec("ns3")]
    assert serial_drift(drifting) == {
        "shop.example.net.": {1: ["ns3"], 2025010101: ["ns2"], 2025010102: ["ns1"]}
    }
    assert config_drift(drifting) == {"h1": ["ns1", "ns3"], "h2": ["ns2"]}
    # a stale responder with an old serial is flagged as stale, not as drift
    fleet = fleet_json([rec("ns1"), rec("ns2", serial=9, at=NOW - 60)], now=NOW, poll_interval_s=1.0)
    assert fleet["zone_serial_drift"] == {} and fleet["stale"] == ["ns2"]
    assert fleet["problems"] == ["responder ns2: no heartbeat for 60 s (stale)"]


def test_fleet_problems_say_what_is_wrong_in_words() -> None:
    failed = ReloadResult(NOW - 5, False, "gslb.yaml is invalid (1 problem):\n  - zones: bad", "h9")
    records = [
        rec("ns1", serial=2025010102),
        rec("ns2", serial=2025010101, digest="h2", last_reload=failed),
        rec("ns3", store_connected=False),
    ]
    fleet = fleet_json(records, now=NOW, poll_interval_s=1.0)
    assert fleet["failed_reloads"] == ["ns2"]
    problems = "\n".join(fleet["problems"])
    assert "responder ns2: last reload failed at" in problems
    assert "still serving the previous config: gslb.yaml is invalid (1 problem):" in problems
    assert "responder ns3: cannot read the state store" in problems
    assert "zone shop.example.net.: serial drift: 1 on ns3; 2025010101 on ns2; 2025010102 on ns1" in problems
    assert "config drift: the responders run different config files: h1 on ns1, ns3; h2 on ns2" in problems
    unknown = fleet_json(None, now=NOW, poll_interval_s=1.0)
    assert unknown["known"] is False and "state store could not be read" in unknown["problems"][0]


def test_which_responders_applied_a_version_or_a_drain() -> None:
    drain = Drain(DrainKind.REGION, "europe", "x", created_at=NOW - 2)
    key = drain_id("region", "europe", NOW - 2)
    records = [
        rec("ns1", state_version=7, state_applied_at=NOW - 1, drains=(key,)),
        rec("ns2", state_version=6),
        rec("ns3", at=NOW - 30, state_version=5),
        rec("ns4", stopped_at=NOW - 1),
    ]
    split = applied_split(records, 7, now=NOW)
    assert [a["id"] for a in split["applied"]] == ["ns1"]
    assert [(p["id"], p["state_version"]) for p in split["pending"]] == [("ns2", 6)]
    assert [s["id"] for s in split["not_reporting"]] == ["ns3"]
    assert drain_responders(drain, records, now=NOW) == {"applied": ["ns1"], "pending": ["ns2"]}


# -- a live registration ----------------------------------------------------------------------


def set_serial(zone: Path, serial: int) -> None:
    text = zone.read_text()
    zone.write_text(text.replace(f"{SERIAL} ; serial", f"{serial} ; serial"))


async def registered(h: Harness, stack: AsyncExitStack, *, interval_s: float = 1.0) -> Registration:
    registration = Registration(
        h.responder,
        h.sync,
        h.store,
        responder_id=responder_id(h.responder.config),
        embedded=True,
        interval_s=interval_s,
    )
    return await stack.enter_async_context(registration)


async def record_of(h: Harness, name: str) -> ResponderRecord:
    return next(r for r in await h.store.responders() if r.id == name)


async def wait_record(h: Harness, name: str, predicate: Callable[[ResponderRecord], bool]) -> ResponderRecord:
    """The responder's record once `predicate` holds for it (fails after 10 s)."""
    async with asyncio.timeout(10):
        while not predicate(record := await record_of(h, name)):
            await asyncio.sleep(0.01)
    return record


def ask(responder: Responder) -> None:
    query = dns.message.make_query(
        "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(EUROPE_ECS.split("/")[0], 28)]
    )
    assert responder.parts.handler.handle(query.to_wire(), "127.0.0.1") is not None


def test_a_responder_registers_what_it_serves_and_reports_a_new_version_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    config = load(path)

    async def main() -> None:
        async with running(config) as h, AsyncExitStack() as stack:
            # No heartbeat comes during the test: every write after the first is a wake-up.
            registration = await registered(h, stack, interval_s=3600.0)
            me = registration.id
            assert me == f"{registration.host}:5353"
            record = await record_of(h, me)
            assert dict(record.serials) == {"gslb.example.com.": SERIAL}
            assert record.config_hash == hashlib.sha256(path.read_bytes()).hexdigest()
            assert (record.mode, record.identity, record.listen) == (
                "embedded",
                "test-node",
                ("127.0.0.1:5353",),
            )
            assert record.last_reload is None and record.store_connected
            # A drain: the record says it is applied as soon as the sync has read it.
            drain = Drain(DrainKind.REGION, "europe", "t", created_at=time.time())
            version = await h.store.add_drain(drain)
            h.sync.wake()
            wanted = drain_id("region", "europe", drain.created_at)
            record = await wait_record(h, me, lambda r: r.state_version >= version)
            assert wanted in record.drains and record.state_applied_at is not None
        # a clean stop leaves a record marked stopped
        assert (await h.store.responders())[0].stopped_at is not None

    asyncio.run(main())


def test_reloads_are_recorded_with_serials_or_the_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    zone = tmp_path / "gslb.example.com.zone"

    async def main() -> None:
        async with running(load(path)) as h, AsyncExitStack() as stack:
            registration = await registered(h, stack, interval_s=3600.0)
            set_serial(zone, 2026112702)
            assert await h.responder.reload()
            registration.wake()  # as the runtime's SIGHUP handler does
            record = await wait_record(h, registration.id, lambda r: r.last_reload is not None)
            assert record.last_reload is not None and record.last_reload.ok
            assert dict(record.last_reload.serials) == {"gslb.example.com.": 2026112702}
            assert dict(record.serials) == {"gslb.example.com.": 2026112702}

            zone.write_text(zone.read_text().replace("IN SOA", "IN SOAP", 1))
            assert not await h.responder.reload()
            failed = h.responder.last_reload
            assert failed is not None and not failed.ok and str(zone) in failed.problem
            assert dict(h.responder.reloads) == {"ok": 1, "failed": 1}
            assert h.responder.serials() == {"gslb.example.com.": 2026112702}  # still the last good zone

            h.api_state.context.responder = h.responder  # as the runtime sets it
            response = await h.client.get("/metrics")
            text = await response.text()
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            assert samples[("gslb_reload_total", (("result", "failed"),))] == 1
            assert samples[("gslb_reload_total", (("result", "ok"),))] == 1
            assert samples[("gslb_zone_serial", (("zone", "gslb.example.com."),))] == 2026112702
            assert samples[("gslb_config_last_reload_success", ())] == 0

    asyncio.run(main())


def test_answer_counts_carry_over_a_reload_and_give_a_rate(tmp_path: Path) -> None:
    path = write_config(tmp_path)

    async def main() -> None:
        async with running(load(path)) as h:
            counter = AnswerCounter()
            totals, rates = counter.sample(h.responder.parts.handler, now=100.0)
            assert (totals, rates) == ({}, {})
            for _ in range(3):
                ask(h.responder)
            assert await h.responder.reload()  # a new handler, counting from 0
            ask(h.responder)
            totals, rates = counter.sample(h.responder.parts.handler, now=102.0)
            assert totals == {"ams": 4}
            assert rates == {"ams": 2.0}

    asyncio.run(main())


def test_state_cli_and_metrics_show_the_fleet_and_its_drift(tmp_path: Path) -> None:
    config = load(write_config(tmp_path))

    async def main() -> tuple[dict[str, Any], str, dict[str, Any]]:
        async with running(config) as h, AsyncExitStack() as stack:
            await registered(h, stack)
            other = rec("ns2:53", at=time.time(), digest=h.responder.config_hash, zone="gslb.example.com.")
            await h.store.write_responder(other)
            h.api_state.responders = None  # not the 1 s cache
            status, state = await h.get("/v1/state")
            assert status == 200
            response = await h.client.get("/metrics")
            # a drain reports which responders applied it
            code, drained = await h.post("/v1/regions/europe/drain", {"reason": "t"})
            assert code == 200, drained
            return state, await response.text(), drained

    state, metrics, drained = asyncio.run(main())
    ids = [r["id"] for r in state["responders"]]
    assert len(ids) == 2 and "ns2:53" in ids
    me = next(i for i in ids if i != "ns2:53")
    drift = {"gslb.example.com.": {"1": ["ns2:53"], str(SERIAL): [me]}}
    assert state["fleet"]["zone_serial_drift"] == drift
    text = render_state(state)
    assert "RESPONDER" in text and "ns2:53" in text and "gslb.example.com 1" in text
    assert f"zone gslb.example.com.: serial drift: 1 on ns2:53; {SERIAL} on {me}" in text
    assert 'gslb_zone_serial_drift{zone="gslb.example.com."} 1.0' in metrics
    assert 'gslb_responder_zone_serial{responder="ns2:53",zone="gslb.example.com."} 1.0' in metrics
    assert [a["id"] for a in drained["responders"]["applied"]] == [me]  # this responder applied it
    assert [p["id"] for p in drained["responders"]["pending"]] == ["ns2:53"]  # that one is no process
    assert drained["responders_reported"] is False  # so responders_by stays a prediction


def test_two_processes_under_one_id_are_told_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load(write_config(tmp_path))

    async def main() -> None:
        async with running(config) as h, AsyncExitStack() as stack:
            first = await registered(h, stack, interval_s=3600.0)
            await asyncio.sleep(0.01)  # another start time: another process as far as records go
            second = await registered(h, stack, interval_s=3600.0)
            for _ in range(3):
                assert await first.write_once() and await second.write_once()

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "is also registered by" in r.getMessage()]
    assert len(warnings) == 2  # once per process, not once per heartbeat
    assert "give each responder its own first listener port (--listen) or host" in warnings[0]


def test_a_lost_store_is_logged_once_and_its_return_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(write_config(tmp_path))

    async def main() -> None:
        async with running(config) as h:
            dead = RedisStore.from_url("redis://127.0.0.1:1/0", timeout_s=0.05)
            registration = Registration(h.responder, h.sync, dead, responder_id="x:53", embedded=False)
            try:
                assert not await registration.write_once()
                assert not await registration.write_once()
            finally:
                await dead.aclose()
            registration.store = h.store
            assert await registration.write_once()
            assert [r.id for r in await h.store.responders()] == ["x:53"]

    asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "gslb.fleet"]
    assert len([line for line in lines if line.startswith("cannot register responder x:53")]) == 1
    assert lines[-1] == "responder x:53 registered in the state store again"


def test_records_gone_for_an_hour_are_dropped_by_a_live_responder(tmp_path: Path) -> None:
    config = load(write_config(tmp_path))

    async def main() -> tuple[list[str], str]:
        async with running(config) as h, AsyncExitStack() as stack:
            now = time.time()
            await h.store.write_responder(rec("gone:53", at=now - 3601))
            await h.store.write_responder(rec("stale:53", at=now - 60))  # shown as stale, kept
            registration = await registered(h, stack, interval_s=3600.0)
            return sorted(r.id for r in await h.store.responders()), registration.id

    kept, me = asyncio.run(main())
    assert kept == sorted(["stale:53", me])
