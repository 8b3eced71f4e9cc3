"""The Redis state store: the only module that imports redis (redis-py's asyncio client).

Adapter layer: redis, standard library, `gslb.health` and `gslb.state`. Every failure of
Redis (refused, timed out, reset, a failover in progress) comes out as `StateError`; short
socket timeouts and a single retry keep a responder's poll from hanging on a dead server.
Sentinel URLs (`redis+sentinel://host:port,host:port/service_name[/db]`) go through
redis-py's own `redis.asyncio.sentinel.Sentinel`; all keys share one hash tag, so the
transactions below also work on one slot of a Redis Cluster.

Key layout (P is `{key_prefix}`, hash tag included):

    P:version            string   INCR on every change responders must see
    P:probers            hash     prober id -> heartbeat record
    P:health:<prober>    hash     endpoint id -> "degraded" | "down", only endpoints not up
                                  (all that responders read: small whatever the endpoint count)
    P:states:<prober>    hash     endpoint id -> endpoint state record (details: explain, resume)
    P:drains             hash     "<kind>:<target>" -> drain record
    P:audit              list     audit records, newest first, trimmed to AUDIT_LIMIT
    P:responders         hash     responder id -> registration record (`gslb.state.responders`)
    P:changes            channel  PUBLISH after each version bump (a wake-up, no data)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError
from redis.typing import EncodableT, FieldT

from gslb.errors import StateError
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.codec import R, drain_key, from_redis, to_redis
from gslb.state.record import AuditAction, AuditEntry, Heartbeat, Hint, Poll
from gslb.state.responders import ResponderRecord, responder_from_json, responder_to_json
from gslb.state.store import AUDIT_LIMIT, Subscription, drain_audit, undrain_audit

log = logging.getLogger(__name__)

SENTINEL_SCHEME = "redis+sentinel://"
_HEALTH = {health.value: health for health in Health}
WATCH_RETRIES = 8

T = TypeVar("T")


class RedisStore:
    """`Store` over one Redis (or a Sentinel-managed master)."""

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "gslb",
        timeout_s: float = 0.5,
        audit_limit: int = AUDIT_LIMIT,
        sentinel: Sentinel | None = None,
    ) -> None:
        self._client = client
        self._sentinel = sentinel
        self._audit_limit = audit_limit
        # One failed call: a connect or read timeout, one quick retry, another timeout.
        self._op_timeout_s = timeout_s * 4 + 0.2
        p = "{" + key_prefix + "}"
        self.version_key = f"{p}:version"
        self.probers_key = f"{p}:probers"
        self.states_prefix = f"{p}:states:"
        self.health_prefix = f"{p}:health:"
        self.drains_key = f"{p}:drains"
        self.audit_key = f"{p}:audit"
        self.responders_key = f"{p}:responders"
        self.channel = f"{p}:changes"
        self._warned: set[tuple[str, str]] = set()

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.5, key_prefix: str = "gslb") -> RedisStore:
        """A store for `redis://`, `rediss://`, `unix://` or `redis+sentinel://` URLs."""
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "decode_responses": True,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1),
            "health_check_interval": 5,
        }
        if url.startswith(SENTINEL_SCHEME):
            hosts, service, db, password, sentinel_password = parse_sentinel_url(url)
            sentinel_options: dict[str, Any] = {
                "socket_timeout": timeout_s,
                "socket_connect_timeout": timeout_s,
            }
            if sentinel_password is not None:
                sentinel_options["password"] = sentinel_password
            sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_options, **options)  # type: ignore[no-untyped-call]
            client = sentinel.master_for(service, redis_class=Redis, db=db, password=password)
            return cls(client, key_prefix=key_prefix, timeout_s=timeout_s, sentinel=sentinel)
        return cls(Redis.from_url(url, **options), key_prefix=key_prefix, timeout_s=timeout_s)

    def states_key(self, prober_id: str) -> str:
        return self.states_prefix + prober_id

    def health_key(self, prober_id: str) -> str:
        return self.health_prefix + prober_id

    # --- writes ----------------------------------------------------------------------------

    async def write_states(
        self,
        prober_id: str,
        states: Mapping[str, EndpointState],
        *,
        heartbeat_at: float,
        changed: bool = True,
        replace: bool = False,
        publish: bool = True,
    ) -> int:
        bump = changed
        key, health_key = self.states_key(prober_id), self.health_key(prober_id)
        async with self._guard("write states"), self._client.pipeline(transaction=True) as pipe:
            if replace:
                pipe.delete(key, health_key)
            if states:
                pipe.hset(key, mapping={eid: to_redis(s) for eid, s in states.items()})
                unwell: dict[FieldT, EncodableT] = {
                    eid: s.health.value for eid, s in states.items() if s.health is not Health.UP
                }
                well = [eid for eid, s in states.items() if s.health is Health.UP]
                if unwell:
                    pipe.hset(health_key, mapping=unwell)
                if well:
                    pipe.hdel(health_key, *well)
            pipe.hset(self.probers_key, prober_id, to_redis(Heartbeat(heartbeat_at)))
            pipe.incr(self.version_key) if bump else pipe.get(self.version_key)
            if bump and publish:
                pipe.publish(self.channel, prober_id)
            result = await pipe.execute()
        return int(result[-2 if bump and publish else -1] or 0)

    async def remove_prober(self, prober_id: str, *, who: str, now: float, reason: str = "") -> bool:
        entry = AuditEntry(now, who, AuditAction.REMOVE_PROBER, f"prober:{prober_id}", reason)
        key, health_key = self.states_key(prober_id), self.health_key(prober_id)

        async def tx(pipe: Pipeline) -> bool:
            known = await pipe.hexists(self.probers_key, prober_id) or await pipe.exists(key)
            if not known:
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hdel(self.probers_key, prober_id)
            pipe.delete(key, health_key)
            self._queue_audit(pipe, entry)
            self._queue_bump(pipe, publish=True, hint="prober")
            await pipe.execute()
            return True

        return await self._watched("remove prober", (self.probers_key, key), tx)

    async def add_drain(self, drain: Drain, *, publish: bool = True) -> int:
        field = drain_key(drain.kind, drain.target)

        async def tx(pipe: Pipeline) -> int:
            existing = _texts(await pipe.hgetall(self.drains_key))
            expired = [f for f, raw in existing.items() if f != field and _expired(raw, drain.created_at)]
            pipe.multi()  # type: ignore[no-untyped-call]
            if expired:
                pipe.hdel(self.drains_key, *expired)
            pipe.hset(self.drains_key, field, to_redis(drain))
            self._queue_audit(pipe, drain_audit(drain))
            self._queue_bump(pipe, publish=publish, hint="drain")
            result = await pipe.execute()
            return int(result[-2 if publish else -1])

        return await self._watched("add drain", (self.drains_key,), tx)

    async def remove_drain(
        self,
        kind: DrainKind,
        target: str,
        *,
        who: str,
        now: float,
        reason: str = "",
        publish: bool = True,
    ) -> Drain | None:
        field = drain_key(kind, target)

        async def tx(pipe: Pipeline) -> Drain | None:
            raw = await pipe.hget(self.drains_key, field)
            if raw is None:
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                return None
            try:
                drain = from_redis(raw, Drain)
            except StateError:
                drain = Drain(kind, target, reason="(unreadable record)")
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hdel(self.drains_key, field)
            self._queue_audit(pipe, undrain_audit(drain, who=who, now=now, reason=reason))
            self._queue_bump(pipe, publish=publish, hint="drain")
            await pipe.execute()
            return drain

        return await self._watched("remove drain", (self.drains_key,), tx)

    async def append_audit(self, entry: AuditEntry) -> None:
        async with self._guard("append audit"), self._client.pipeline(transaction=True) as pipe:
            self._queue_audit(pipe, entry)
            await pipe.execute()

    # --- reads -----------------------------------------------------------------------------

    async def read_states(self, prober_id: str) -> dict[str, EndpointState]:
        async with self._guard("read states"):
            raw = _texts(await self._client.hgetall(self.states_key(prober_id)))
        return self._decode_all(raw, EndpointState, self.states_key(prober_id))

    async def recent_audit(self, limit: int = 100) -> tuple[AuditEntry, ...]:
        if limit <= 0:
            return ()
        async with self._guard("read audit"):
            raw = await self._client.lrange(self.audit_key, 0, limit - 1)
        entries = []
        for item in map(_text, raw):
            try:
                entries.append(from_redis(item, AuditEntry))
            except StateError as e:
                self._warn_once(self.audit_key, item[:40], e)
        return tuple(entries)

    async def version(self) -> int:
        async with self._guard("read version"):
            raw = await self._client.get(self.version_key)
        return int(raw or 0)

    async def poll(self) -> Poll:
        async with self._guard("poll"), self._client.pipeline(transaction=True) as pipe:
            pipe.get(self.version_key)
            pipe.hgetall(self.probers_key)
            version, probers = await pipe.execute()
        heartbeats = self._decode_all(_texts(probers), Heartbeat, self.probers_key)
        return Poll(int(version or 0), MappingProxyType({p: h.at for p, h in heartbeats.items()}))

    async def snapshot(self, *, now: float, details: bool = False) -> Snapshot:
        # Version first: everything read after it is at least that new, so a concurrent write
        # can only make this snapshot newer than its label, and the next poll resyncs.
        async with self._guard("read snapshot"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(self.version_key)
                pipe.hgetall(self.probers_key)
                pipe.hgetall(self.drains_key)
                version, raw_probers, raw_drains = await pipe.execute()
            heartbeats = self._decode_all(_texts(raw_probers), Heartbeat, self.probers_key)
            ids = sorted(heartbeats)
            replies: list[Any] = []
            if ids:
                async with self._client.pipeline(transaction=True) as pipe:
                    for prober_id in ids:
                        pipe.hgetall(self.health_key(prober_id))
                        if details:
                            pipe.hgetall(self.states_key(prober_id))
                    replies = await pipe.execute()
        per_prober = 2 if details else 1
        probers = {}
        for i, prober_id in enumerate(ids):
            health = self._decode_health(replies[i * per_prober], self.health_key(prober_id))
            states: dict[str, EndpointState] = {}
            if details:
                raw = _texts(replies[i * per_prober + 1])
                states = self._decode_all(raw, EndpointState, self.states_key(prober_id))
            probers[prober_id] = ProberReport(
                prober_id, heartbeats[prober_id].at, MappingProxyType(health), MappingProxyType(states)
            )
        drains = self._decode_all(_texts(raw_drains), Drain, self.drains_key)
        return Snapshot(
            version=int(version or 0),
            read_at=now,
            probers=MappingProxyType(probers),
            drains=tuple(drains[k] for k in sorted(drains)),
        )

    # --- responders ------------------------------------------------------------------------

    async def write_responder(self, record: ResponderRecord) -> ResponderRecord | None:
        async with self._guard("write responder"), self._client.pipeline(transaction=True) as pipe:
            pipe.hget(self.responders_key, record.id)
            pipe.hset(self.responders_key, record.id, responder_to_json(record))
            previous, _ = await pipe.execute()
        if previous is None:
            return None
        try:
            return responder_from_json(previous)
        except StateError:
            return None  # an older or newer format: ours replaces it

    async def responders(self) -> tuple[ResponderRecord, ...]:
        async with self._guard("read responders"):
            raw = _texts(await self._client.hgetall(self.responders_key))
        out = []
        for name in sorted(raw):
            try:
                out.append(responder_from_json(raw[name]))
            except StateError as e:
                self._warn_once(self.responders_key, name, e)
        return tuple(out)

    async def forget_responders(self, before: float) -> tuple[str, ...]:
        async with self._guard("forget responders"):
            raw = _texts(await self._client.hgetall(self.responders_key))
            gone = []
            for name, value in raw.items():
                try:
                    if responder_from_json(value).at < before:
                        gone.append(name)
                except StateError:
                    continue  # maybe a newer format: not ours to delete
            if gone:
                await self._client.hdel(self.responders_key, *gone)
        return tuple(sorted(gone))

    # --- hints -----------------------------------------------------------------------------

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[Subscription]:
        pubsub = self._client.pubsub()
        try:
            async with self._guard("subscribe"):
                await pubsub.subscribe(self.channel)
            yield _RedisSubscription(pubsub)
        finally:
            with suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        with suppress(Exception):
            await self._client.aclose()
        if self._sentinel is not None:
            for client in self._sentinel.sentinels:
                with suppress(Exception):
                    await client.aclose()

    # --- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._op_timeout_s):
                yield
        except (RedisError, OSError, TimeoutError) as e:
            raise StateError(f"redis {what} failed: {type(e).__name__}: {e}") from e

    async def _watched(self, what: str, keys: tuple[str, ...], tx: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Run an optimistic WATCH/MULTI/EXEC transaction, retrying when a key changed."""
        async with self._guard(what):
            for _ in range(WATCH_RETRIES):
                async with self._client.pipeline(transaction=True) as pipe:
                    await pipe.watch(*keys)
                    try:
                        return await tx(pipe)
                    except WatchError:
                        continue
            raise StateError(f"redis {what} failed: too much contention on {', '.join(keys)}")

    def _queue_audit(self, pipe: Pipeline, entry: AuditEntry) -> None:
        pipe.lpush(self.audit_key, to_redis(entry))
        pipe.ltrim(self.audit_key, 0, self._audit_limit - 1)

    def _queue_bump(self, pipe: Pipeline, *, publish: bool, hint: str) -> None:
        pipe.incr(self.version_key)
        if publish:
            pipe.publish(self.channel, hint)

    def _decode_all(self, raw: Mapping[str, str], cls: type[R], key: str) -> dict[str, R]:
        """Decode every field of a hash, skipping (and reporting once) records we cannot read."""
        out: dict[str, R] = {}
        for name, value in raw.items():
            try:
                out[name] = from_redis(value, cls)
            except StateError as e:
                self._warn_once(key, name, e)
        return out

    def _decode_health(self, raw: Mapping[Any, Any], key: str) -> dict[str, Health]:
        out: dict[str, Health] = {}
        for name, value in _texts(raw).items():
            health = _HEALTH.get(value)
            if health is None:
                self._warn_once(key, name, StateError(f"unknown health {value!r}"))
            else:
                out[name] = health
        return out

    def _warn_once(self, key: str, name: str, error: StateError) -> None:
        if (key, name) not in self._warned:
            self._warned.add((key, name))
            log.warning("skipping unreadable record %s[%s]: %s", key, name, error)


