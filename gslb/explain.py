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

from gslb.config.model import Endpoint, IPAddress, Pick, PickPolicy, Service, Strategy
from gslb.dns.codec import ClientSubnet
from gslb.dns.handler import client_from_ecs
from gslb.geo.locator import Location
from gslb.health.view import Drain, Health, HealthView
from gslb.policy.decision import Position, distance_km
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
class EndpointLine:
    """One endpoint of the chosen datacenter (the family asked for), and why it is or is not
    in the answer."""

    address: str
    weight: int
    chosen: bool
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
    strategy: str = ""  # nearest, failover, weighted
    rule: str = ""  # the geo rule that placed the client ("country DE"), or how the order was made
    policy: str = ""  # the endpoint policy of the chosen datacenter
    key: str = ""  # consistent_hash: the client network hashed
    varies: int = 0  # > 1: replies vary per answer among this many; the records are one of them
    endpoints: tuple[EndpointLine, ...] = ()
    records: tuple[str, ...] = ()
    ttl: int | None = None
    scope: int | None = None
    scope_network: str | None = None
    scope_source: str = ""  # "map" (compiled steering map) or "direct" (GeoIP lookup, map not ready)
    # The store version of the state explained (the "state version" of `gslb state`, of each
    # responder and of `gslb drain`); None when not known (explained from the config alone).
    state_version: int | None = None
    view_generation: int = 0  # the local health view's swap count (`gslb_state_view_generation`)
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
    state_version: int | None = None,
    now: float | None = None,
) -> Explanation:
    """Why `client` (optionally behind a resolver sending `ecs`) gets what it gets for `name`.

    `view` None: from the config alone (the CLI without --live), every endpoint counted up.
    `state_version`: the store version `view` was built from (the api passes its sync's);
    `now` (default: the clock) decides which drains are in force and how expiries read.
    """
    live = view is not None
    now = time.time() if now is None else now
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
        state_version=state_version if live else None,
        view_generation=view.version,
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
    v4 = code == TYPE_A
    decision = steering.decide(service, order, v4=v4)
    keyed = decision.keyed is not None
    independent = steering.independent(service, decision)
    key_prefix = 0
    key = ""
    if keyed:
        decision, key_prefix = steering.for_client(decision, address)
        key = str(scope_network(address, key_prefix))
    varies = len(decision.answers) if decision.varies else 0
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
                    now=now,
                ),
            )
        )
    if subnet is None:
        scope = None
    elif subnet.source_prefix == 0 or independent:
        scope = 0
    else:
        scope = max(placement.prefix, key_prefix) if ecs_client is not None else subnet.source_prefix
    rule = service.geo.match(location.subdivision, location.country, location.continent) or ""
    if not rule:
        rule = {
            Strategy.NEAREST: "by distance",
            Strategy.FAILOVER: "the listed order",
            Strategy.WEIGHTED: "a weighted draw per answer: "
            + ", ".join(f"{n} {w}" for n, w in service.weights.items()),
        }[service.strategy]
    chosen_dc = decision.datacenter
    pick = service.pick_for(chosen_dc) if chosen_dc else service.pick
    return Explanation(
        **{
            **asdict(base),
            "location": _location(location, parts),
            "datacenters": tuple(lines),
            "choice": decision.datacenter or "",
            "mode": decision.mode.value,
            "strategy": service.strategy.value,
            "rule": rule,
            "policy": pick.policy.value,
            "key": key,
            "varies": varies,
            "endpoints": _endpoint_lines(service, chosen_dc, decision.addresses, view, v4=v4, now=now),
            "records": tuple(str(a) for a in decision.addresses),
            "ttl": service.ttl,
            "scope": scope,
            "scope_network": str(scope_network(address, scope)) if scope else None,
            "scope_source": "map" if placement.from_map else "direct",
        }
    )


def _endpoint_lines(
    service: Service,
    datacenter: str | None,
    answer: tuple[IPAddress, ...],
    view: HealthView,
    *,
    v4: bool,
    now: float,
) -> tuple[EndpointLine, ...]:
    """Every endpoint of the chosen datacenter and family: in the answer, or why not."""
    if datacenter is None:
        return ()
    pick = service.pick_for(datacenter)
    family = [e for e in service.endpoints if e.datacenter == datacenter and (e.address.version == 4) == v4]
    health = {e.id: view.health(e.id) for e in family}
    drains = {e.id: view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now) for e in family}
    drained = {e_id: d for e_id, d in drains.items() if d is not None}
    usable = [e for e in family if e.id not in drained and health[e.id] is not Health.DOWN]
    fully_up = any(health[e.id] is Health.UP for e in usable)
    weighted = any(e.weight > 0 for e in usable if health[e.id] is Health.UP or not fully_up)
    total = sum(e.weight for e in usable) or 1
    lines = []
    for e in family:
        if e.address in answer:
            why = "in this answer"
        elif e.id in drained:
            why = f"drained ({drain_words(drained[e.id], now=now)})"
        elif health[e.id] is Health.DOWN:
            why = "down"
        elif health[e.id] is Health.DEGRADED and fully_up:
            why = "degraded: used only when no endpoint is fully up"
        elif e.weight == 0 and weighted:
            why = "standby (weight 0): used only when no weighted endpoint is usable"
        else:
            why = _not_picked(pick, e, view, total)
        cost = view.costs.get(e.id)
        load = view.loads.get(e.id)
        extra = "".join(
            (
                f", cost {cost:.1f} ms" if cost is not None else "",
                f", load {load:g}" if load is not None else "",
            )
        )
        lines.append(EndpointLine(str(e.address), e.weight, e.address in answer, why + extra))
    return tuple(lines)


