"""Composition root: builds every part from a Config and owns their lifecycles.

Everything with a lifecycle is an async context manager entered on one AsyncExitStack.
The query path is wired here and nowhere else: health changes build a new `Steering` and
swap it into the handler (HealthSync's callback); SIGHUP builds a whole new handler off the
event loop and swaps the reference, and restarts the in-process prober on the new endpoints.
The steering maps compile in a child process once the listeners are open.

Modes: with no `state.redis_url`, `gslb serve` is the embedded mode (memory store, prober
and api in the same process); with Redis, `gslb serve` is a responder only, `gslb probe`
and `gslb api` run elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gslb.api.context import ApiContext
from gslb.api.server import bind_http, run_api, run_metrics
from gslb.config.loader import load
from gslb.config.model import Config
from gslb.dns.server import bind_dns, dns_listeners
from gslb.errors import ConfigError, GslbError
from gslb.fleet import Registration, responder_id
from gslb.lifecycle import cancel_all
from gslb.logs import counted, without_password
from gslb.nodehealth import NodeStatus
from gslb.probe.slot import ProberSlot
from gslb.responder import DEFAULT_CONFIG, Parts, Responder, build_parts, prepare_maps
from gslb.state.snapshot_file import load_snapshot
from gslb.state.store import Store, open_store
from gslb.state.sync import HealthSync

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CONFIG", "api", "probe", "serve", "state_dir"]

# What chooses each listening address, for the one line a port in use gets (gslb.errors.ListenError).
API_LISTEN_SETTINGS = "--api-listen or api.listen"
METRICS_LISTEN_SETTINGS = "--metrics-listen or server.metrics_listen"
API_ONLY_LISTEN_SETTINGS = "--listen or api.listen"  # `gslb api`


def state_dir() -> Path:
    """Per-user folder for local state (snapshots, the embedded api token)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gslb"


