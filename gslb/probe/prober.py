"""The prober loop: check every endpoint on its interval and keep this prober's states in the store.

Adapter layer: asyncio, standard library, `gslb.health` (decisions), `gslb.state` (the store
contract, never redis) and `gslb.probe.checks`. `Prober` is an async context manager:

- endpoints sharing one check and one probe address are checked once for all of them;
- each target runs on its own interval, the first run spread at random over the interval so
  a thousand endpoints do not fire in the same millisecond; a semaphore bounds concurrency;
- a check that times out or raises counts as a failure, and the loop carries on;
- every result goes through `gslb.health.tracker.next_state` (with its rtt, load figure and
  each endpoint's own peak-EWMA decay time); changed states are written in
  one batch per heartbeat interval with the heartbeat, and at once (coalesced for
  `MIN_WRITE_GAP_S`) when some endpoint's health changed, so responders hear of it quickly;
- when the store is unreachable (`StateError`, or a timeout) the states are kept and written
  when it is back; any other exception from a write is a bug: its traceback is logged once
  (until a write works again), the states are kept the same way and the loop goes on.

One line is logged per endpoint health change (and per store lost/back), never per check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from gslb.config.model import Check, Config, IPAddress
from gslb.errors import StateError
from gslb.health.tracker import EndpointState, next_state
from gslb.health.view import Health
from gslb.lifecycle import cancel_all
from gslb.logs import counted
from gslb.probe.checks import Checker, CheckResult, CheckRunner
from gslb.state.store import Store

log = logging.getLogger(__name__)

FULL_WRITE_INTERVAL_S = 60.0
"""All states are rewritten this often (and after any failed write, and when the store
version goes backwards), so a store that lost data is whole again within a minute."""

MIN_WRITE_GAP_S = 0.05
"""Health changes are written at once, but at most this often: a datacenter failing
makes many endpoints change within milliseconds, and one write can carry them all."""


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to check: a check and an address, shared by one or more endpoints."""

    check: Check
    address: IPAddress
    endpoint_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProberStats:
    """Counters since start, for metrics and the benchmark."""

    targets: int
    checks: int
    failures: int
    timeouts: int
    errors: int  # unexpected exceptions in a check (a bug, or an odd endpoint)
    late: int  # checks that started more than one interval late (the prober is overloaded)
    check_seconds: float  # total time spent in checks, semaphore wait excluded
    max_check_seconds: float
    writes: int
    write_failures: int
    last_write_at: float | None


def default_prober_id(config: Config) -> str:
    """The configured prober id, else the host name."""
    return config.prober.id or socket.gethostname()


def plan_targets(config: Config) -> tuple[Target, ...]:
    """Group endpoints by (check, probe address) so a shared backend is checked once."""
    groups: dict[tuple[Check, IPAddress], list[str]] = {}
    for endpoint in config.endpoints():
        address = endpoint.check.address or endpoint.address
        groups.setdefault((endpoint.check, address), []).append(endpoint.id)
    return tuple(Target(check, address, tuple(ids)) for (check, address), ids in groups.items())


