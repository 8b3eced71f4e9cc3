"""The DNS side of a process: zones, locator, steering maps and the handler built from a Config.

Composition level. `build_parts` turns one Config into everything the query path needs and is
safe to run in a thread; `Responder` owns the current `Parts`, swaps a new `Steering` in when
health changes, builds a reloaded config off the event loop and swaps it in with one
assignment, and compiles the steering maps in a child process (so that the compile neither
holds the event loop nor the GIL), loading them from the disk cache when it has them.
`Parts` is also the facade the api reads (counters, zone lookup, explain), so nothing outside
this module reaches into the handler.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import json
import logging
import os
import pickle
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gslb.config.loader import load
from gslb.config.model import Config, Override
from gslb.dns.handler import Handler, ReplyLabel
from gslb.dns.rrl import RateLimiter
from gslb.dns.server import HandlerRef
from gslb.dns.zonefile import load_zones
from gslb.errors import ConfigError, GslbError
from gslb.geo.locator import Locator, load_overrides
from gslb.geo.steermap import SteerMap, cache_key, load_cached, load_or_compile
from gslb.health.view import HealthView
from gslb.logs import counted
from gslb.policy.steering import Orders, Steering, specs
from gslb.state.responders import ReloadResult
from gslb.zone import name as dnsname
from gslb.zone.zone import Zone, Zones

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).parent / "data" / "gslb.yaml"


@dataclass
class Parts:
    """What one config builds; a reload builds a new one and swaps it whole."""

    config: Config
    locator: Locator
    zones: Zones
    orders: Orders
    handler: Handler
    maps_id: str  # what the steering maps are compiled from (their cache key)
    rrl: RateLimiter | None = None  # response rate limiting of UDP replies (server.rrl)

    def totals(self) -> dict[ReplyLabel, int]:
        """Replies sent by this process's handler, by label."""
        return self.handler.totals()

    def find_zone(self, name: str) -> Zone | None:
        """The zone holding `name` (presentation form), or None."""
        try:
            return self.zones.find(dnsname.key(dnsname.from_text(name.rstrip(".") + ".")))
        except ValueError:
            return None


