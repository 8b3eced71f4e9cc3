"""The responder side of shared state: keep an immutable `HealthView` in step with the store.

Adapter layer: asyncio, standard library, `gslb.health` and `gslb.state` (never redis
directly). `HealthSync` is an async context manager that owns two tasks:

- the poller reads the store version and prober heartbeats every `poll_interval_s` (one
  cheap round trip), reads the full snapshot when the version moved, after the store came
  back, or when the subscriber asks, and wakes early for the next drain expiry;
- the subscriber listens on the change channel and only wakes the poller (pub/sub is a
  hint, the versioned snapshot is the truth); a (re)subscription forces a full resync,
  since anything may have been published while it was away.

After each pass the view is recomputed; when it differs from the current one a new
`HealthView` with the next local generation number is swapped in by one assignment and
`on_change` is called. When the store is unreachable the last view stays in force (prober
freshness is judged at the last successful read, so nobody looks stale just because we
cannot see them), drains still expire on time, and one line is logged when the store is
lost and one when it is back. Nothing here raises into the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType, TracebackType

from gslb.config.model import Config
from gslb.health.quorum import combine
from gslb.health.snapshot import Snapshot
from gslb.health.view import Health, HealthView
from gslb.lifecycle import cancel_all
from gslb.state.record import Hint
from gslb.state.snapshot_file import load_snapshot, save_snapshot
from gslb.state.store import Store

log = logging.getLogger(__name__)

RESUBSCRIBE_MIN_S = 0.1
RESUBSCRIBE_MAX_S = 2.0


class HealthSync:
    """Keeps `current` (a `HealthView`) in step with a `Store`; see the module docstring.

    `current.version` is a local generation number that grows by one at every swap, so an
    answer cache keyed on it is invalidated exactly when the view changes (including drain
    expiry and prober staleness, which do not change the store version). The store version
    the view was built from is `store_version`.
    """

    def __init__(
        self,
        store: Store,
        *,
        stale_after_s: float = 5.0,
        quorum: int | None = None,
        poll_interval_s: float = 1.0,
        timeout_s: float = 2.0,
        snapshot_path: Path | None = None,
        on_change: Callable[[HealthView], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._stale_after_s = stale_after_s
        self._quorum = quorum
        self._poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._snapshot_path = snapshot_path
        self._on_change = on_change
        self._now = now

        self.current = HealthView()
        self.snapshot = Snapshot()
        self.last_sync_at: float | None = None  # last successful read of the store
        self.connected = False
        self.syncs = 0  # full snapshot reads
        self.polls = 0  # successful polls
        self.errors = 0  # failed store calls
        self._generation = 0
        self._stale: tuple[str, ...] = ()
        self._force_full = True
        self._lost_at: float | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._saving: asyncio.Task[None] | None = None
        self._save_pending = False
        self._save_ok = True

    @classmethod
    def from_config(
        cls,
        store: Store,
        config: Config,
        *,
        on_change: Callable[[HealthView], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> HealthSync:
        return cls(
            store,
            stale_after_s=config.prober.stale_after_s,
            quorum=config.prober.quorum,
            poll_interval_s=config.state.poll_interval_s,
            timeout_s=max(1.0, config.state.redis_timeout_s * 4),
            snapshot_path=config.state.snapshot_path,
            on_change=on_change,
            now=now,
        )

    @property
    def store_version(self) -> int:
        """The store version of the snapshot the current view was built from."""
        return self.snapshot.version

    @property
    def stale_probers(self) -> tuple[str, ...]:
        """Probers left out of the vote because their heartbeat is too old."""
        return self._stale

    async def __aenter__(self) -> HealthSync:
        if self._snapshot_path is not None:
            loaded = await asyncio.to_thread(load_snapshot, self._snapshot_path)
            if loaded is not None:
                self.snapshot = loaded
                log.info(
                    "loaded state snapshot version %d from %s (%d probers, %d drains)",
                    loaded.version,
                    self._snapshot_path,
                    len(loaded.probers),
                    len(loaded.drains),
                )
                self._recompute(self._now())
        await self.sync_once()
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="gslb-health-poll"),
            asyncio.create_task(self._subscribe_loop(), name="gslb-health-subscribe"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._saving is not None:
            with contextlib.suppress(Exception):
                await self._saving

    def wake(self, *, full: bool = False) -> None:
        """Poll now (for example after a local write in embedded mode)."""
        if full:
            self._force_full = True
        self._wake.set()

    async def sync_once(self) -> bool:
        """One poll (and a full read when needed), then recompute. False if the store failed."""
        now = self._now()
        full = False
        try:
            async with asyncio.timeout(self._timeout_s):
                poll = await self._store.poll()
                full = (
                    self._force_full
                    or not self.connected
                    or poll.version != self.snapshot.version
                    or not set(poll.heartbeats) <= set(self.snapshot.probers)
                )
                if full:
                    self._force_full = False
                    snapshot = await self._store.snapshot(now=now)
                else:
                    probers = {
                        prober_id: replace(report, heartbeat_at=poll.heartbeats.get(prober_id, 0.0))
                        for prober_id, report in self.snapshot.probers.items()
                    }
                    snapshot = replace(self.snapshot, read_at=now, probers=MappingProxyType(probers))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.errors += 1
            if full:
                self._force_full = True
            if self.connected or self._lost_at is None:
                self._lost_at = now
                log.warning(
                    "state store unreachable (%s); answering from the last view (store version %d)",
                    e,
                    self.snapshot.version,
                )
            self.connected = False
            self._recompute(now)
            return False
        if not self.connected and self._lost_at is not None:
            log.warning(
                "state store reachable again after %.1f s; store version %d",
                now - self._lost_at,
                snapshot.version,
            )
        self.connected = True
        self._lost_at = None
        self.polls += 1
        self.syncs += full
        self.snapshot = snapshot
        self.last_sync_at = now
        changed = self._recompute(now)
        if full or changed:
            self._save()
        return True

    def _recompute(self, now: float) -> bool:
        """Build the view from the snapshot at `now`; swap it in if it differs."""
        view = combine(
            self.snapshot,
            now=now,
            stale_after_s=self._stale_after_s,
            quorum=self._quorum,
            version=self._generation,
        )
        stale = self.snapshot.stale_probers(self._stale_after_s)
        if stale != self._stale:
            for prober_id in sorted(set(stale) - set(self._stale)):
                log.warning("prober %s is stale; leaving it out of the vote", prober_id)
            for prober_id in sorted(set(self._stale) - set(stale)):
                if prober_id in self.snapshot.probers:
                    log.info("prober %s is fresh again", prober_id)
            self._stale = stale
        old = self.current
        if view.endpoints == old.endpoints and view.drains == old.drains:
            return False
        self._generation += 1
        view = replace(view, version=self._generation)
        for endpoint_id in sorted(set(view.endpoints) | set(old.endpoints)):
            before, after = old.health(endpoint_id), view.health(endpoint_id)
            if before is not after:
                log.log(
                    logging.INFO if after is Health.UP else logging.WARNING,
                    "endpoint %s is %s (was %s)",
                    endpoint_id,
                    after.value,
                    before.value,
                )
        self.current = view
        if self._on_change is not None:
            try:
                self._on_change(view)
            except Exception:
                log.exception("health on_change callback failed")
        return True

    def _save(self) -> None:
        """Save the snapshot in a thread; one writer at a time, the latest snapshot wins."""
        if self._snapshot_path is None:
            return
        self._save_pending = True
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._write_files(self._snapshot_path))

    async def _write_files(self, path: Path) -> None:
        while self._save_pending:
            self._save_pending = False
            try:
                await asyncio.to_thread(save_snapshot, path, self.snapshot, saved_at=self._now())
            except Exception as e:
                if self._save_ok:
                    log.warning("cannot save state snapshot to %s: %s", path, e)
                self._save_ok = False
            else:
                self._save_ok = True

    async def _poll_loop(self) -> None:
        while True:
            delay = self._poll_interval_s
            now = self._now()
            expiry = self.current.next_expiry(now)
            if expiry is not None:
                delay = min(delay, max(0.0, expiry - now) + 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug; keep the responder answering from the last view
                log.exception("health sync failed")

    async def _subscribe_loop(self) -> None:
        backoff = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with self._store.subscribe() as subscription:
                    while True:
                        hint = await subscription.next_hint(timeout_s=max(1.0, self._poll_interval_s * 5))
                        if hint is Hint.SUBSCRIBED:
                            backoff = RESUBSCRIBE_MIN_S
                            self.wake(full=True)
                        elif hint is Hint.CHANGED:
                            self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # The poller reports the store being lost; this is only the wake-up channel.
                log.debug("change subscription lost: %s", e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESUBSCRIBE_MAX_S)
