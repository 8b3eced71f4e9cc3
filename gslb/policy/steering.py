"""Steering: client address -> location -> decision and ECS scope, cached per HealthView.

Pure layer: takes any locator with the `Locating` shape (the GeoIP adapter in `gslb.geo`
provides it) so that this module imports no outside library. One `Steering` exists per
(config, HealthView); a new view means a new `Steering`, so its caches never hold answers
from an older health state. The distance orders live in a cache shared across views,
since they depend only on the config and the client position.

Scope widening (walking the GeoIP tree around a network) costs about a millisecond, far
more than an answer, so it never runs on the query path: the first answer for a network
carries the GeoIP network itself as scope (true, merely narrow); when the network is asked
for again it is queued, `widen_pending` (called from an idle-time task) widens it, and later
answers carry the wider scope. Replies cached from a provisional decision are dropped when
it is superseded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

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

WIDEN_LIMIT = 64  # distinct networks inspected per widening step
_CACHE_LIMIT = 200_000
_PENDING_LIMIT = 10_000


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


@dataclass(slots=True)
class Steered:
    """A decision and its scope. Not frozen on purpose: a provisional one (scope not yet
    widened) is marked `superseded` when widening replaces it, so that replies cached from
    it are rebuilt with the wider scope."""

    decision: Decision
    scope: int  # ECS scope prefix length for this answer
    network: IPNetwork  # the network the answer holds for
    final: bool = True  # False until widening has run for this network
    superseded: bool = False
    key: tuple[str, bool, IPNetwork] | None = None  # set while provisional: what to widen


OrderCache = dict[tuple[str, float | None, float | None, str | None], tuple[str, ...]]
_SteerKey = tuple[str, bool, IPNetwork]
_PrefixKey = tuple[str, bool, int, int, int]


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
        self._datacenters = {s.name: s.datacenters() for s in config.services.values()}
        self._orders: OrderCache = {} if orders is None else orders
        self._steered: dict[_SteerKey, Steered] = {}
        self._widened: dict[_PrefixKey, Steered] = {}
        self._widened_lengths: list[int] = []  # prefix lengths present in _widened, longest first
        self._candidates: dict[_SteerKey, tuple[Service, bool, LocationLike]] = {}
        # (service, v4, location, network widened so far)
        self.pending: deque[tuple[Service, bool, LocationLike, IPNetwork]] = deque(maxlen=_PENDING_LIMIT)

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
                self._datacenters[service.name],
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
        """The decision for one client address and the network it holds for."""
        location = self.locator.locate(client)
        key = (service.name, v4, location.network)
        steered = self._steered.get(key)
        if steered is None:
            steered = self._inside_widened(service.name, v4, location.network)
            if steered is None:
                decision = self.decide_for(service, location, v4=v4)
                if self._independent(service, decision):
                    steered = Steered(decision, 0, location.network)
                else:
                    prefix = location.network.prefixlen
                    steered = Steered(decision, prefix, location.network, final=False, key=key)
                    if len(self._candidates) > _CACHE_LIMIT:
                        self._candidates.clear()
                    self._candidates[key] = (service, v4, location)
            if len(self._steered) > _CACHE_LIMIT:
                self._steered.clear()
            self._steered[key] = steered
        elif not steered.final:
            self.promote(steered)
        return steered

    def promote(self, steered: Steered) -> None:
        """A provisional network asked for again is worth widening: queue it (once).

        Networks seen only once (most of a random-subnet flood) never cost a tree walk.
        """
        if steered.key is not None:
            candidate = self._candidates.pop(steered.key, None)
            if candidate is not None:
                self.pending.append((*candidate, candidate[2].network))

    def widen_pending(self, *, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> int:
        """Widen queued networks until the budget is spent; returns how many were finished.

        Work is done one widening step (one sibling walk, bounded by WIDEN_LIMIT) at a time,
        and an unfinished network goes back to the end of the queue, so one call never
        overruns its budget by more than a step.
        """
        deadline = clock() + budget_s
        done = 0
        while self.pending and clock() < deadline:
            service, v4, location, network = self.pending.popleft()
            key = (service.name, v4, location.network)
            current = self._steered.get(key)
            if current is None or current.final:
                continue
            widened = self._inside_widened(service.name, v4, network)
            if widened is None:
                wider = self._widen_step(service, network, current.decision, v4=v4)
                if wider is not None:
                    self.pending.append((service, v4, location, wider))
                    continue
                widened = Steered(current.decision, network.prefixlen, network)
                self._remember(service.name, v4, widened)
            self._steered[key] = widened
            current.superseded = True
            done += 1
        return done

    def _remember(self, service: str, v4: bool, steered: Steered) -> None:
        if len(self._widened) > _CACHE_LIMIT:
            self._widened.clear()
            self._widened_lengths.clear()
        self._widened[_prefix_key(service, v4, steered.network)] = steered
        if steered.network.prefixlen not in self._widened_lengths:
            self._widened_lengths.append(steered.network.prefixlen)
            self._widened_lengths.sort(reverse=True)

    def _inside_widened(self, service: str, v4: bool, network: IPNetwork) -> Steered | None:
        """A network inside one already proven uniform shares its answer and scope."""
        if not self._widened_lengths:
            return None
        address = int(network.network_address)
        width = network.max_prefixlen
        version = network.version
        for prefix in self._widened_lengths:
            if prefix <= network.prefixlen:
                found = self._widened.get((service, v4, version, prefix, address >> (width - prefix)))
                if found is not None:
                    return found
        return None

    def _independent(self, service: Service, decision: Decision) -> bool:
        """Answers that are the same for every client get scope 0."""
        if decision.mode in (Mode.FALLBACK, Mode.SERVFAIL, Mode.DRAINED):
            return True
        return len(self._datacenters[service.name]) == 1

    def _widen_step(
        self, service: Service, network: IPNetwork, decision: Decision, *, v4: bool
    ) -> IPNetwork | None:
        """The supernet when every location in its other half gets this answer, else None.

        Aggregation like gdnsd's, one bit at a time: the half we come from is already proven.
        """
        if network.prefixlen == 0:
            return None
        parent = network.supernet()
        low, high = parent.subnets()
        locations = self.locator.locations_within(high if low == network else low, WIDEN_LIMIT)
        if locations is None:
            return None
        answer = (decision.datacenter, decision.addresses)
        for location in locations:
            d = self.decide_for(service, location, v4=v4)
            if (d.datacenter, d.addresses) != answer:
                return None
        return parent

    def datacenter_states(self, service: Service) -> dict[str, DatacenterState]:
        return self.states[service.name]


def _prefix_key(service: str, v4: bool, network: IPNetwork) -> _PrefixKey:
    shift = network.max_prefixlen - network.prefixlen
    return (service, v4, network.version, network.prefixlen, int(network.network_address) >> shift)