def config_file_hash(path: Path) -> str:
    """sha256 of the config file's bytes ("" when it cannot be read): the fleet view compares it."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def build_locator(config: Config) -> Locator:
    overrides: tuple[Override, ...] = ()
    if config.geoip.overrides is not None:
        overrides = load_overrides(config.geoip.overrides)
        unknown = sorted({o.datacenter for o in overrides if o.datacenter} - set(config.datacenters))
        if unknown:
            known = ", ".join(config.datacenters)
            raise ConfigError(
                str(config.geoip.overrides), [f'unknown datacenter "{n}" (known: {known})' for n in unknown]
            )
    return Locator(config.geoip.database, overrides)


def map_key(config: Config) -> str:
    """What, besides the database and overrides, the compiled maps depend on."""
    classes = [(s.strategy.value, s.datacenters, s.rules) for s in specs(config)]
    positions = {n: (d.latitude, d.longitude) for n, d in sorted(config.datacenters.items())}
    return json.dumps({"specs": classes, "positions": positions, "default": config.geoip.default_order})


def build_parts(config: Config, view: HealthView, previous: Parts | None = None) -> Parts:
    """Zones, locator, orders and handler for one config; raises ConfigError listing every
    problem. The maps of `previous` are kept when nothing they depend on changed."""
    zones = load_zones(config)
    locator = build_locator(config)  # always anew: the database or overrides file may have changed
    if config.geoip.database is None:
        log.warning(
            "the bundled GeoLite2 City database is from 2018 and places many networks wrongly "
            "today: set geoip.database to a current MaxMind GeoIP2/GeoLite2 or DB-IP City file"
        )
    orders = Orders(config, locator)
    maps_id = cache_key(locator, map_key(config)) if config.services else ""
    previous_maps = previous.orders.maps if previous is not None else None
    if previous is not None and previous_maps is not None and previous.maps_id == maps_id:
        orders.use_maps(previous_maps, previous.orders.indexes)
    steering = Steering(config, view) if config.services else None
    handler = Handler(
        zones,
        orders if config.services else None,
        steering,
        identity=config.server.identity,
        udp_payload_size=config.server.udp_payload_size,
    )
    rrl = RateLimiter(config.server.rrl, zones) if config.server.rrl.enabled else None
    return Parts(config, locator, zones, orders, handler, maps_id, rrl)


def maps_for_config(config: Config, cache_dir: Path) -> list[SteerMap]:
    """The steering maps of `config` (from the disk cache, or compiled and cached)."""
    locator = build_locator(config)
    try:
        orders = Orders(config, locator)
        return load_or_compile(locator, orders.classifiers(), key=map_key(config), cache_dir=cache_dir)
    finally:
        locator.close()


def load_cached_maps(parts: Parts, cache_dir: Path) -> bool:
    """Give `parts` the maps a responder compiled and cached before, if any (no compile).

    The file's checksum is verified; its tiling was proven when it was compiled (and the
    Python loop that proves it again would cost the responder 0.1 s and ~30 MB of RSS)."""
    if not parts.config.services:
        return False
    count = len(parts.orders.specs)
    key = map_key(parts.config)
    maps = load_cached(parts.locator, count, key=key, cache_dir=cache_dir, check_tiling=False)
    if maps is None:
        return False
    parts.orders.use_maps(maps)
    return True


def _child_main() -> None:
    """`python -m gslb.responder`: read (config, cache_dir) pickled on stdin, compile or load the
    maps at a low priority, write them pickled to stdout."""
    os.nice(10)
    config, cache_dir = pickle.load(sys.stdin.buffer)
    maps = maps_for_config(config, cache_dir)
    try:
        pickle.dump([(m.to_bytes(), m.index_v4().tobytes()) for m in maps], sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError:  # the responder is gone (stopped, or killed): nobody to tell
        # Python's documented way out: the exit-time flush must not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _unpack_maps(out: bytes) -> tuple[list[SteerMap], list[array.array[int]]]:
    """The child's maps (checked there: the checksum is enough here) and their indexes."""
    maps, indexes = [], []
    for data, index in pickle.loads(out):
        maps.append(SteerMap.from_bytes(data, check_tiling=False))
        indexes.append(array.array("I", index))
    return maps, indexes


async def prepare_maps(parts: Parts, cache_dir: Path) -> bool:
    """Give `parts` its steering maps: from the disk cache (read in a thread), else compiled in
    a child process (neither the event loop nor the GIL waits for it; cancelling kills it).
    False when there is nothing to do or the compile failed (clients are then located
    directly, which is correct, only with narrower scopes)."""
    if not parts.config.services or parts.orders.maps is not None:
        return False
    started = time.monotonic()
    if await asyncio.to_thread(load_cached_maps, parts, cache_dir):
        _log_ready(parts, started, "from the cache")
        return True
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gslb.responder", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await child.communicate(pickle.dumps((parts.config, cache_dir)))
    except asyncio.CancelledError:
        child.kill()
        await child.wait()
        raise
    try:
        if child.returncode != 0:
            raise ValueError(f"the compiler exited with {child.returncode}")
        maps, indexes = await asyncio.to_thread(_unpack_maps, out)
    except (ValueError, pickle.UnpicklingError, EOFError) as exc:
        log.error("steering map: compile failed (%s); clients are located directly", exc)
        return False
    parts.orders.use_maps(maps, indexes)
    _log_ready(parts, started, "compiled")
    return True


def _log_ready(parts: Parts, started: float, how: str) -> None:
    maps = parts.orders.maps or ()
    log.info(
        "steering map ready in %.1f s (%s): %s",
        time.monotonic() - started,
        how,
        ", ".join(f"{len(m.starts_v4)} IPv4 + {len(m.starts_v6)} IPv6 blocks" for m in maps),
    )