def _not_picked(pick: Pick, endpoint: Endpoint, view: HealthView, total: int) -> str:
    policy = pick.policy
    if policy is PickPolicy.CONSISTENT_HASH:
        return f"eligible: other client networks hash to it ({pick.algorithm.value})"
    if policy is PickPolicy.WEIGHTED:
        return (
            f"eligible: drawn in {100 * endpoint.weight / total:.0f} % of answers (weight {endpoint.weight})"
        )
    if policy is PickPolicy.P2C_EWMA:
        return "eligible: lost this draw of two (or was not drawn)"
    if policy is PickPolicy.LEAST_LOAD:
        return "eligible: more loaded, or beyond max_records"
    return f"eligible: in turn, beyond max_records {pick.records}" if pick.records else "eligible"


def _location(location: Location, parts: Parts) -> dict[str, Any]:
    return {
        "source": location.source.value,
        "network": str(location.network),
        "country": location.country,
        "continent": location.continent,
        "subdivision": location.subdivision,
        "city": location.city,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "datacenter": location.datacenter,
        "database": parts.locator.description,
    }


def until_text(expires_at: float | None, *, now: float) -> str:
    """', until 14:05' (local time; with the date when not today), '' for no expiry."""
    if not expires_at:
        return ""
    when = time.localtime(expires_at)
    same_day = time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d", time.localtime(now))
    return f", until {time.strftime('%H:%M' if same_day else '%Y-%m-%d %H:%M', when)}"


def drain_words(drain: Drain, *, now: float) -> str:
    """Who, why and until when: 'by alice: disk swap, until 14:05' (the token name only)."""
    name = drain.who.partition("@")[0]
    return f"{'by ' + name + ': ' if name else ''}{drain.reason}{until_text(drain.expires_at, now=now)}"


def drained_endpoints(drains: list[Drain], *, now: float) -> str:
    """'1 endpoint drained (by alice: disk swap, until 14:05)'; one group per who/why/until."""
    groups = list(dict.fromkeys(drain_words(d, now=now) for d in drains))
    count = len(drains)
    return f"{count} endpoint{'s' if count != 1 else ''} drained ({'; '.join(groups)})"


def _reason(
    eligible: bool,
    drain: Drain | None,
    up: int,
    *,
    min_up: int,
    view: HealthView,
    endpoints: list[Endpoint],
    now: float,
) -> str:
    """One datacenter's line: drained (which drain: who, why, until when), or how many of its
    endpoints are up, with the endpoint drains named, never counted as down."""
    if drain is not None:
        name = drain.who.partition("@")[0]
        by = f" by {name}: " if name else ": "
        return (
            f"drained ({drain.kind.value} {drain.target}{by}{drain.reason}"
            f"{until_text(drain.expires_at, now=now)})"
        )
    drains = {e.id: view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now) for e in endpoints}
    held = [d for d in drains.values() if d is not None]
    rest = [e for e in endpoints if drains[e.id] is None]
    degraded = sum(view.health(e.id) is Health.DEGRADED for e in rest)
    parts = []
    if rest or not held:
        parts.append(f"{up}/{len(rest)} endpoints up" + (f", {degraded} degraded" if degraded else ""))
    if held:
        parts.append(drained_endpoints(held, now=now))
    text = ", ".join(parts)
    return text if eligible else f"not eligible: {text}, needs {min_up} up"


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
        version = "" if e.state_version is None else f", state version {e.state_version}"
        lines.append(f"health     live{version}")
    else:
        lines.append("health     not loaded: every endpoint counted up (--live asks the running api)")
    lines.append(f"strategy   {e.strategy}: {e.rule}")
    lines.append(
        "datacenters, in the order tried:"
        if e.strategy != "weighted" or "draw" not in e.rule
        else "datacenters:"
    )
    for dc in e.datacenters:
        distance = f"{dc.distance_km:>8.0f} km" if dc.distance_km is not None else "   default order"
        lines.append(f"  {dc.name:<8} {dc.region:<14} {distance}  {dc.reason}")
    how = e.mode
    if loc["latitude"] is None and not loc["datacenter"]:
        how += ", location unknown: geoip.default_order"
    lines.append(f"choice     {e.choice or '-'} ({how})")
    key = f", keyed by {e.key}" if e.key else ""
    lines.append(f"endpoints  {e.policy}{key}:")
    for ep in e.endpoints:
        mark = "*" if ep.chosen else " "
        lines.append(f"  {mark} {ep.address:<39} weight {ep.weight:<5} {ep.reason}")
    varies = f"  (one of {e.varies} answers that vary per reply)" if e.varies > 1 else ""
    lines.append(f"answer     {' '.join(e.records) or 'no records (NODATA)'}  TTL {e.ttl}{varies}")
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
