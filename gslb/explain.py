"""`explain`: the chain of reasons behind one answer, for the CLI and the api.

Composition level: reads the same zones, locator, policy and HealthView that the query path
uses (the api passes the live ones), so what it says is what `dig` gets. Slow and thorough
on purpose; never used on the query path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network, ip_address, ip_network
from typing import Any

from gslb.dns.codec import ClientSubnet
from gslb.dns.handler import client_from_ecs
from gslb.geo.locator import Location
from gslb.health.view import Health, HealthView
from gslb.policy.nearest import Position, distance_km
from gslb.policy.steering import Steering, scope_network
from gslb.responder import Parts
from gslb.zone import name as dnsname
from gslb.zone.codes import TYPE_A, TYPE_AAAA
from gslb.zone.zone import Outcome


@dataclass(frozen=True, slots=True)
class DatacenterLine:
    name: str
    region: str
    distance_km: float | None
    eligible: bool
    endpoints_up: int
    endpoints: int
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    name: str
    qtype: str
    outcome: str
    client: str
    client_reason: str
    location: dict[str, Any] = field(default_factory=dict)
    datacenters: tuple[DatacenterLine, ...] = ()
    choice: str = ""
    mode: str = ""
    records: tuple[str, ...] = ()
    ttl: int | None = None
    scope: int | None = None
    scope_network: str | None = None
    scope_source: str = ""  # "map" (compiled steering map) or "direct" (GeoIP lookup, map not ready)
    health_version: int = 0
    health_live: bool = True  # False: explained from the config alone, every endpoint counted up

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def subnet_of(text: str) -> ClientSubnet:
    """'193.0.14.0/24' -> the ECS option a resolver would send."""
    network = ip_network(text, strict=False)
    family = 1 if isinstance(network, IPv4Network) else 2
    wire = network.network_address.packed[: (network.prefixlen + 7) // 8]
    return ClientSubnet(family, network.prefixlen, network.network_address, wire)


def explain(
    parts: Parts,
    view: HealthView | None,
    name: str,
    client: str,
    *,
    ecs: str | None = None,
    qtype: str = "A",
) -> Explanation:
    """Why `client` (optionally behind a resolver sending `ecs`) gets what it gets for `name`.

    `view` None: from the config alone (the CLI without --live), every endpoint counted up.
    """
    live = view is not None
    view = view or HealthView()
    qname = dnsname.to_text(dnsname.from_text(name.rstrip(".") + "."))
    code = TYPE_AAAA if qtype.upper() == "AAAA" else TYPE_A
    source = ip_address(client)
    subnet = subnet_of(ecs) if ecs else None
    ecs_client = client_from_ecs(subnet)
    if subnet is None:
        address, why = source, "no ECS in the query: the packet source address decides"
    elif ecs_client is None:
        reason = "source prefix 0" if subnet.source_prefix == 0 else "a private or reserved address"
        address, why = source, f"ECS {ecs} ignored ({reason}): the packet source address decides"
    else:
        address, why = ecs_client.address, f"ECS {ecs}: the client subnet the resolver passed on decides"
    result = parts.zones.lookup(dnsname.key(dnsname.from_text(qname)), code)
    base = Explanation(
        qname,
        qtype.upper(),
        result.outcome.value,
        str(address),
        why,
        health_version=view.version,
        health_live=live,
    )
    if result.outcome is not Outcome.ANSWER or result.service is None:
        records = tuple(f"{r.owner_text} {r.ttl} {r.text}" for r in result.answers)
        return Explanation(**{**asdict(base), "records": records, "mode": "static"})
    service = result.service
    steering = Steering(parts.config, view)
    location = parts.locator.locate(address)
    placement = parts.orders.place(service, address)
    order = placement.order
    decision = steering.decide(service, order, v4=code == TYPE_A)
    states = steering.datacenter_states(service)
    lines = []
    for dc_name in order:
        dc = parts.config.datacenters[dc_name]
        state = states[dc_name]
        distance = (
            distance_km(Position(location.latitude, location.longitude), Position(dc.latitude, dc.longitude))
            if location.latitude is not None and location.longitude is not None
            else None
        )
        endpoints = [e for e in service.endpoints if e.datacenter == dc_name]
        lines.append(
            DatacenterLine(
                dc_name,
                dc.region,
                None if distance is None else round(distance, 1),
                state.eligible,
                state.up,
                len(endpoints),
                _reason(
                    state.eligible,
                    state.drain,
                    state.up,
                    min_up=service.min_up,
                    view=view,
                    endpoints=endpoints,
                ),
            )
        )
    if subnet is None:
        scope = None
    elif subnet.source_prefix == 0 or steering.independent(service, decision):
        scope = 0
    else:
        scope = placement.prefix if ecs_client is not None else subnet.source_prefix
    return Explanation(
        **{
            **asdict(base),
            "location": _location(location, parts),
            "datacenters": tuple(lines),
            "choice": decision.datacenter or "",
            "mode": decision.mode.value,
            "records": tuple(str(a) for a in decision.addresses),
            "ttl": service.ttl,
            "scope": scope,
            "scope_network": str(scope_network(address, scope)) if scope else None,
            "scope_source": "map" if placement.from_map else "direct",
        }
    )


def _location(location: Location, parts: Parts) -> dict[str, Any]:
    return {
        "source": location.source.value,
        "network": str(location.network),
        "country": location.country,
        "continent": location.continent,
        "city": location.city,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "datacenter": location.datacenter,
        "database": parts.locator.description,
    }


def _reason(
    eligible: bool, drain: Any, up: int, *, min_up: int, view: HealthView, endpoints: list[Any]
) -> str:
    if drain is not None:
        until = (
            f", until {time.strftime('%H:%M:%S', time.localtime(drain.expires_at))}"
            if drain.expires_at
            else ""
        )
        return f"drained ({drain.kind.value} {drain.target}: {drain.reason}{until})"
    health = [view.health(e.id) for e in endpoints]
    degraded = sum(h is Health.DEGRADED for h in health)
    text = f"{up}/{len(endpoints)} endpoints up" + (f", {degraded} degraded" if degraded else "")
    return text if eligible else f"not eligible: {text}, needs {min_up}"


def render(explanation: Explanation) -> str:
    """The text `gslb explain` prints."""
    e = explanation
    lines = [f"question   {e.name} {e.qtype}", f"client     {e.client}  ({e.client_reason})"]
    if not e.location:
        lines.append(f"answer     {e.outcome}: not a steered name")
        lines.extend(f"           {r}" for r in e.records)
        return "\n".join(lines)
    loc = e.location
    place = ", ".join(str(p) for p in (loc["city"], loc["country"], loc["continent"]) if p) or "unknown place"
    coords = (
        f"{loc['latitude']:.2f},{loc['longitude']:.2f}" if loc["latitude"] is not None else "no coordinates"
    )
    pinned = f", pinned to {loc['datacenter']}" if loc["datacenter"] else ""
    lines.append(f"location   {place} ({coords}{pinned}) from {loc['source']} network {loc['network']}")
    lines.append(f"geoip      {loc['database']}")
    if e.health_live:
        lines.append(f"health     live, state version {e.health_version}")
    else:
        lines.append("health     not loaded: every endpoint counted up (--live asks the running api)")
    lines.append("datacenters, nearest first:")
    for dc in e.datacenters:
        distance = f"{dc.distance_km:>8.0f} km" if dc.distance_km is not None else "   default order"
        lines.append(f"  {dc.name:<8} {dc.region:<14} {distance}  {dc.reason}")
    how = e.mode
    if loc["latitude"] is None and not loc["datacenter"]:
        how += ", location unknown: geoip.default_order"
    lines.append(f"choice     {e.choice or '-'} ({how})")
    lines.append(f"answer     {' '.join(e.records) or 'no records (NODATA)'}  TTL {e.ttl}")
    if e.scope is None:
        lines.append("ecs scope  none (no usable ECS in the query: no ECS option in the reply)")
    elif e.scope_network:
        where = (
            "steering map block"
            if e.scope_source == "map"
            else "GeoIP network: the steering map is not compiled yet, gslb serve does it"
        )
        lines.append(f"ecs scope  /{e.scope}: the same answer holds for all of {e.scope_network} ({where})")
    else:
        lines.append(f"ecs scope  /{e.scope}: the answer does not depend on the client")
    return "\n".join(lines)
