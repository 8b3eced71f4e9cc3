"""The state store contract, the in-memory store of embedded mode, and `open_store`.

Adapter layer: standard library, `gslb.health`, `gslb.config.model` and `gslb.state` only;
redis is imported only when a Redis URL is configured (`gslb.state.redis_store`).

Failures of the store itself come out as `gslb.errors.StateError`, whatever the backend.

Every write that changes what responders must answer (a prober's health changing, a drain
added or removed, a prober appearing or removed) bumps the store version atomically with the
data and then publishes a hint. Writes that only refresh counters, EWMAs and heartbeats do not
bump the version, so a responder's answer cache lives as long as health does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import Protocol

from gslb.config.model import StateConfig
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.codec import drain_key
from gslb.state.record import AuditAction, AuditEntry, Hint, Poll
from gslb.state.responders import ResponderRecord

AUDIT_LIMIT = 10_000
"""The store keeps this many audit entries; the api's append-only log file keeps them all."""


class Subscription(Protocol):
    """Wake-up hints from the change channel. Raises StateError when the channel is lost."""

    async def next_hint(self, timeout_s: float) -> Hint | None:
        """The next hint, or None when none came within `timeout_s`."""
        ...


class Store(Protocol):
    """What probers, the api and responders need from shared state (async, never cached).

    A store that cannot be reached or read raises `gslb.errors.StateError` (callers also
    bound every call with a timeout); any other exception is a bug and is treated as one.
    """

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
        """Store a prober's states and heartbeat in one transaction; return the version.

        `changed`: some health differs from what was stored (or the prober is new, or
        endpoints were dropped), so bump the version and publish; otherwise only counters
        and the heartbeat move and responders need not resync. `replace`: these are all of
        the prober's states, drop any others. `publish=False` skips the hint (tests of the
        poll path).
        """
        ...

    async def read_states(self, prober_id: str) -> dict[str, EndpointState]:
        """A prober's stored states, so a restarted prober resumes its counters."""
        ...

    async def remove_prober(self, prober_id: str, *, who: str, now: float, reason: str = "") -> bool:
        """Forget a prober (its states and heartbeat), audited; False if it was unknown."""
        ...

    async def add_drain(self, drain: Drain, *, publish: bool = True) -> int:
        """Add or replace the drain for (kind, target), audited; return the new version.

        Drains whose expiry has passed (at `drain.created_at`) are pruned in the same write.
        """
        ...

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
        """Remove a drain, audited; the removed drain, or None (nothing written) if none."""
        ...

    async def append_audit(self, entry: AuditEntry) -> None:
        """Record an operator action that is not a drain change."""
        ...

    async def recent_audit(self, limit: int = 100) -> tuple[AuditEntry, ...]:
        """The newest audit entries, newest first."""
        ...

    async def version(self) -> int:
        """The current store version (0 when nothing was ever written)."""
        ...

    async def poll(self) -> Poll:
        """The version and every prober's heartbeat, in one cheap round trip."""
        ...

    async def snapshot(self, *, now: float, details: bool = False) -> Snapshot:
        """Everything, at least as new as the returned version; `read_at=now`.

        Reports carry per-endpoint health; `details=True` adds the full endpoint states
        (for explain and the api; responders do not need them).
        """
        ...

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """Listen for change hints; the first hint is always `Hint.SUBSCRIBED`."""
        ...

    async def write_responder(self, record: ResponderRecord) -> ResponderRecord | None:
        """Store a responder's registration (no version bump, no hint); the record it replaced."""
        ...

    async def responders(self) -> tuple[ResponderRecord, ...]:
        """Every responder's latest registration, by id."""
        ...

    async def forget_responders(self, before: float) -> tuple[str, ...]:
        """Drop registrations whose heartbeat is older than `before`; the ids dropped."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryStore:
    """The store of embedded mode: one process, no Redis, same contract and hints."""

    def __init__(self, *, audit_limit: int = AUDIT_LIMIT) -> None:
        self._version = 0
        self._heartbeats: dict[str, float] = {}
        self._states: dict[str, dict[str, EndpointState]] = {}
        self._drains: dict[str, Drain] = {}
        self._audit: list[AuditEntry] = []  # oldest first
        self._audit_limit = audit_limit
        self._subscriptions: set[_MemorySubscription] = set()
        self._responders: dict[str, ResponderRecord] = {}

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
        if replace:
            self._states[prober_id] = dict(states)
        else:
            self._states.setdefault(prober_id, {}).update(states)
        self._heartbeats[prober_id] = heartbeat_at
        if changed:
            self._bump(publish)
        return self._version

    async def read_states(self, prober_id: str) -> dict[str, EndpointState]:
        return dict(self._states.get(prober_id, {}))

    async def remove_prober(self, prober_id: str, *, who: str, now: float, reason: str = "") -> bool:
        if prober_id not in self._heartbeats and prober_id not in self._states:
            return False
        self._heartbeats.pop(prober_id, None)
        self._states.pop(prober_id, None)
        self._append(AuditEntry(now, who, AuditAction.REMOVE_PROBER, f"prober:{prober_id}", reason))
        self._bump(True)
        return True

    async def add_drain(self, drain: Drain, *, publish: bool = True) -> int:
        for key, old in list(self._drains.items()):
            if not old.active(drain.created_at):
                del self._drains[key]
        self._drains[drain_key(drain.kind, drain.target)] = drain
        self._append(drain_audit(drain))
        self._bump(publish)
        return self._version

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
        drain = self._drains.pop(drain_key(kind, target), None)
        if drain is None:
            return None
        self._append(undrain_audit(drain, who=who, now=now, reason=reason))
        self._bump(publish)
        return drain

    async def append_audit(self, entry: AuditEntry) -> None:
        self._append(entry)

    async def recent_audit(self, limit: int = 100) -> tuple[AuditEntry, ...]:
        return tuple(reversed(self._audit[-limit:])) if limit > 0 else ()

    async def version(self) -> int:
        return self._version

    async def poll(self) -> Poll:
        return Poll(self._version, MappingProxyType(dict(self._heartbeats)))

    async def snapshot(self, *, now: float, details: bool = False) -> Snapshot:
        probers = {}
        for prober_id, heartbeat_at in self._heartbeats.items():
            states = self._states.get(prober_id, {})
            health = {eid: s.health for eid, s in states.items() if s.health is not Health.UP}
            report = ProberReport(
                prober_id,
                heartbeat_at,
                MappingProxyType(health),
                MappingProxyType(dict(states)) if details else MappingProxyType({}),
            )
            probers[prober_id] = report
        return Snapshot(
            version=self._version,
            read_at=now,
            probers=MappingProxyType(probers),
            drains=tuple(self._drains.values()),
        )

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[Subscription]:
        subscription = _MemorySubscription()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe()

    async def aclose(self) -> None:
        self._subscriptions.clear()

    async def write_responder(self, record: ResponderRecord) -> ResponderRecord | None:
        previous = self._responders.get(record.id)
        self._responders[record.id] = record
        return previous

    async def responders(self) -> tuple[ResponderRecord, ...]:
        return tuple(self._responders[k] for k in sorted(self._responders))

    async def forget_responders(self, before: float) -> tuple[str, ...]:
        gone = tuple(sorted(k for k, r in self._responders.items() if r.at < before))
        for key in gone:
            del self._responders[key]
        return gone

    def _bump(self, publish: bool) -> None:
        self._version += 1
        if publish:
            for subscription in self._subscriptions:
                subscription.changed.set()

    def _append(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        if len(self._audit) > self._audit_limit:
            del self._audit[: len(self._audit) - self._audit_limit]


class _MemorySubscription:
    def __init__(self) -> None:
        self.subscribed = True
        self.changed = asyncio.Event()

    async def next_hint(self, timeout_s: float) -> Hint | None:
        if self.subscribed:
            self.subscribed = False
            return Hint.SUBSCRIBED
        try:
            async with asyncio.timeout(timeout_s):
                await self.changed.wait()
        except TimeoutError:
            return None
        self.changed.clear()
        return Hint.CHANGED


def drain_audit(drain: Drain) -> AuditEntry:
    """The audit entry for adding `drain`."""
    expiry = "" if drain.expires_at is None else f"expires_at={drain.expires_at:.3f}"
    return AuditEntry(
        drain.created_at,
        drain.who,
        AuditAction.DRAIN,
        drain_key(drain.kind, drain.target),
        drain.reason,
        expiry,
    )


def undrain_audit(drain: Drain, *, who: str, now: float, reason: str) -> AuditEntry:
    """The audit entry for removing `drain`."""
    return AuditEntry(now, who, AuditAction.UNDRAIN, drain_key(drain.kind, drain.target), reason)


@asynccontextmanager
async def open_store(config: StateConfig) -> AsyncIterator[Store]:
    """A MemoryStore when no Redis URL is configured (embedded mode), else a RedisStore."""
    store: Store
    if config.redis_url is None:
        store = MemoryStore()
    else:
        # Imported here so that embedded mode never imports redis.
        from gslb.state.redis_store import RedisStore  # noqa: PLC0415

        store = RedisStore.from_url(
            config.redis_url, timeout_s=config.redis_timeout_s, key_prefix=config.key_prefix
        )
    try:
        yield store
    finally:
        await store.aclose()
