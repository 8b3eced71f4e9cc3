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
from gslb.api.server import run_api, run_metrics
from gslb.config.loader import load
from gslb.config.model import Config
from gslb.dns.server import dns_listeners
from gslb.errors import ConfigError, GslbError
from gslb.lifecycle import cancel_all
from gslb.probe.slot import ProberSlot
from gslb.responder import DEFAULT_CONFIG, Parts, Responder, build_parts, prepare_maps
from gslb.state.snapshot_file import load_snapshot
from gslb.state.store import Store, open_store
from gslb.state.sync import HealthSync

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CONFIG", "api", "probe", "serve", "state_dir"]


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
        log.info("restored %d drains from %s", len(snapshot.drains), path)


@contextlib.asynccontextmanager
async def _signals(
    stop: asyncio.Event, reload: Callable[[], Coroutine[Any, Any, None]]
) -> AsyncIterator[None]:
    """SIGTERM/SIGINT set `stop`; SIGHUP runs `reload()` as a task (one line of log per outcome)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
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
    responder = Responder(config, cache_dir=map_cache_dir())
    _tune_gc()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(config.state))
        if embedded:
            await _restore_embedded_drains(config, store)
        sync = await stack.enter_async_context(
            HealthSync.from_config(store, config, on_change=responder.apply_view)
        )
        responder.apply_view(sync.current)
        slot = ProberSlot(store)
        context = ApiContext(lambda: responder.parts, store, sync, slot, responder_local=True)
        if embedded:
            stack.push_async_callback(slot.stop)
            await slot.start(config)
            await stack.enter_async_context(run_api(config.api, context))

        async def reload() -> None:
            if await responder.reload() and embedded:
                await slot.start(with_snapshot_path(responder.config))

        # This responder's own counters (in embedded mode the api's /metrics has them too).
        if config.server.metrics_listen is not None:
            await stack.enter_async_context(run_metrics(config.server.metrics_listen, context))

        await stack.enter_async_context(_signals(stop, reload))
        tcp = await stack.enter_async_context(
            dns_listeners(
                responder.ref, config.server.listen, config.server.tcp, reuse_port=worker is not None
            )
        )
        context.tcp = tcp.stats
        maps = asyncio.create_task(responder.prepare_maps())
        reports = asyncio.create_task(responder.report_rate_limiting())
        stack.push_async_callback(cancel_all, [maps, reports])
        log.info(
            "gslb serving %d zones, %d services (%s mode)",
            len(config.zones),
            len(config.services),
            "embedded" if embedded else f"distributed, state in {config.state.redis_url}",
        )
        if ready:
            ready()
        await stop.wait()
        log.info("stopping")


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
                new = load(current["config"].source)
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
        store = await stack.enter_async_context(open_store(config.state))
        sync = await stack.enter_async_context(HealthSync.from_config(store, config))
        current: dict[str, Parts] = {"parts": build_parts(config, sync.current)}
        maps = asyncio.create_task(prepare_maps(current["parts"], map_cache_dir()))
        stack.push_async_callback(cancel_all, [maps])

        async def reload() -> None:
            source = current["parts"].config.source
            try:
                new = load(source)
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
        await stack.enter_async_context(run_api(config.api, context))
        await stack.enter_async_context(_signals(stop, reload))
        log.info("gslb api ready, state in %s", config.state.redis_url)
        if ready:
            ready()
        await stop.wait()
        log.info("stopping")
