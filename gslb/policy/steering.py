"""Steering: client address -> location -> decision and ECS scope, cached per HealthView.

Pure layer: takes any locator with the `Locating` shape (the GeoIP adapter in `gslb.geo`
provides it) so that this module imports no outside library. One `Steering` exists per
(config, HealthView); a new view means a new `Steering`, so its caches never hold answers
from an older health state. The distance orders live in a cache shared across views,
since they depend only on the config and the client position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

from gslb.config.model import Config, IPAddress, Service
from gslb.health.view import HealthView
from gslb.policy.nearest import Decision, DatacenterState, Mode, Position, decide, order_datacenters, service_states

IPNetwork = IPv4Network | IPv6Network

_WIDEN_LIMIT = 64  # distinct networks inspected per widening step
_CACHE_LIMIT = 200_000


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
    def locations_within(self, network: IPNetwork, limit: int) -> Sequence[LocationLike] | None: ...


@dataclass(frozen=True, slots=True)
class Steered:
    decision: Decision
    scope: int  # ECS scope prefix length for this answer
    network: IPNetwork  # the (widened) network the answer holds for


OrderCache = dict[tuple[str, float | None, float | None, str | None], tuple[str, ...]]


class Steering:
    def __init__(
        self,
        config: Config,
        locator: Locating,
        view: HealthView,
        *,
        orders: OrderCache | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.locator = locator
        self.view = view
        self.states = service_states(config, view, now=now())
        self._orders: OrderCache = {} if orders is None else orders
        self._steered: dict[tuple[str, bool, IPNetwork], Steered] = {}
        self._widened: dict[tuple[str, bool, int, int, int], Steered] = {}

    def order(self, service: Service, location: LocationLike) -> tuple[str, ...]:
        key = (service.name, location.latitude, location.longitude, location.datacenter)
        order = self._orders.get(key)
        if order is None:
            position = (
                Position(location.latitude, location.longitude)
                if location.latitude is not None and location.longitude is not None
                else None
            )
            order = order_datacenters(
                service.datacenters(),
                self.config.datacenters,
                position=position,
                pinned=location.datacenter,
                default_order=self.config.geoip.default_order,
            )
            if len(self._orders) > _CACHE_LIMIT:
                self._orders.clear()
            self._orders[key] = order
        return order

    def decide_for(self, service: Service, location: LocationLike, *, v4: bool) -> Decision:
        return decide(service, self.order(service, location), self.states[service.name], v4=v4)

    def steer(self, service: Service, client: IPAddress, *, v4: bool) -> Steered:
        """The decision for one client address, with the widest network it holds for."""
        location = self.locator.locate(client)
        key = (service.name, v4, location.network)
        steered = self._steered.get(key)
        if steered is None:
            steered = self._inside_widened(service.name, v4, location.network)
            if steered is None:
                decision = self.decide_for(service, location, v4=v4)
                network = self._widen(service, location.network, decision, v4=v4)
                scope = 0 if self._independent(service, decision) else network.prefixlen
                steered = Steered(decision, scope, network)
                self._widened[_prefix_key(service.name, v4, network)] = steered
            if len(self._steered) > _CACHE_LIMIT:
                self._steered.clear()
                self._widened.clear()
            self._steered[key] = steered
        return steered

    def _inside_widened(self, service: str, v4: bool, network: IPNetwork) -> Steered | None:
        """A network already proven to lie inside a widened one shares its answer and scope."""
        address = int(network.network_address)
        width = network.max_prefixlen
        for prefix in range(network.prefixlen, -1, -1):
            found = self._widened.get((service, v4, network.version, prefix, address >> (width - prefix)))
            if found is not None:
                return found
        return None

    def _independent(self, service: Service, decision: Decision) -> bool:
        """Answers that are the same for every client get scope 0."""
        if decision.mode in (Mode.FALLBACK, Mode.SERVFAIL, Mode.DRAINED):
            return True
        return len(service.datacenters()) == 1

    def _widen(self, service: Service, network: IPNetwork, decision: Decision, *, v4: bool) -> IPNetwork:
        """Aggregate like gdnsd: widen while every location in the supernet gets this answer.

        Each step only inspects the sibling half: the half we come from is already proven.
        """
        while network.prefixlen > 0:
            parent = network.supernet()
            low, high = parent.subnets()
            sibling = high if low == network else low
            locations = self.locator.locations_within(sibling, _WIDEN_LIMIT)
            if locations is None:
                break
            answer = (decision.datacenter, decision.addresses)
            if any(
                (d.datacenter, d.addresses) != answer
                for d in (self.decide_for(service, loc, v4=v4) for loc in locations)
            ):
                break
            network = parent
        return network

    def datacenter_states(self, service: Service) -> dict[str, DatacenterState]:
        return self.states[service.name]


def _prefix_key(service: str, v4: bool, network: IPNetwork) -> tuple[str, bool, int, int, int]:
    shift = network.max_prefixlen - network.prefixlen
    return (service, v4, network.version, network.prefixlen, int(network.network_address) >> shift)