class Responder:
    """The DNS side of `gslb serve`: listeners, the handler, reloads and health swaps."""

    def __init__(
        self, config: Config, view: HealthView | None = None, *, cache_dir: Path | None = None
    ) -> None:
        self.view = view or HealthView()
        self.cache_dir = cache_dir
        self.parts = build_parts(config, self.view)
        self.ref = HandlerRef(self.parts.handler, self.parts.rrl)
        self._all_down: set[str] = set()
        self._reloading = asyncio.Lock()
        self.config_hash = config_file_hash(config.source)
        self.last_reload: ReloadResult | None = None  # the last SIGHUP's outcome (fleet view)
        self.reloads: Counter[str] = Counter()  # "ok" / "failed" (gslb_reload_total)

    def serials(self) -> dict[str, int]:
        """Zone origin -> SOA serial of the zones answered from now."""
        return {z.origin_text: z.serial for z in self.parts.zones.all()}

    @property
    def config(self) -> Config:
        return self.parts.config

    def apply_view(self, view: HealthView) -> None:
        """Called by the health sync when a new view is swapped in."""
        self.view = view
        parts = self.parts
        if parts.config.services:
            steering = Steering(parts.config, view)
            parts.handler.set_steering(steering)
            self._log_all_down(steering)

    def _log_all_down(self, steering: Steering) -> None:
        """One line when a service has no eligible datacenter left, and one when it has again."""
        for service in self.parts.config.services.values():
            states = steering.datacenter_states(service)
            down = not any(s.eligible for s in states.values())
            if down and service.name not in self._all_down:
                self._all_down.add(service.name)
                log.warning(
                    "service %s: no eligible datacenter (%s); answering by when_all_down=%s",
                    service.name,
                    ", ".join(f"{n}: {'drained' if s.drain else f'{s.up} up'}" for n, s in states.items()),
                    service.when_all_down.value,
                )
            elif not down and service.name in self._all_down:
                self._all_down.discard(service.name)
                log.info("service %s: eligible datacenters again", service.name)

    async def prepare_maps(self) -> None:
        """Compile (or load) the steering maps of the current parts and swap them in; until
        then the handler locates clients directly."""
        parts = self.parts
        if self.cache_dir is not None and await prepare_maps(parts, self.cache_dir) and self.parts is parts:
            parts.handler.maps_ready()

    async def report_rate_limiting(self) -> None:
        """Forever: one log line per `server.rrl.log_interval_s` in which replies were limited."""
        while True:
            interval = self.parts.config.server.rrl.log_interval_s
            await asyncio.sleep(interval)
            rrl = self.ref.rrl
            line = rrl.summary(interval) if rrl is not None else None
            if line is not None:
                log.warning("%s", line)

    async def reload(self) -> bool:
        """SIGHUP: load and build off the event loop, swap in one assignment, then the maps."""
        async with self._reloading:
            path = self.parts.config.source
            started = time.monotonic()
            digest = await asyncio.to_thread(config_file_hash, path)
            try:
                config = await asyncio.to_thread(load, path, self.parts.config.settings)
                parts = await asyncio.to_thread(build_parts, config, self.view, self.parts)
            except GslbError as exc:
                self.reloads["failed"] += 1
                self.last_reload = ReloadResult(time.time(), False, str(exc), digest)
                log.error(
                    "reload of %s failed; still serving the previous config (%s):\n%s",
                    path,
                    ", ".join(f"{origin} serial {serial}" for origin, serial in self.serials().items()),
                    exc,
                )
                return False
            if config.server.listen != self.parts.config.server.listen:
                log.warning("server.listen changed: it takes effect at the next restart")
            if parts.rrl is not None and self.parts.rrl is not None:
                parts.rrl.carry_over(self.parts.rrl)
            self.parts = parts
            self.ref.handler = parts.handler
            self.ref.rrl = parts.rrl
            self.apply_view(self.view)  # health may have changed while it was built
            self.config_hash = digest
            self.reloads["ok"] += 1
            self.last_reload = ReloadResult(time.time(), True, "", digest, self.serials())
            serials = ", ".join(f"{z.origin_text} serial {z.serial}" for z in parts.zones.all())
            log.info(
                "reloaded %s in %.2f s: %s (%s), %s",
                path,
                time.monotonic() - started,
                counted(len(config.zones), "zone"),
                serials,
                counted(len(config.services), "service"),
            )
        await self.prepare_maps()
        return True


if __name__ == "__main__":
    _child_main()
