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
lost and one when it is back. When no prober is fresh the last verdicts hold
(`gslb.health.quorum`); `staleness` says which probers are stale since when and what is
held, and one line is logged per change of that picture, never per poll.

The store's own failures arrive as `StateError` (or a timeout) and mean "unreachable";
anything else is a bug: its traceback is logged once, the last view stays in force and the
loop goes on (one more line when it works again). Nothing here raises into the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final

from gslb.config.model import Config, PickPolicy
from gslb.errors import StateError
from gslb.health.quorum import Staleness, combine, staleness
from gslb.health.snapshot import Snapshot
from gslb.health.view import Health, HealthView
from gslb.lifecycle import cancel_all
from gslb.logs import counted
from gslb.state.record import Hint
from gslb.state.snapshot_file import load_snapshot, save_snapshot
from gslb.state.store import Store

log = logging.getLogger(__name__)

RESUBSCRIBE_MIN_S = 0.1
RESUBSCRIBE_MAX_S = 2.0
LOG_ENDPOINTS = 20
"""A staleness log line names at most this many held endpoints (the api lists them all)."""


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
        hold_stale_s: float | None = None,
        poll_interval_s: float = 1.0,
        timeout_s: float = 2.0,
        snapshot_path: Path | None = None,
        on_change: Callable[[HealthView], None] | None = None,
        now: Callable[[], float] = time.time,
        figures_interval_s: float | None = None,
    ) -> None:
        self._store = store
        # p2c_ewma and least_load need the probes' latency costs and load figures: read them
        # (the detailed snapshot) and swap a view for them at most once per this interval.
        self._figures_interval_s = figures_interval_s
        self._figures_at = -math.inf
        self._stale_after_s = stale_after_s
        self._quorum = quorum
        self._hold_stale_s = hold_stale_s
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
        self.bugs = 0  # unexpected exceptions (each episode's first traceback is logged)
        self.staleness = Staleness(stale_since=MappingProxyType({}))
        self.applied_at: float | None = None  # when the current store version was first read
        self._on_version: list[Callable[[], None]] = []
        self._generation = 0
        self._failing: set[str] = set()  # what keeps raising unexpectedly (logged once per episode)
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
            hold_stale_s=config.prober.hold_stale_s,
            poll_interval_s=config.state.poll_interval_s,
            timeout_s=max(1.0, config.state.redis_timeout_s * 4),
            snapshot_path=config.state.snapshot_path,
            on_change=on_change,
            now=now,
            figures_interval_s=FIGURES_INTERVAL_S if uses_figures(config) else None,
        )

    @property
    def store_version(self) -> int:
        """The store version of the snapshot the current view was built from."""
        return self.snapshot.version

    @property
    def stale_probers(self) -> tuple[str, ...]:
        """Probers whose heartbeat is too old: left out of the vote unless their verdicts hold."""
        return tuple(sorted(self.staleness.stale_since))

    async def __aenter__(self) -> HealthSync:
        if self._snapshot_path is not None:
            loaded = await asyncio.to_thread(load_snapshot, self._snapshot_path)
            if loaded is not None:
                self.snapshot = loaded
                log.info(
                    "loaded state snapshot version %d from %s (%s, %s)",
                    loaded.version,
                    self._snapshot_path,
                    counted(len(loaded.probers), "prober"),
                    counted(len(loaded.drains), "drain"),
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
            with contextlib.suppress(Exception):  # _write_files has logged whatever it hit
                await self._saving

    def on_version(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever a read brings a new store version (the fleet heartbeat
        reports it at once, so the api can tell which responders have applied a drain)."""
        self._on_version.append(callback)

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
                figures = (
                    self._figures_interval_s is not None
                    and now - self._figures_at >= self._figures_interval_s
                )
                full = (
                    self._force_full
                    or figures
                    or not self.connected
                    or poll.version != self.snapshot.version
                    or not set(poll.heartbeats) <= set(self.snapshot.probers)
                )
                if full:
                    self._force_full = False
                    snapshot = await self._store.snapshot(
                        now=now, details=self._figures_interval_s is not None
                    )
                else:
                    probers = {
                        prober_id: replace(report, heartbeat_at=poll.heartbeats.get(prober_id, 0.0))
                        for prober_id, report in self.snapshot.probers.items()
                    }
                    snapshot = replace(self.snapshot, read_at=now, probers=MappingProxyType(probers))
        except (StateError, TimeoutError) as e:
            self.errors += 1
            if full:
                self._force_full = True
            if self.connected or self._lost_at is None:
                self._lost_at = now
                log.warning(
                    "state store unreachable (%s); answering from the last view (store version %d)",
                    e or type(e).__name__,
                    self.snapshot.version,
                )
            self.connected = False
            self._recompute(now)
            return False
        except Exception:
            # Not the store being away: a bug (ours or the store adapter's). Say so once, with
            # the traceback, and keep answering from the last view.
            self.errors += 1
            if full:
                self._force_full = True
            self._bug("reading the state store")
            self._recompute(now)
            return False
        self._fixed("reading the state store")
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
        moved = snapshot.version != self.snapshot.version or self.applied_at is None
        self.snapshot = snapshot
        self.last_sync_at = now
        changed = self._recompute(now)
        if full or changed:
            self._save()
        if moved:
            self.applied_at = now
            for callback in self._on_version:
                try:
                    callback()
                except Exception:
                    log.exception("state version callback failed")
        return True

    def _recompute(self, now: float) -> bool:
        """Build the view from the snapshot at `now`; swap it in if it differs."""
        view = combine(
            self.snapshot,
            now=now,
            stale_after_s=self._stale_after_s,
            quorum=self._quorum,
            version=self._generation,
            hold_stale_s=self._hold_stale_s,
        )
        picture = staleness(
            self.snapshot,
            stale_after_s=self._stale_after_s,
            quorum=self._quorum,
            hold_stale_s=self._hold_stale_s,
        )
        if picture != self.staleness:
            line = staleness_change(
                self.staleness, picture, known=set(self.snapshot.probers), hold_stale_s=self._hold_stale_s
            )
            if line is not None:
                log.log(line[0], "%s", line[1])
            self.staleness = picture
        old = self.current
        if view.endpoints == old.endpoints and view.drains == old.drains:
            if self._figures_interval_s is None or now - self._figures_at < self._figures_interval_s:
                return False
            self._figures_at = now
            if _close(view.costs, old.costs) and view.loads == old.loads:
                return False
        elif self._figures_interval_s is not None:
            self._figures_at = now
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

    def _bug(self, what: str) -> None:
        """An unexpected exception while `what`: its traceback once per episode, then silence."""
        self.bugs += 1
        if what not in self._failing:
            self._failing.add(what)
            log.exception("unexpected error %s (a bug; logged once until it works again)", what)

    def _fixed(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.warning("%s works again", what)

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
            except OSError as e:
                if self._save_ok:
                    log.warning("cannot save state snapshot to %s: %s", path, e)
                self._save_ok = False
            except Exception:
                self._save_ok = False
                self._bug(f"saving the state snapshot to {path}")
            else:
                self._save_ok = True
                self._fixed(f"saving the state snapshot to {path}")

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
            except Exception:  # a bug in recompute; keep the responder answering from the last view
                self._bug("recomputing the health view")
            else:
                self._fixed("recomputing the health view")

    async def _subscribe_loop(self) -> None:
        backoff = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with self._store.subscribe() as subscription:
                    while True:
                        hint = await subscription.next_hint(timeout_s=max(1.0, self._poll_interval_s * 5))
                        if hint is Hint.SUBSCRIBED:
                            backoff = RESUBSCRIBE_MIN_S
                            self._fixed("listening for change hints")
                            self.wake(full=True)
                        elif hint is Hint.CHANGED:
                            self.wake()
            except asyncio.CancelledError:
                raise
            except (StateError, TimeoutError) as e:
                # The poller reports the store being lost; this is only the wake-up channel.
                log.debug("change subscription lost: %s", e)
            except Exception:
                self._bug("listening for change hints")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESUBSCRIBE_MAX_S)


def staleness_change(
    old: Staleness,
    new: Staleness,
    *,
    known: Collection[str],
    hold_stale_s: float | None = None,
) -> tuple[int, str] | None:
    """The one log line (level, text) for a change of the staleness picture, if worth one.

    Says which probers went stale (since when) or came back (`known`: the probers still in
    the store; a removed prober is not "fresh again"), and when no prober is fresh, whose
    verdicts hold and which endpoints they keep out of answers.
    """
    went_stale = sorted(set(new.stale_since) - set(old.stale_since))
    came_back = sorted(p for p in set(old.stale_since) - set(new.stale_since) if p in known)
    parts: list[str] = []
    level = logging.INFO
    if went_stale:
        level = logging.WARNING
        since = ", ".join(f"{p} since {_iso(new.stale_since[p])}" for p in went_stale)
        parts.append(f"prober{'s' if len(went_stale) > 1 else ''} stale ({since})")
    if came_back:
        parts.append(f"prober{'s' if len(came_back) > 1 else ''} {', '.join(came_back)} fresh again")
    hold, was = new.hold, old.hold
    if hold is not None and not hold.released:
        if was is None or was.released or was.endpoints != hold.endpoints or was.probers != hold.probers:
            level = logging.WARNING
            limit = "forever" if hold_stale_s is None else f"for at most {hold_stale_s:g} s"
            parts.append(
                f"no fresh prober since {_iso(hold.since)}: holding the last verdicts of "
                f"{', '.join(hold.probers)} {limit}; {_held(hold.endpoints)}"
            )
    elif hold is not None and hold.released:
        if was is None or not was.released:
            level = logging.WARNING
            parts.append(
                f"no fresh prober since {_iso(hold.since)}, longer than prober.hold_stale_s: the held "
                f"verdicts no longer count and every endpoint is up; released: "
                f"{_listed(hold.endpoints, '{e} (was {h})') or 'none'}"
            )
    elif was is not None:
        parts.append(f"verdicts no longer held (held since {_iso(was.since)})")
    if not parts:
        return None
    return level, "; ".join(parts)


def _held(endpoints: Mapping[str, Health]) -> str:
    if not endpoints:
        return "no endpoint held out of answers"
    return f"{len(endpoints)} endpoint{'s' if len(endpoints) > 1 else ''} held: {_listed(endpoints)}"


def _listed(endpoints: Mapping[str, Health], form: str = "{e} {h}") -> str:
    """Endpoints and their health for a log line; a datacenter's worth, not thousands."""
    items = sorted(endpoints.items())
    text = ", ".join(form.format(e=e, h=h.value) for e, h in items[:LOG_ENDPOINTS])
    more = len(items) - LOG_ENDPOINTS
    return text + (f" and {more} more (gslb state --endpoints)" if more > 0 else "")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


FIGURES_INTERVAL_S: Final = 5.0
"""How often latency costs and load figures are read and, when they moved, a view swapped in."""


def uses_figures(config: Config) -> bool:
    """True when some service's endpoint policy reads costs or loads."""
    wanted = (PickPolicy.P2C_EWMA, PickPolicy.LEAST_LOAD)
    return any(
        pick.policy in wanted for s in config.services.values() for pick in (s.pick, *s.picks.values())
    )


def _close(new: Mapping[str, float], old: Mapping[str, float], tolerance: float = 0.1) -> bool:
    """Costs within 10 % of the last view's: not worth rebuilding every decision for."""
    if new.keys() != old.keys():
        return False
    return all(abs(value - old[key]) <= tolerance * max(abs(old[key]), 1.0) for key, value in new.items())