def map_cache_dir() -> Path:
    """Where compiled steering maps are cached (each file named by the hash of what it was
    compiled from, so one folder serves every config and database)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gslb" / "maps"


def with_snapshot_path(config: Config) -> Config:
    """Every process keeps its last good state on disk; default: a per-config file in state_dir()."""
    if config.state.snapshot_path is not None:
        return config
    if config.source.resolve() == DEFAULT_CONFIG.resolve():
        name = "embedded"
    else:
        name = hashlib.sha256(str(config.source.resolve()).encode()).hexdigest()[:16]
    return replace(config, state=replace(config.state, snapshot_path=state_dir() / f"{name}.snapshot.json"))


async def _restore_embedded_drains(config: Config, store: Store) -> None:
    """Embedded mode keeps drains across restarts through the local snapshot file."""
    path = config.state.snapshot_path
    snapshot = await asyncio.to_thread(load_snapshot, path) if path is not None and path.exists() else None
    if snapshot is None:
        return
    for drain in snapshot.drains:
        await store.add_drain(drain, publish=False)
    if snapshot.drains:
        log.info("restored %s from %s", counted(len(snapshot.drains), "drain"), path)


@contextlib.asynccontextmanager
async def _signals(
    stop: asyncio.Event,
    reload: Callable[[], Coroutine[Any, Any, None]],
    on_term: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """SIGTERM/SIGINT set `stop` (SIGTERM calls `on_term` instead when given: the responder's
    lame duck); SIGHUP runs `reload()` as a task (one line of log per outcome)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_term or stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _tune_gc() -> None:
    """Fewer, cheaper collections: measured ~20% off the ECS cache-miss path (bench/RESULTS.md).

    Everything built so far (config, zones, GeoIP tables) lives for the whole process:
    freeze it out of the collector's scans, and collect the young generation less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def supervise(config: Config, argv: Sequence[str]) -> None:
    """`server.workers` > 1: run that many `gslb serve` processes sharing the listeners
    (SO_REUSEPORT; the kernel spreads queries over them), forward SIGHUP/SIGTERM/SIGINT, and
    restart a worker that dies. Each worker syncs with Redis on its own."""
    # An address in use is one line here, not a worker that fails and restarts forever. Bound
    # and closed at once: a socket held here would get its share of the queries, unread.
    bind_dns(config.server.listen, reuse_port=True).close()
    metrics = config.server.metrics_listen
    if metrics is not None:  # one port per worker (`serve`)
        for index in range(config.server.workers):
            bind_http(replace(metrics, port=metrics.port + index), settings=METRICS_LISTEN_SETTINGS).close()
    stop = asyncio.Event()
    workers: dict[int, asyncio.subprocess.Process] = {}

    async def start(index: int) -> None:
        command = [sys.executable, "-m", "gslb", *argv, "--worker", str(index)]
        workers[index] = await asyncio.create_subprocess_exec(*command)
        log.info("worker %d started, pid %d", index, workers[index].pid)

    async def watch(index: int) -> None:
        while not stop.is_set():
            code = await workers[index].wait()
            if stop.is_set():
                return
            log.error("worker %d exited with %s; restarting it in 1 s", index, code)
            await asyncio.sleep(1.0)
            if not stop.is_set():
                await start(index)

    def forward(sig: signal.Signals) -> None:
        if sig is not signal.SIGHUP:
            stop.set()
        for process in workers.values():
            if process.returncode is None:
                process.send_signal(sig)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, forward, sig)
    for index in range(config.server.workers):
        await start(index)
    watchers = [asyncio.create_task(watch(index)) for index in range(config.server.workers)]
    await stop.wait()
    await asyncio.gather(*(p.wait() for p in workers.values()))
    await cancel_all(watchers)
    log.info("all workers stopped")


async def serve(
    config: Config, *, worker: int | None = None, ready: Callable[[], None] | None = None
) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads config and zones.

    `worker`: this process is one of `server.workers` (listeners opened with SO_REUSEPORT;
    a metrics port is offset by the worker index).
    """
    if worker is not None:
        server = config.server
        metrics = server.metrics_listen
        if metrics is not None:
            metrics = replace(metrics, port=metrics.port + worker)
        config = replace(config, server=replace(server, metrics_listen=metrics))
    config = with_snapshot_path(config)
    embedded = config.state.redis_url is None
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # Every address first: one in use is one line (ListenError) before anything starts.
        dns_sockets = stack.enter_context(bind_dns(config.server.listen, reuse_port=worker is not None))
        api_socket = (
            stack.enter_context(bind_http(config.api.listen, settings=API_LISTEN_SETTINGS))
            if embedded
            else None
        )
        metrics_listen = config.server.metrics_listen
        metrics_socket = (
            None
            if metrics_listen is None
            else stack.enter_context(bind_http(metrics_listen, settings=METRICS_LISTEN_SETTINGS))
        )
        responder = Responder(config, cache_dir=map_cache_dir())
        _tune_gc()
        store = await stack.enter_async_context(open_store(config.state))
        if embedded:
            await _restore_embedded_drains(config, store)
        sync = await stack.enter_async_context(
            HealthSync.from_config(store, config, on_change=responder.apply_view)
        )
        responder.apply_view(sync.current)
        slot = ProberSlot(store)
        context = ApiContext(lambda: responder.parts, store, sync, slot, responder_local=True)
        context.responder = responder
        reloaded: list[Callable[[], None]] = []  # the registration, once it runs
        if embedded:
            stack.push_async_callback(slot.stop)
            await slot.start(config)
            await stack.enter_async_context(run_api(config.api, context, sock=api_socket))

        async def reload() -> None:
            ok = await responder.reload()
            for callback in reloaded:
                callback()
            if ok and embedded:
                await slot.start(with_snapshot_path(responder.config))

        # This responder's own counters (in embedded mode the api's /metrics has them too),
        # and /healthz and /readyz for load balancers, anycast checkers and orchestrators.
        node = NodeStatus()
        if config.server.metrics_listen is not None:
            await stack.enter_async_context(
                run_metrics(config.server.metrics_listen, context, node, sock=metrics_socket)
            )
        on_term = _LameDuck(lambda: _lame_duck_s(config, responder.config), node, stop)
        stack.callback(on_term.cancel)

        await stack.enter_async_context(_signals(stop, reload, on_term))
        tcp = await stack.enter_async_context(
            dns_listeners(
                responder.ref,
                config.server.listen,
                config.server.tcp,
                reuse_port=worker is not None,
                sockets=dns_sockets,
            )
        )
        context.tcp = tcp.stats
        node.listening = True
        # This responder's record in the store (the fleet view of `gslb state` and the api).
        registration = await stack.enter_async_context(
            Registration(responder, sync, store, responder_id=responder_id(config, worker), embedded=embedded)
        )
        reloaded.append(registration.wake)
        maps = asyncio.create_task(responder.prepare_maps())
        reports = asyncio.create_task(responder.report_rate_limiting())
        stack.push_async_callback(cancel_all, [maps, reports])
        mode = "embedded" if embedded else "distributed"
        log.info(
            "gslb serving %s, %s (%s mode%s)",
            counted(len(config.zones), "zone"),
            counted(len(config.services), "service"),
            mode,
            "" if embedded else f", state in {without_password(str(config.state.redis_url))}",
            extra={"zones": len(config.zones), "services": len(config.services), "mode": mode},
        )
        if ready:
            ready()
        await stop.wait()
        node.draining = True
        log.info("stopping")


