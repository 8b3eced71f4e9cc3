"""The `nearest` policy: the closest datacenter that can take traffic, then the next.

Pure layer: standard library, `gslb.config.model` and `gslb.health.view` only. Work is split
by how often it changes: the distance order of datacenters depends only on the config and
the client position (cached for the life of a config); which datacenters are eligible
depends on the HealthView (computed once per view in `Steering`); a query then walks the
order to the first eligible one.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from gslb.config.model import Config, Datacenter, Endpoint, IPAddress, Service, WhenAllDown
from gslb.health.view import Drain, Health, HealthView

EARTH_RADIUS_KM = 6371.0088


class Mode(enum.Enum):
    NEAREST = "nearest"  # the nearest datacenter was eligible
    FAILOVER = "failover"  # a nearer datacenter was not eligible
    FAIL_OPEN = "fail_open"  # nothing eligible: nearest datacenter that is down but not drained
    FALLBACK = "fallback"  # nothing eligible: the configured fallback addresses
    SERVFAIL = "servfail"  # nothing eligible and the service says SERVFAIL
    DRAINED = "drained"  # everything drained (forced) and no fallback: NODATA


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float


def distance_km(a: Position, b: Position) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    dphi = phi2 - phi1
    dlambda = math.radians(b.longitude - a.longitude)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def order_datacenters(
    candidates: Sequence[str],
    datacenters: Mapping[str, Datacenter],
    *,
    position: Position | None,
    pinned: str | None,
    default_order: Sequence[str],
) -> tuple[str, ...]:
    """Datacenters from nearest to farthest; a pinned one first; unknown position: default order."""
    if position is not None:
        ranked = sorted(
            candidates,
            key=lambda n: distance_km(position, Position(datacenters[n].latitude, datacenters[n].longitude)),
        )
    else:
        preferred = [n for n in default_order if n in candidates]
        ranked = preferred + [n for n in candidates if n not in preferred]
    if pinned in candidates:
        ranked.remove(pinned)  # type: ignore[arg-type]
        ranked.insert(0, pinned)  # type: ignore[arg-type]
    return tuple(ranked)


@dataclass(frozen=True, slots=True)
class DatacenterState:
    """One service's datacenter under one HealthView."""

    name: str
    eligible: bool
    drain: Drain | None
    up: int  # endpoints up or degraded and not drained
    addresses_v4: tuple[IPAddress, ...]
    addresses_v6: tuple[IPAddress, ...]
    fail_open_v4: tuple[IPAddress, ...]  # every undrained endpoint, for when_all_down fail-open
    fail_open_v6: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    mode: Mode
    datacenter: str | None
    addresses: tuple[IPAddress, ...]  # of the family asked for; may be empty (NODATA)


def datacenter_state(service: Service, dc: Datacenter, view: HealthView, *, now: float) -> DatacenterState:
    """Eligibility of one datacenter: not drained and at least min_up endpoints usable.

    Inside a datacenter, degraded endpoints are soft-drained: used only when no endpoint
    of the same family is fully up.
    """
    drain = view.drain_for(region=dc.region, datacenter=dc.name, now=now)
    endpoints = [e for e in service.endpoints if e.datacenter == dc.name]
    usable = [
        e for e in endpoints if view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now) is None
    ]
    health = {e.id: view.health(e.id) for e in usable}
    up = [e for e in usable if health[e.id] is not Health.DOWN]

    def pick(v4: bool) -> tuple[IPAddress, ...]:
        family = [e for e in up if isinstance(e.address, IPv4Address) == v4]
        best = [e for e in family if health[e.id] is Health.UP] or family
        return _addresses(best)

    def all_of(v4: bool) -> tuple[IPAddress, ...]:
        return _addresses([e for e in usable if isinstance(e.address, IPv4Address) == v4])

    eligible = drain is None and len(up) >= service.min_up
    return DatacenterState(
        dc.name, eligible, drain, len(up), pick(True), pick(False), all_of(True), all_of(False)
    )


def _addresses(endpoints: Sequence[Endpoint]) -> tuple[IPAddress, ...]:
    return tuple(e.address for e in endpoints if e.weight > 0)


def decide(
    service: Service,
    order: Sequence[str],
    states: Mapping[str, DatacenterState],
    *,
    v4: bool,
) -> Decision:
    """Walk the distance order to the first eligible datacenter that serves this family."""
    for index, name in enumerate(order):
        state = states[name]
        addresses = state.addresses_v4 if v4 else state.addresses_v6
        if state.eligible and addresses:
            return Decision(Mode.NEAREST if index == 0 else Mode.FAILOVER, name, addresses)
    # A family no datacenter serves at all is NODATA, not an outage.
    if not any((s.fail_open_v4 if v4 else s.fail_open_v6) for s in states.values()):
        return Decision(Mode.NEAREST, None, ())
    return when_all_down(service, order, states, v4=v4)


def when_all_down(
    service: Service, order: Sequence[str], states: Mapping[str, DatacenterState], *, v4: bool
) -> Decision:
    fallback = tuple(a for a in service.fallback if isinstance(a, IPv4Address) == v4)
    if service.when_all_down is WhenAllDown.SERVFAIL:
        return Decision(Mode.SERVFAIL, None, ())
    if service.when_all_down is WhenAllDown.FAIL_OPEN:
        for name in order:
            state = states[name]
            addresses = state.fail_open_v4 if v4 else state.fail_open_v6
            if state.drain is None and addresses:
                return Decision(Mode.FAIL_OPEN, name, addresses)
    # FALLBACK, or fail-open with every datacenter drained: drains are operator intent.
    if fallback or service.fallback:
        return Decision(Mode.FALLBACK, None, fallback)
    return Decision(Mode.DRAINED, None, ())


def service_states(config: Config, view: HealthView, *, now: float) -> dict[str, dict[str, DatacenterState]]:
    """Every service's datacenter states under one view (computed once per view swap)."""
    return {
        service.name: {
            name: datacenter_state(service, config.datacenters[name], view, now=now)
            for name in service.datacenters()
        }
        for service in config.services.values()
    }
