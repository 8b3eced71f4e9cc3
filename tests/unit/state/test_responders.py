"""Responder registrations: the record codec and the store contract (memory and real Redis)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from types import MappingProxyType

import pytest

from gslb.errors import StateError
from gslb.state.redis_store import RedisStore
from gslb.state.responders import (
    ReloadResult,
    ResponderRecord,
    drain_id,
    responder_from_json,
    responder_to_json,
)
from gslb.state.store import MemoryStore, Store
from tests.redis_fixture import RedisServer

StoreTest = Callable[[Store], Awaitable[None]]
Runner = Callable[[StoreTest], None]

FULL = ResponderRecord(
    id="ns1:53",
    at=1000.5,
    host="ns1",
    pid=4242,
    version="0.1.0",
    started_at=900.0,
    listen=("192.0.2.53:53", "[2001:db8::53]:53"),
    identity="ns1.example.net",
    config_path="/etc/gslb/gslb.yaml",
    config_hash="ab" * 32,
    serials=MappingProxyType({"shop.example.net.": 2025010102}),
    last_reload=ReloadResult(
        990.0, False, "gslb.yaml is invalid (1 problem):\n  - zones: bad", "cd" * 32, MappingProxyType({})
    ),
    state_version=14,
    state_applied_at=999.0,
    last_sync_at=1000.0,
    store_connected=True,
    mode="distributed",
    drains=(drain_id("region", "europe", 995.25),),
    answers=MappingProxyType({"ams": 10, "iad": 3}),
    answers_per_s=MappingProxyType({"ams": 1.5, "iad": 0.0}),
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run one async test body against a fresh store of the parametrized kind."""

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        server: RedisServer = request.getfixturevalue("redis_server")
        return RedisStore.from_url(server.url, timeout_s=0.5, key_prefix=f"t{id(request)}")

    def runner(test: StoreTest) -> None:
        async def main() -> None:
            store = make()
            try:
                await asyncio.wait_for(test(store), 10)
            finally:
                await store.aclose()

        asyncio.run(main())

    return runner


def test_a_record_survives_the_codec() -> None:
    assert responder_from_json(responder_to_json(FULL)) == FULL
    assert FULL.sync_age_s == 0.5


def test_a_minimal_record_decodes_with_defaults() -> None:
    raw = json.dumps({"v": 1, "id": "a:53", "at": 5.0, "started_at": 1.0, "later": "ignored"})
    record = responder_from_json(raw)
    assert (record.id, record.at, record.started_at) == ("a:53", 5.0, 1.0)
    assert (record.last_reload, dict(record.serials), record.drains, record.sync_age_s) == (
        None,
        {},
        (),
        None,
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("not json", "bad responder record"),
        ("[]", "not an object"),
        (json.dumps({"v": 2, "id": "a", "at": 1.0, "started_at": 1.0}), "format version 2"),
        (json.dumps({"v": 1, "at": 1.0, "started_at": 1.0}), "KeyError"),
        (json.dumps({"v": 1, "id": "a", "at": "soon", "started_at": 1.0}), "at: expected a number"),
        (json.dumps({"v": 1, "id": "a", "at": 1.0, "started_at": 1.0, "serials": {"z.": "1"}}), "z."),
        (json.dumps({"v": 1, "id": "a", "at": 1.0, "started_at": 1.0, "last_reload": 3}), "last_reload"),
    ],
    ids=["not-json", "not-object", "other-version", "no-id", "bad-time", "bad-serial", "bad-reload"],
)
def test_bad_records_are_refused_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(StateError, match=why):
        responder_from_json(raw)


def test_the_problem_text_is_bounded() -> None:
    long = ResponderRecord(
        "a:53",
        1.0,
        "a",
        1,
        "0",
        1.0,
        last_reload=ReloadResult(1.0, False, "x" * 100_000, "", MappingProxyType({})),
    )
    decoded = responder_from_json(responder_to_json(long))
    assert decoded.last_reload is not None
    assert 0 < len(decoded.last_reload.problem) <= 4000


def test_write_read_and_replace(run: Runner) -> None:
    async def test(store: Store) -> None:
        assert await store.responders() == ()
        version = await store.version()
        assert await store.write_responder(FULL) is None
        second = ResponderRecord("ns2:53", 1001.0, "ns2", 7, "0.1.0", 950.0)
        await store.write_responder(second)
        assert await store.responders() == (FULL, second)
        newer = ResponderRecord("ns1:53", 1002.0, "ns1", 4242, "0.1.0", 900.0, state_version=15)
        assert await store.write_responder(newer) == FULL  # the record it replaced
        assert await store.responders() == (newer, second)
        assert await store.version() == version  # registrations never make responders resync

    run(test)


def test_forget_drops_only_records_older_than_the_cut(run: Runner) -> None:
    async def test(store: Store) -> None:
        old = ResponderRecord("gone:53", 10.0, "gone", 1, "0", 1.0)
        young = ResponderRecord("here:53", 5000.0, "here", 2, "0", 1.0)
        await store.write_responder(old)
        await store.write_responder(young)
        assert await store.forget_responders(before=100.0) == ("gone:53",)
        assert await store.responders() == (young,)
        assert await store.forget_responders(before=100.0) == ()

    run(test)


@pytest.mark.integration
def test_redis_skips_a_record_it_cannot_read(redis_server: RedisServer) -> None:
    async def main() -> None:
        store = RedisStore.from_url(redis_server.url, timeout_s=0.5, key_prefix="skip")
        try:
            await store.write_responder(FULL)
            from redis.asyncio import Redis

            raw = Redis.from_url(redis_server.url)
            await raw.hset(store.responders_key, "future:53", json.dumps({"v": 99}))
            await raw.aclose()
            assert await store.responders() == (FULL,)
            # a record of another format is not ours to forget
            assert await store.forget_responders(before=1e12) == ("ns1:53",)
        finally:
            await store.aclose()

    asyncio.run(main())


def test_a_lost_store_is_a_state_error() -> None:
    async def main() -> None:
        store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout_s=0.1)
        try:
            with pytest.raises(StateError, match="redis write responder failed"):
                await store.write_responder(FULL)
            with pytest.raises(StateError, match="redis read responders failed"):
                await store.responders()
        finally:
            await store.aclose()

    asyncio.run(main())
