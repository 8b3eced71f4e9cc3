"""A responder's registration in the store: who it is, what it serves, how current it is.

Composition level: reads the live `Responder` and `HealthSync` and writes a
`gslb.state.responders.ResponderRecord` through the `Store` (never redis directly). The
`Registration` context manager owns one background task that writes the record every
`HEARTBEAT_INTERVAL_S`, at once when the health sync applies a new store version (so the api
can say within milliseconds which responders have applied a drain) and after a reload; on a
clean stop it writes a last record marked stopped. The query path never waits for it: the
record is built from in-memory values, and a slow or lost store only delays the next write.

Identity: `<host name>:<port of the first listener>` (with `/w<n>` for a worker of
`server.workers`), unique on a host even when several responders share one config file
(`server.identity` names what a resolver sees and is often the same everywhere; it is shown
beside the id). A responder that finds another live process writing under its id says so once.

Answer counters: the handler's steered replies summed by datacenter, carried over reloads
(a reload builds a new handler whose counts start at 0), and the rate per datacenter over the
last `RATE_WINDOW_S`, so the api needs no history of its own to show answers per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from types import MappingProxyType, TracebackType

from gslb import __version__
from gslb.config.model import Config, Listen
from gslb.dns.handler import Handler
from gslb.errors import StateError
from gslb.lifecycle import cancel_all
from gslb.responder import Responder
from gslb.state.responders import (
    FORGET_AFTER_S,
    HEARTBEAT_INTERVAL_S,
    STALE_AFTER_S,
    ResponderRecord,
    drain_id,
)
from gslb.state.store import Store
from gslb.state.sync import HealthSync

log = logging.getLogger(__name__)

RATE_WINDOW_S = 5.0
"""Answers per second are averaged over about this long."""
PRUNE_EVERY_S = 60.0
"""How often a responder drops the records of responders gone for FORGET_AFTER_S."""
STOP_WRITE_S = 1.0
"""The last (stopped) record gets at most this long: a stop never waits on a lost store."""


def listen_text(listen: Listen) -> str:
    return f"[{listen.host}]:{listen.port}" if ":" in listen.host else f"{listen.host}:{listen.port}"


def responder_id(config: Config, worker: int | None = None, *, host: str | None = None) -> str:
    """`<host name>:<port of the first listener>[/w<worker>]` (see the module docstring)."""
    name = host or socket.gethostname()
    port = config.server.listen[0].port if config.server.listen else 0
    return f"{name}:{port}" + ("" if worker is None else f"/w{worker}")


def configured_identity(config: Config) -> str:
    identity = config.server.identity
    return identity.id_server or identity.nsid or identity.hostname_bind or ""


class AnswerCounter:
    """Steered replies by datacenter, carried over handler swaps, and their recent rate."""

    def __init__(self, *, window_s: float = RATE_WINDOW_S) -> None:
        self._handler: Handler | None = None
        self._carried: Counter[str] = Counter()
        self._samples: deque[tuple[float, Counter[str]]] = deque()
        self._window_s = window_s

    def totals(self, handler: Handler) -> Counter[str]:
        """Answers per datacenter since start (all handlers so far)."""
        if self._handler is not None and handler is not self._handler:
            self._carried += _by_datacenter(self._handler)  # the old handler's counts are final
        self._handler = handler
        out = Counter(self._carried)
        out.update(_by_datacenter(handler))
        return out

    def sample(self, handler: Handler, now: float) -> tuple[dict[str, int], dict[str, float]]:
        """(totals, answers per second over the window) at `now`."""
        totals = self.totals(handler)
        self._samples.append((now, totals))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()
        first_at, first = self._samples[0]
        span = now - first_at
        rates: dict[str, float] = {}
        if span > 0:
            rates = {dc: max(0, totals[dc] - first[dc]) / span for dc in sorted(totals)}
        return dict(sorted(totals.items())), rates


def _by_datacenter(handler: Handler) -> Counter[str]:
    out: Counter[str] = Counter()
    for label, count in handler.totals().items():
        if label.datacenter:
            out[label.datacenter] += count
    return out


class Registration:
    """Writes this responder's record to the store (see the module docstring)."""

    def __init__(
        self,
        responder: Responder,
        sync: HealthSync,
        store: Store,
        *,
        responder_id: str,
        embedded: bool,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.responder = responder
        self.sync = sync
        self.store = store
        self.id = responder_id
        self.embedded = embedded
        self.interval_s = interval_s
        self.now = now
        self.started_at = now()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.writes = 0
        self.failures = 0
        self.answers = AnswerCounter()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lost = False
        self._bug = False
        self._warned_twin = False
        self._pruned_at = 0.0

    def wake(self) -> None:
        """Write the record now (a new store version applied, a reload done)."""
        self._wake.set()

    def record(self, *, stopped: bool = False) -> ResponderRecord:
        """The record as of now, built from in-memory values only."""
        now = self.now()
        responder, sync = self.responder, self.sync
        config = responder.config
        totals, rates = self.answers.sample(responder.parts.handler, now)
        drains = tuple(
            sorted(
                drain_id(d.kind.value, d.target, d.created_at) for d in sync.current.drains if d.active(now)
            )
        )
        return ResponderRecord(
            id=self.id,
            at=now,
            host=self.host,
            pid=self.pid,
            version=__version__,
            started_at=self.started_at,
            listen=tuple(listen_text(listen) for listen in config.server.listen),
            identity=configured_identity(config),
            config_path=str(config.source),
            config_hash=responder.config_hash,
            serials=MappingProxyType(responder.serials()),
            last_reload=responder.last_reload,
            state_version=sync.store_version,
            state_applied_at=sync.applied_at,
            last_sync_at=sync.last_sync_at,
            store_connected=sync.connected,
            mode="embedded" if self.embedded else "distributed",
            drains=drains,
            answers=MappingProxyType(totals),
            answers_per_s=MappingProxyType(rates),
            stopped_at=now if stopped else None,
        )

    async def __aenter__(self) -> Registration:
        self.sync.on_version(self.wake)
        await self.write_once()
        self._task = asyncio.create_task(self._loop(), name="gslb-registration")
        log.info("registered as responder %s", self.id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
        with contextlib.suppress(StateError, TimeoutError):
            async with asyncio.timeout(STOP_WRITE_S):
                await self.store.write_responder(self.record(stopped=True))

    async def write_once(self) -> bool:
        """Write the record now; False when the store failed (logged once per outage)."""
        try:
            async with asyncio.timeout(max(1.0, self.interval_s * 2)):
                previous = await self.store.write_responder(self.record())
                now = self.now()
                if now - self._pruned_at >= PRUNE_EVERY_S:
                    self._pruned_at = now
                    gone = await self.store.forget_responders(now - FORGET_AFTER_S)
                    if gone:
                        log.info(
                            "forgot responders gone for over %.0f s: %s", FORGET_AFTER_S, ", ".join(gone)
                        )
        except (StateError, TimeoutError) as e:
            self.failures += 1
            if not self._lost:
                self._lost = True
                log.warning(
                    "cannot register responder %s in the state store: %s", self.id, e or type(e).__name__
                )
            return False
        except Exception:
            self.failures += 1
            if not self._bug:
                self._bug = True
                log.exception("unexpected error registering responder %s (a bug; logged once)", self.id)
            return False
        if self._lost or self._bug:
            log.warning("responder %s registered in the state store again", self.id)
        self._lost = self._bug = False
        if self.writes > 0:
            self._check_twin(previous)
        self.writes += 1
        return True

    def _check_twin(self, previous: ResponderRecord | None) -> None:
        """Another live process writing under our id: say so once (their records would flap)."""
        if previous is None or self._warned_twin:
            return
        ours = (previous.host, previous.pid, previous.started_at) == (self.host, self.pid, self.started_at)
        if not ours and previous.stopped_at is None and self.now() - previous.at < STALE_AFTER_S:
            self._warned_twin = True
            log.warning(
                "responder id %s is also registered by pid %d on %s: the fleet view mixes the two; "
                "give each responder its own first listener port (--listen) or host",
                self.id,
                previous.pid,
                previous.host,
            )

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.write_once()