class _RedisSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def next_hint(self, timeout_s: float) -> Hint | None:
        try:
            message = await self._pubsub.get_message(timeout=timeout_s)
        except (RedisError, OSError, TimeoutError, RuntimeError) as e:
            raise StateError(f"redis subscription lost: {type(e).__name__}: {e}") from e
        if message is None:
            return None
        kind = message.get("type")
        if kind == "subscribe":
            return Hint.SUBSCRIBED
        if kind == "message":
            return Hint.CHANGED
        return None


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    """`redis+sentinel://[:password@]host:port[,host:port...]/service[/db][?sentinel_password=x]`.

    Returns (sentinels, service name, db, master password, sentinel password).
    """
    rest = url.removeprefix(SENTINEL_SCHEME)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    password: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        password = unquote(userinfo.partition(":")[2]) or None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise StateError(f"bad sentinel URL {_redact(url)!r}: {item!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise StateError(f"bad sentinel URL {_redact(url)!r}: expected /service_name[/db]")
    db = int(parts[1]) if len(parts) == 2 else 0
    sentinel_password = parse_qs(query).get("sentinel_password", [None])[0]
    return hosts, unquote(parts[0]), db, password, sentinel_password


def _redact(url: str) -> str:
    _, at, tail = url.rpartition("@")
    return f"{SENTINEL_SCHEME}***@{tail}" if at else url


def _expired(raw: str, now: float) -> bool:
    try:
        return not from_redis(raw, Drain).active(now)
    except StateError:
        return False  # a record we cannot read (maybe a newer format) is not ours to delete


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _texts(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply as text (the client decodes responses; this keeps the types honest)."""
    return {_text(k): _text(v) for k, v in raw.items()}
