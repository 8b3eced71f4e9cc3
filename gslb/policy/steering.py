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

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Final, Protocol

from gslb.config.model import Config, IPAddress, Service, Strategy
from gslb.health.view import HealthView
from gslb.policy.decision import (
    DatacenterState,
    Decision,
    Mode,
    Position,
    decide,
    order_datacenters,
    service_states,
)
from gslb.policy.endpoints import client_key

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
    @property
    def country(self) -> str | None: ...
    @property
    def continent(self) -> str | None: ...
    @property
    def subdivision(self) -> str | None: ...


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


@dataclass(frozen=True, slots=True)
class Spec:
    """What one steering map compiles: a strategy over a datacenter list, with geo rules.
    Services with equal specs share a map."""

    strategy: Strategy
    datacenters: tuple[str, ...]  # nearest: sorted (order is by distance); else as listed
    rules: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (kind, code, datacenter order)

    @property
    def constant(self) -> bool:
        """Every client gets the same order: the answer never depends on where it is."""
        return self.strategy is not Strategy.NEAREST and not self.rules


def spec_of(service: Service) -> Spec:
    dcs = service.datacenters()
    geo = service.geo
    rules = tuple(
        (kind, code, order)
        for kind, table in (
            ("subdivision", geo.subdivisions),
            ("country", geo.countries),
            ("continent", geo.continents),
        )
        for code, order in sorted(table.items())
    )
    return Spec(service.strategy, tuple(sorted(dcs)) if service.strategy is Strategy.NEAREST else dcs, rules)


def specs(config: Config) -> tuple[Spec, ...]:
    """The distinct specs of the services, in first-seen order (one map each)."""
    return tuple(dict.fromkeys(spec_of(s) for s in config.services.values()))


def classifier(config: Config, spec: Spec) -> Callable[[LocationLike], Order]:
    """Location -> datacenter order under one spec (what a map compiles). A geo rule's
    datacenters come first, then the rest in the strategy's order; a weighted service's
    unmatched clients get the empty order: drawn by weight per answer."""
    positions = config.datacenters
    default_order = config.geoip.default_order
    rules = {(kind, code): order for kind, code, order in spec.rules}
    listed = spec.datacenters

    def base(location: LocationLike) -> Order:
        if spec.strategy is not Strategy.NEAREST:
            return listed
        position = (
            Position(location.latitude, location.longitude)
            if location.latitude is not None and location.longitude is not None
            else None
        )
        return order_datacenters(
            listed, positions, position=position, pinned=location.datacenter, default_order=default_order
        )

    def classify(location: LocationLike) -> Order:
        if rules:
            for kind, code in (
                ("subdivision", location.subdivision),
                ("country", location.country),
                ("continent", location.continent),
            ):
                first = rules.get((kind, code)) if code is not None else None
                if first is not None:
                    return first + tuple(n for n in base(location) if n not in first)
        if spec.strategy is Strategy.WEIGHTED:
            return ()
        return base(location)

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
        self.specs = specs(config)
        index = {spec: i for i, spec in enumerate(self.specs)}
        self.set_of: Mapping[str, int] = {s.name: index[spec_of(s)] for s in config.services.values()}
        self._classify = [classifier(config, spec) for spec in self.specs]
        self._cache: dict[tuple[object, ...], Order] = {}
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
        key = (
            which,
            location.latitude,
            location.longitude,
            location.datacenter,
            location.subdivision,
            location.country,
            location.continent,
        )
        order = self._cache.get(key)
        if order is None:
            order = self._classify[which](location)
            if len(self._cache) >= _ORDER_CACHE_LIMIT:  # keys are the database's distinct places
                self._cache.clear()
            self._cache[key] = order
        return Placement(order, location.network.prefixlen, False)


class Steering:
    """Decisions under one HealthView; a new view means a new Steering (nothing stale inside)."""

    def __init__(
        self,
        config: Config,
        view: HealthView,
        *,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.rng = rng or random.Random()
        self.states = service_states(config, view, now=now(), rng=self.rng)
        self._constant = {
            s.name: len(s.datacenters()) == 1 or spec_of(s).constant for s in config.services.values()
        }
        self._decisions: dict[tuple[str, Order, bool], Decision] = {}

    def decide(self, service: Service, order: Order, *, v4: bool) -> Decision:
        """The decision for an order (memoised: orders are few, one per map class). It may
        vary per reply (`Decision.pick`) or per client network (`Decision.keyed`)."""
        key = (service.name, order, v4)
        decision = self._decisions.get(key)
        if decision is None:
            decision = decide(service, order, self.states[service.name], v4=v4, rng=self.rng)
            self._decisions[key] = decision
        return decision

    def for_client(self, decision: Decision, address: IPAddress) -> tuple[Decision, int]:
        """A keyed decision made concrete for one client, and the prefix its key holds over
        (in the address's family width); other decisions unchanged, prefix 0."""
        if decision.keyed is None:
            return decision, 0
        key, used = client_key(address, *decision.key_prefixes)
        if address.version == 6 and address.ipv4_mapped is not None:
            used += 96  # in the mapped address's own width
        return decision.for_key(key), used

    def independent(self, service: Service, decision: Decision) -> bool:
        """Answers that are the same for every client: scope 0."""
        if decision.mode in (Mode.FALLBACK, Mode.SERVFAIL, Mode.DRAINED):
            return True
        return decision.keyed is None and self._constant[service.name]

    def datacenter_states(self, service: Service) -> dict[str, DatacenterState]:
        return self.states[service.name]


def scope_network(address: IPAddress, prefix: int) -> IPNetwork:
    """The network of `prefix` bits around `address` (for explain and logs)."""
    if address.version == 4:
        return IPv4Network((int(address) >> (32 - prefix) << (32 - prefix), prefix))
    return IPv6Network((int(address) >> (128 - prefix) << (128 - prefix), prefix))
