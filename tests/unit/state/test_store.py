"""The Store contract, run against MemoryStore and (marked integration) a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.record import AuditAction, AuditEntry, Hint
from gslb.state.redis_store import RedisStore
from gslb.state.store import MemoryStore, Store
from tests.redis_fixture import RedisServer

StoreTest = Callable[[Store], Awaitable[None]]
Runner = Callable[[StoreTest], None]

UP = EndpointState(health=Health.UP, ok_streak=1, checked_at=1.0)
DOWN = EndpointState(health=Health.DOWN, fail_streak=3, checked_at=2.0, detail="refused")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run one async test body against a fresh store of the parametrized kind."""

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        server: RedisServer = request.getfixturevalue("redis_server")
        return RedisStore.from_url(server.url, timeout_s=0.5)

    def runner(test: StoreTest) -> None:
        async def main() -> None:
            store = make()
            try:
                await asyncio.wait_for(test(store), 10)
            finally:
                await store.aclose()

        asyncio.run(main())

    return runner


def test_empty_store(run: Runner) -> None:
    async def test(store: Store) -> None:
        assert await store.version() == 0
        poll = await store.poll()
        assert (poll.version, dict(poll.heartbeats)) == (0, {})
        snap = await store.snapshot(now=5.0)
        assert (snap.version, snap.read_at, dict(snap.probers), snap.drains) == (0, 5.0, {}, ())
        assert await store.recent_audit() == ()
        assert await store.read_states("p1") == {}

    run(test)


def test_write_states_bumps_version_only_when_changed(run: Runner) -> None:
    async def test(store: Store) -> None:
        v1 = await store.write_states("p1", {"e1": UP, "e2": UP}, heartbeat_at=10.0, replace=True)
        assert v1 == 1
        v2 = await store.write_states("p1", {"e2": DOWN}, heartbeat_at=11.0, changed=False)
        assert v2 == 1  # counters and heartbeat only: no resync for responders
        snap = await store.snapshot(now=12.0, details=True)
        assert snap.version == 1
        assert snap.probers["p1"].heartbeat_at == 11.0
        assert dict(snap.probers["p1"].states) == {"e1": UP, "e2": DOWN}
        assert dict(snap.probers["p1"].health) == {"e2": Health.DOWN}  # only what is not up
        lean = await store.snapshot(now=12.0)
        assert dict(lean.probers["p1"].states) == {}  # responders read health only
        assert lean.probers["p1"].health == snap.probers["p1"].health
        v3 = await store.write_states("p1", {"e1": DOWN, "e2": UP}, heartbeat_at=12.0, changed=True)
        assert v3 == 2 == await store.version()
        poll = await store.poll()
        assert (poll.version, dict(poll.heartbeats)) == (2, {"p1": 12.0})
        assert await store.read_states("p1") == {"e1": DOWN, "e2": UP}
        assert dict((await store.snapshot(now=13.0)).probers["p1"].health) == {"e1": Health.DOWN}

    run(test)


def test_replace_drops_other_states(run: Runner) -> None:
    async def test(store: Store) -> None:
        await store.write_states("p1", {"e1": UP, "e2": UP}, heartbeat_at=1.0)
        await store.write_states("p2", {"e1": DOWN}, heartbeat_at=1.0)
        await store.write_states("p1", {"e3": DOWN}, heartbeat_at=2.0, replace=True)
        snap = await store.snapshot(now=3.0, details=True)
        assert dict(snap.probers["p1"].states) == {"e3": DOWN}
        assert dict(snap.probers["p1"].health) == {"e3": Health.DOWN}
        assert dict(snap.probers["p2"].states) == {"e1": DOWN}
        # A heartbeat-only write of a prober with no states is still a prober.
        await store.write_states("p3", {}, heartbeat_at=4.0, changed=False)
        assert dict((await store.poll()).heartbeats) == {"p1": 2.0, "p2": 1.0, "p3": 4.0}

    run(test)


def test_drains_are_versioned_and_audited(run: Runner) -> None:
    async def test(store: Store) -> None:
        drain = Drain(DrainKind.DATACENTER, "ams", "maintenance", "alice", 100.0, 200.0)
        assert await store.add_drain(drain) == 1
        again = Drain(DrainKind.DATACENTER, "ams", "longer", "alice", 110.0, None)
        assert await store.add_drain(again) == 2
        region = Drain(DrainKind.REGION, "eu", "test", "bob", 120.0)
        await store.add_drain(region)
        snap = await store.snapshot(now=130.0)
        assert set(snap.drains) == {again, region}
        removed = await store.remove_drain(DrainKind.DATACENTER, "ams", who="carol", now=140.0, reason="done")
        assert removed == again
        assert await store.version() == 4
        assert await store.remove_drain(DrainKind.DATACENTER, "ams", who="carol", now=141.0) is None
        assert await store.version() == 4  # nothing removed, nothing written
        audit = await store.recent_audit()
        assert [(a.action, a.target, a.who) for a in audit] == [
            (AuditAction.UNDRAIN, "datacenter:ams", "carol"),
            (AuditAction.DRAIN, "region:eu", "bob"),
            (AuditAction.DRAIN, "datacenter:ams", "alice"),
            (AuditAction.DRAIN, "datacenter:ams", "alice"),
        ]
        assert audit[0].reason == "done"
        assert audit[3].detail == "expires_at=200.000"
        assert len(await store.recent_audit(limit=2)) == 2

    run(test)


def test_adding_a_drain_prunes_expired_ones(run: Runner) -> None:
    async def test(store: Store) -> None:
        short = Drain(DrainKind.ENDPOINT, "www/ams/192.0.2.1", "blip", "a", 10.0, 20.0)
        await store.add_drain(short)
        await store.add_drain(Drain(DrainKind.REGION, "us", "x", "b", 30.0))
        assert [d.target for d in (await store.snapshot(now=31.0)).drains] == ["us"]

    run(test)


def test_append_audit_and_remove_prober(run: Runner) -> None:
    async def test(store: Store) -> None:
        await store.append_audit(AuditEntry(1.0, "ops", AuditAction.DRAIN, "region:eu", "note"))
        await store.write_states("p1", {"e1": DOWN}, heartbeat_at=1.0)
        assert await store.remove_prober("p1", who="ops", now=2.0, reason="decommissioned")
        assert not await store.remove_prober("p1", who="ops", now=3.0)
        snap = await store.snapshot(now=4.0)
        assert dict(snap.probers) == {}
        assert snap.version == 2
        audit = await store.recent_audit()
        assert [(a.action, a.target) for a in audit] == [
            (AuditAction.REMOVE_PROBER, "prober:p1"),
            (AuditAction.DRAIN, "region:eu"),
        ]

    run(test)


def test_subscribe_hints(run: Runner) -> None:
    async def test(store: Store) -> None:
        async with store.subscribe() as subscription:
            assert await subscription.next_hint(2.0) is Hint.SUBSCRIBED
            assert await subscription.next_hint(0.05) is None
            await store.write_states("p1", {"e1": UP}, heartbeat_at=1.0, changed=True)
            assert await subscription.next_hint(2.0) is Hint.CHANGED
            await store.write_states("p1", {"e1": UP}, heartbeat_at=2.0, changed=False)
            await store.write_states("p1", {"e1": DOWN}, heartbeat_at=3.0, publish=False)
            await store.add_drain(Drain(DrainKind.REGION, "eu", "x"), publish=False)
            assert await subscription.next_hint(0.1) is None
            await store.add_drain(Drain(DrainKind.REGION, "eu", "y"))
            assert await subscription.next_hint(2.0) is Hint.CHANGED

    run(test)
