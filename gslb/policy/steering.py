"""Steering: client address -> order class -> decision, with the ECS scope the answer holds for.

Pure layer: standard library, `gslb.config.model`, `gslb.health.view` and `gslb.policy` only;
the GeoIP side arrives through the `Locating` and `OrderMap` shapes (`gslb.geo` provides
them), so this module imports no outside library.

Work is split by how often it changes, as gdnsd does it:
- `Orders` (per config and GeoIP database): which datacenter order a client gets. A compiled
  steering map (`OrderMap`, built off the query path) gives it in one bisect, with the map
  block's prefix length as the ECS scope: the widest network around the client over which
  the order is the same. Where no map is ready yet, or the map marks a block `MIXED` (IPv6
  detail below /64), the locator answers directly and its network is the scope (true,
  merely narrower). The scope never depends on health.
- `Steering` (per HealthView): which datacenter of an order answers, memoised per order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Final, Protocol

from gslb.config.model import Config, IPAddress, Service
from gslb.health.view import HealthView
from gslb.policy.nearest import (
    DatacenterState,
    Decision,
    Mode,
    Position,
    decide,
    order_datacenters,
    service_states,
)

IPNetwork = IPv4Network | IPv6Network
Order = tuple[str, ...]

MIXED: Final = 0xFFFF  # gslb.geo.steermap.MIXED (this layer may not import geo): "locate directly"
_ORDER_CACHE_LIMIT = 200_000


class LocationLike(Protocol):
    @property
    def network(self) -> IPNetwork: ...
    @property
    def latitude(self) -> float | None: ...
    @property
    def longitude(self) -> float | None: ...
    @property
    def datacenter(self) -> str | None: ...


class Locating(Protocol):
    def locate(self, address: IPAddress) -> LocationLike: ...


class OrderMap(Protocol):
    """A compiled steering map (`gslb.geo.steermap.SteerMap`): blocks tiling each address space
    in order; `info` is `class id << 8 | prefix length`; IPv6 starts are the top 64 bits."""

    @property
    def classes(self) -> tuple[Order, ...]: ...
    @property
    def starts_v4(self) -> Sequence[int]: ...
    @property
    def info_v4(self) -> Sequence[int]: ...
    @property
    def starts_v6(self) -> Sequence[int]: ...
    @property
    def info_v6(self) -> Sequence[int]: ...
    def find(self, address: IPAddress) -> tuple[int, int]: ...
    def index_v4(self) -> Sequence[int]: ...


def datacenter_sets(config: Config) -> tuple[tuple[str, ...], ...]:
    """The distinct datacenter sets of the services, in first-seen order (one map each)."""
    return tuple(dict.fromkeys(tuple(sorted(s.datacenters())) for s in config.services.values()))


def classifier(config: Config, datacenters: Sequence[str]) -> Callable[[LocationLike], Order]:
    """Location -> datacenter order over one datacenter set (what a map compiles)."""
    positions = config.datacenters
    default_order = config.geoip.default_order

    def classify(location: LocationLike) -> Order:
        position = (
            Position(location.latitude, location.longitude)
            if location.latitude is not None and location.longitude is not None
            else None
        )
        return order_datacenters(
            datacenters, positions, position=position, pinned=location.datacenter, default_order=default_order
        )

    return classify


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one client falls: its datacenter order and the prefix length it holds over."""

    order: Order
    prefix: int  # in the client address's own family width
    from_map: bool  # False: located directly (no map yet, or a MIXED block)
    block: int = -1  # the map block's `class id << 8 | prefix` in its family's array (-1: none)


class Orders:
    """Client address -> datacenter order per service, through the maps when they are ready."""

    def __init__(self, config: Config, locator: Locating) -> None:
        self.config = config
        self.locator = locator
        self.sets = datacenter_sets(config)
        index = {dcs: i for i, dcs in enumerate(self.sets)}
        self.set_of: Mapping[str, int] = {
            s.name: index[tuple(sorted(s.datacenters()))] for s in config.services.values()
        }
        self._classify = [classifier(config, dcs) for dcs in self.sets]
        self._cache: dict[tuple[int, float | None, float | None, str | None], Order] = {}
        self.maps: Sequence[OrderMap] | None = None  # one per datacenter set, once compiled
        self.indexes: Sequence[Sequence[int]] = ()  # each map's `index_v4()`, made with it

    def use_maps(self, maps: Sequence[OrderMap], indexes: Sequence[Sequence[int]] | None = None) -> None:
        """Swap the compiled maps in (with their `index_v4()`s, made here when not given)."""
        self.indexes = [m.index_v4() for m in maps] if indexes is None else indexes
        self.maps = maps

    def classifiers(self) -> list[Callable[[LocationLike], Order]]:
        return list(self._classify)

    def place(self, service: Service, address: IPAddress) -> Placement:
        """The order for a client of `service` at `address`, and the prefix it holds over."""
        which = self.set_of[service.name]
        maps = self.maps
        if maps is not None:
            class_id, prefix = maps[which].find(address)
            if class_id != MIXED:
                mapped = address.version == 6 and int(address) >> 32 == 0xFFFF
                block = -1 if mapped else class_id << 8 | prefix
                return Placement(maps[which].classes[class_id], prefix, True, block)
        location = self.locator.locate(address)
        key = (which, location.latitude, location.longitude, location.datacenter)
        order = self._cache.get(key)
        if order is None:
            order = self._classify[which](location)
            if len(self._cache) >= _ORDER_CACHE_LIMIT:  # keys are the database's distinct places
                self._cache.clear()
            self._cache[key] = order
        return Placement(order, location.network.prefixlen, False)


class Steering:
    """Decisions under one HealthView; a new view means a new Steering (nothing stale inside)."""

    def __init__(self, config: Config, view: HealthView, *, now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.view = view
        self.states = service_states(config, view, now=now())
        self._single = {s.name: len(s.datacenters()) == 1 for s in config.services.values()}
        self._decisions: dict[tuple[str, Order, bool], Decision] = {}

    def decide(self, service: Service, order: Order, *, v4: bool) -> Decision:
        key = (service.name, order, v4)
        decision = self._decisions.get(key)
        if decision is None:
            decision = decide(service, order, self.states[service.name], v4=v4)
            self._decisions[key] = decision  # bounded: orders are few (one per map class)
        return decision

    def independent(self, service: Service, decision: Decision) -> bool:
        """Answers that are the same for every client: scope 0."""
        if decision.mode in (Mode.FALLBACK, Mode.SERVFAIL, Mode.DRAINED):
            return True
        return self._single[service.name]

    def datacenter_states(self, service: Service) -> dict[str, DatacenterState]:
        return self.states[service.name]


def scope_network(address: IPAddress, prefix: int) -> IPNetwork:
    """The network of `prefix` bits around `address` (for explain and logs)."""
    if address.version == 4:
        return IPv4Network((int(address) >> (32 - prefix) << (32 - prefix), prefix))
    return IPv6Network((int(address) >> (128 - prefix) << (128 - prefix), prefix))
