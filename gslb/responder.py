"""The DNS side of a process: zones, locator, steering and the handler built from a Config.

Composition level. `build_parts` turns one Config into everything the query path needs;
`Responder` owns the current parts, swaps a new `Steering` in when health changes and a
whole new handler in when the config is reloaded. Lifecycles live in `gslb.runtime`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gslb.config.loader import load
from gslb.config.model import Config, Override
from gslb.dns.handler import Handler
from gslb.dns.server import HandlerRef
from gslb.dns.zonefile import load_zones
from gslb.errors import ConfigError, GslbError
from gslb.geo.locator import Locator, load_overrides
from gslb.health.view import HealthView
from gslb.policy.steering import OrderCache, Steering

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).parent / "data" / "gslb.yaml"


@dataclass
class Parts:
    """What one config builds; a reload builds a new one and swaps it whole."""

    config: Config
    locator: Locator
    handler: Handler
    orders: OrderCache


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
    locator = Locator(config.geoip.database, overrides)
    if config.geoip.database is None:
        log.warning(
            "the bundled GeoLite2 City database is from 2018 and places many networks wrongly "
            "today: set geoip.database to a current MaxMind GeoIP2/GeoLite2 or DB-IP City file"
        )
    return locator


def build_parts(config: Config, view: HealthView, previous: Parts | None = None) -> Parts:
    """Zones, locator and handler for one config; raises ConfigError listing every problem."""
    zones = load_zones(config)
    if previous is not None and previous.config.geoip == config.geoip:
        locator = previous.locator
    else:
        locator = build_locator(config)
    orders: OrderCache = {}
    steering = Steering(config, locator, view, orders=orders) if config.services else None
    handler = Handler(
        zones, steering, identity=config.server.identity, udp_payload_size=config.server.udp_payload_size
    )
    return Parts(config, locator, handler, orders)


class Responder:
    """The DNS side of `gslb serve`: listeners, the handler, reloads and health swaps."""

    def __init__(self, config: Config, view: HealthView | None = None) -> None:
        self.view = view or HealthView()
        self.parts = build_parts(config, self.view)
        self.ref = HandlerRef(self.parts.handler)
        self._all_down: set[str] = set()

    @property
    def config(self) -> Config:
        return self.parts.config

    def apply_view(self, view: HealthView) -> None:
        """Called by the health sync when a new view is swapped in."""
        self.view = view
        parts = self.parts
        if parts.config.services:
            steering = Steering(parts.config, parts.locator, view, orders=parts.orders)
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

    def reload(self) -> bool:
        path = self.parts.config.source
        try:
            config = load(path)
            parts = build_parts(config, self.view, self.parts)
        except GslbError as exc:
            log.error("reload of %s failed; still serving the previous config:\n%s", path, exc)
            return False
        if config.server.listen != self.parts.config.server.listen:
            log.warning("server.listen changed: it takes effect at the next restart")
        self.parts = parts
        self.ref.handler = parts.handler
        log.info("reloaded %s: %d zones, %d services", path, len(config.zones), len(config.services))
        return True