class Prober:
    """Checks every endpoint of `config` and writes this prober's states to `store`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        prober_id: str,
        *,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        resume: bool = True,
        checker: CheckRunner | None = None,
    ) -> None:
        self.prober_id = prober_id
        self.targets = plan_targets(config)
        # Endpoints sharing a target share its results but not their policy's decay time.
        self._tau_s = {endpoint.id: endpoint.ewma_tau_s for endpoint in config.endpoints()}
        self._store = store
        self._now = now
        self._rng = rng or random.Random()
        self._resume = resume
        self._heartbeat_interval_s = config.prober.heartbeat_interval_s
        self._write_timeout_s = max(1.0, config.state.redis_timeout_s * 4)
        self._semaphore = asyncio.Semaphore(config.prober.max_concurrency)
        self._checker: CheckRunner = checker or Checker(
            max_connections=config.prober.max_concurrency, rng=self._rng
        )
        self._states: dict[str, EndpointState] = {
            endpoint_id: EndpointState() for target in self.targets for endpoint_id in target.endpoint_ids
        }
        self._dirty: dict[str, EndpointState] = {}
        self._changed = True  # the first write announces this prober: responders resync
        self._replace_pending = True
        self._last_full_write = 0.0
        self._last_version = 0
        self._flush_now = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._store_ok: bool | None = None
        self._write_bug = False  # the last write failed with something other than StateError
        self._erroring: set[Target] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # counters
        self._checks = self._failures = self._timeouts = self._errors = self._late = 0
        self._check_seconds = self._max_check_seconds = 0.0
        self._writes = self._write_failures = 0
        self._last_write_at: float | None = None

    @property
    def states(self) -> Mapping[str, EndpointState]:
        """This prober's current state per endpoint id (read-only)."""
        return MappingProxyType(self._states)

    @property
    def stats(self) -> ProberStats:
        return ProberStats(
            targets=len(self.targets),
            checks=self._checks,
            failures=self._failures,
            timeouts=self._timeouts,
            errors=self._errors,
            late=self._late,
            check_seconds=self._check_seconds,
            max_check_seconds=self._max_check_seconds,
            writes=self._writes,
            write_failures=self._write_failures,
            last_write_at=self._last_write_at,
        )

    async def __aenter__(self) -> Prober:
        await self._checker.__aenter__()
        try:
            if self._resume:
                await self._resume_states()
            await self.flush()
            self._tasks = [
                asyncio.create_task(self._run_target(target), name=f"gslb-probe-{target.endpoint_ids[0]}")
                for target in self.targets
            ]
            self._tasks.append(asyncio.create_task(self._write_loop(), name="gslb-probe-writer"))
        except BaseException:
            await self._checker.__aexit__(None, None, None)
            raise
        log.info("prober %s checking %s", self.prober_id, counted(len(self.targets), "target"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        try:
            await self.flush()  # the latest states, so a restart resumes from them
        finally:
            await self._checker.__aexit__(exc_type, exc, tb)

    async def flush(self) -> bool:
        """Write pending states and the heartbeat now; False (and kept for later) on failure."""
        async with self._write_lock:
            monotonic = time.monotonic()
            replace = self._replace_pending or monotonic - self._last_full_write >= FULL_WRITE_INTERVAL_S
            states = dict(self._states) if replace else self._dirty
            changed = self._changed
            self._dirty, self._changed = {}, False
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    version = await self._store.write_states(
                        self.prober_id,
                        states,
                        heartbeat_at=self._now(),
                        changed=changed,
                        replace=replace,
                    )
            except (StateError, TimeoutError) as e:
                self._keep_for_retry(states)
                if self._store_ok is not False:
                    log.warning(
                        "prober %s cannot write to the state store: %s", self.prober_id, e or type(e).__name__
                    )
                self._store_ok = False
                return False
            except Exception:
                # Not an outage but a bug: its traceback once, not per write; keep probing.
                self._keep_for_retry(states)
                if not self._write_bug:
                    log.exception(
                        "prober %s: unexpected error writing to the state store "
                        "(a bug; logged once until a write works)",
                        self.prober_id,
                    )
                self._write_bug = True
                return False
            if self._store_ok is False:
                log.warning("prober %s writes to the state store again", self.prober_id)
            if self._write_bug:
                log.warning(
                    "prober %s writes to the state store again after an unexpected error", self.prober_id
                )
            self._store_ok = True
            self._write_bug = False
            if replace:
                self._replace_pending = False
                self._last_full_write = monotonic
            if version < self._last_version:
                log.warning(
                    "state store version went back from %d to %d (store reset?); rewriting all states",
                    self._last_version,
                    version,
                )
                self._replace_pending = self._changed = True
                self._flush_now.set()
            self._last_version = version
            self._writes += 1
            self._last_write_at = self._now()
            return True

    def _keep_for_retry(self, states: Mapping[str, EndpointState]) -> None:
        """A write failed: keep its states for the next one, which rewrites everything."""
        self._write_failures += 1
        for endpoint_id, state in states.items():
            self._dirty.setdefault(endpoint_id, state)  # newer results stay newer
        # The store may come back empty (a restarted Redis): resend everything then.
        self._replace_pending = True
        self._changed = True

    async def _resume_states(self) -> None:
        """Start from what this prober wrote before a restart, so hysteresis carries over."""
        try:
            async with asyncio.timeout(self._write_timeout_s):
                stored = await self._store.read_states(self.prober_id)
        except (StateError, TimeoutError) as e:
            log.warning(
                "prober %s starts without its previous states: %s", self.prober_id, e or type(e).__name__
            )
            return
        except Exception:
            log.exception("prober %s starts without its previous states (unexpected error)", self.prober_id)
            return
        resumed = {eid: state for eid, state in stored.items() if eid in self._states}
        self._states.update(resumed)
        if resumed:
            down = sum(1 for s in resumed.values() if s.health is not Health.UP)
            log.info("prober %s resumed %d endpoint states (%d not up)", self.prober_id, len(resumed), down)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, last + self._heartbeat_interval_s - loop.time())):
                    await self._flush_now.wait()
            gap = last + MIN_WRITE_GAP_S - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            self._flush_now.clear()
            last = loop.time()
            await self.flush()

    async def _run_target(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        interval = target.check.interval_s
        due = loop.time() + self._rng.uniform(0.0, interval)
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > interval:
                self._late += 1
                due = loop.time()  # skip the missed runs rather than bunching them up
            result = await self._probe(target)
            self._record(target, result)
            due += interval

    async def _probe(self, target: Target) -> CheckResult:
        check = target.check
        async with self._semaphore:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(check.timeout_s):
                    result = await self._checker.run(check, target.address)
            except TimeoutError:
                self._timeouts += 1
                result = CheckResult(False, None, f"timeout after {check.timeout_s:g} s")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._errors += 1
                result = CheckResult(False, None, f"check error: {type(e).__name__}: {e}")
                if target not in self._erroring:
                    self._erroring.add(target)
                    log.warning(
                        "%s check of %s raised (counted as a failure until it passes)",
                        check.kind.value,
                        target.address,
                        exc_info=True,
                    )
            elapsed = time.perf_counter() - started
        self._checks += 1
        self._check_seconds += elapsed
        self._max_check_seconds = max(self._max_check_seconds, elapsed)
        if not result.ok:
            self._failures += 1
        elif target in self._erroring:
            self._erroring.discard(target)
        return result

    def _record(self, target: Target, result: CheckResult) -> None:
        now = self._now()
        for endpoint_id in target.endpoint_ids:
            prev = self._states[endpoint_id]
            state = next_state(
                prev,
                result.ok,
                result.rtt_ms,
                now=now,
                check=target.check,
                detail=result.detail,
                load=result.load,
                tau_s=self._tau_s[endpoint_id],
            )
            self._states[endpoint_id] = state
            self._dirty[endpoint_id] = state
            if state.health is not prev.health:
                self._changed = True
                self._flush_now.set()
                log.log(
                    logging.INFO if state.health is Health.UP else logging.WARNING,
                    "prober %s: endpoint %s is %s (was %s): %s",
                    self.prober_id,
                    endpoint_id,
                    state.health.value,
                    prev.health.value,
                    _why(state),
                )


def _why(state: EndpointState) -> str:
    if state.health is Health.DEGRADED:
        return f"rtt ewma {state.ewma_rtt_ms or 0:.1f} ms (baseline {state.baseline_rtt_ms or 0:.1f} ms)"
    if state.health is Health.DOWN:
        return f"{state.fail_streak} failures, last: {state.detail}"
    return f"{state.ok_streak} passes, last: {state.detail}"