class _LameDuck:
    """The responder's SIGTERM: say not ready (/readyz 503) and keep answering DNS for
    `lame_duck_s`, then stop, so routes and load balancers move away first. A second SIGTERM
    (or SIGINT, handled by `_signals`) stops at once; so does SIGTERM with no lame duck."""

    def __init__(self, lame_duck_s: Callable[[], float], node: NodeStatus, stop: asyncio.Event) -> None:
        self.lame_duck_s = lame_duck_s  # read at SIGTERM: a reload may have changed it
        self.node = node
        self.stop = stop
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        lame_duck_s = self.lame_duck_s()
        if self.node.draining or lame_duck_s <= 0:
            self.stop.set()
            return
        self.node.draining = True
        log.info(
            "lame duck for %g s: /readyz says not ready, DNS is still answered; then stopping "
            "(another SIGTERM, or SIGINT, stops at once)",
            lame_duck_s,
        )
        self._timer = asyncio.get_running_loop().call_later(lame_duck_s, self.stop.set)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _lame_duck_s(started: Config, current: Config) -> float:
    """The current config's lame duck; none without a metrics listener (the one opened at
    start): nothing else can tell anyone that the node is draining."""
    return current.server.lame_duck_s if started.server.metrics_listen is not None else 0.0


async def probe(config: Config) -> None:
    """`gslb probe`: check every endpoint and write the verdicts to Redis until stopped."""
    if config.state.redis_url is None:
        raise ConfigError(
            str(config.source),
            ["state.redis_url: gslb probe needs Redis (without it, gslb serve probes in-process)"],
        )
    stop = asyncio.Event()
    current = {"config": config}
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(config.state))
        slot = ProberSlot(store)
        stack.push_async_callback(slot.stop)
        await slot.start(config)

        async def reload() -> None:
            try:
                new = load(current["config"].source, current["config"].settings)
            except GslbError as exc:
                log.error("reload failed; still probing the previous config:\n%s", exc)
                return
            current["config"] = new
            await slot.start(new)

        await stack.enter_async_context(_signals(stop, reload))
        await stop.wait()
        log.info("stopping")


async def api(config: Config, *, ready: Callable[[], None] | None = None) -> None:
    """`gslb api`: the ops api over the shared Redis state until stopped; SIGHUP reloads config."""
    if config.state.redis_url is None:
        raise ConfigError(
            str(config.source),
            ["state.redis_url: gslb api needs Redis (without it, gslb serve runs the api in-process)"],
        )
    # The api reads Redis only; it keeps no snapshot file (a responder on the same host does).
    config = replace(config, state=replace(config.state, snapshot_path=None))
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # The address first: one in use is one line (ListenError) before anything starts.
        api_socket = stack.enter_context(bind_http(config.api.listen, settings=API_ONLY_LISTEN_SETTINGS))
        store = await stack.enter_async_context(open_store(config.state))
        sync = await stack.enter_async_context(HealthSync.from_config(store, config))
        current: dict[str, Parts] = {"parts": build_parts(config, sync.current)}
        maps = asyncio.create_task(prepare_maps(current["parts"], map_cache_dir()))
        stack.push_async_callback(cancel_all, [maps])

        async def reload() -> None:
            source = current["parts"].config.source
            try:
                new = load(source, current["parts"].config.settings)
                new = replace(new, state=replace(new.state, snapshot_path=None))
                current["parts"] = await asyncio.to_thread(build_parts, new, sync.current, current["parts"])
            except GslbError as exc:
                log.error("reload of %s failed; still using the previous config:\n%s", source, exc)
                return
            if new.api != config.api:
                log.warning("api settings changed: they take effect at the next restart")
            log.info("reloaded %s", source)
            await prepare_maps(current["parts"], map_cache_dir())

        context = ApiContext(lambda: current["parts"], store, sync, None, responder_local=False)
        await stack.enter_async_context(run_api(config.api, context, sock=api_socket))
        await stack.enter_async_context(_signals(stop, reload))
        log.info("gslb api ready, state in %s", without_password(str(config.state.redis_url)))
        if ready:
            ready()
        await stop.wait()
        log.info("stopping")
