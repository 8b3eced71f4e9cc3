"""`GET /v1/state` as plain data: datacenters, regions, services, endpoints, drains, sync.

Pure: standard library, `gslb.config.model`, `gslb.health` and `gslb.policy` only; the
route handler passes the live values in. One word per concept: a datacenter's `state` is
`up` (eligible for every service it hosts, every endpoint up), `degraded` (still eligible
for some service, but some endpoint is degraded, down or drained, or it is not eligible for
every service), `down` (eligible for none of its services) or `drained` (a region or
datacenter drain holds it out).

Staleness is loud here: every prober says whether it is stale and since when, and `hold` says
whether the last verdicts hold because no prober is fresh (since when, whose verdicts, which
endpoints they keep out of answers, and whether `prober.hold_stale_s` has released them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gslb.api.audit import iso, split_who
from gslb.config.model import Config
from gslb.health.quorum import Staleness, staleness, tally
from gslb.health.snapshot import Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.policy.nearest import DatacenterState, service_states


class DatacenterHealth(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    DRAINED = "drained"


@dataclass(frozen=True, slots=True)
class SyncInfo:
    """How current this process's picture of the store is."""

    mode: str  # "embedded" or "distributed"
    connected: bool
    last_sync_at: float | None
    store_version: int
    view_version: int
    stale_probers: tuple[str, ...]
    poll_interval_s: float
    details: bool  # per-prober details (EWMA, last check) could be read


def drain_json(drain: Drain) -> dict[str, Any]:
    name, source = split_who(drain.who)
    return {
        "kind": drain.kind.value,
        "target": drain.target,
        "reason": drain.reason,
        "who": drain.who,
        "token": name,
        "source": source,
        "created_at": iso(drain.created_at),
        "expires_at": iso(drain.expires_at),
    }


def prober_json(prober_id: str, state: EndpointState, *, now: float) -> dict[str, Any]:
    return {
        "prober": prober_id,
        "health": state.health.value,
        "degraded": state.health is Health.DEGRADED,
        "ewma_rtt_ms": _round(state.ewma_rtt_ms),
        "baseline_rtt_ms": _round(state.baseline_rtt_ms),
        "last_ok": state.last_ok,
        "last_rtt_ms": _round(state.last_rtt_ms),
        "last_check_at": iso(state.checked_at),
        "last_check_age_s": None if state.checked_at is None else round(max(0.0, now - state.checked_at), 3),
        "ok_streak": state.ok_streak,
        "fail_streak": state.fail_streak,
        "changed_at": iso(state.changed_at) if state.changed_at else None,
        "detail": state.detail,
    }


def hold_json(picture: Staleness, *, read_at: float, hold_stale_s: float | None) -> dict[str, Any]:
    """`hold` in `GET /v1/state`: are the last verdicts held because no prober is fresh?"""
    hold = picture.hold
    return {
        "holding": hold is not None and not hold.released,
        "since": None if hold is None else iso(hold.since),
        "age_s": None if hold is None else round(max(0.0, read_at - hold.since), 3),
        "probers": [] if hold is None else list(hold.probers),
        "endpoints": {} if hold is None else {e: h.value for e, h in sorted(hold.endpoints.items())},
        "released": hold is not None and hold.released,
        "hold_stale_s": hold_stale_s,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def datacenter_health(
    name: str,
    config: Config,
    states: Mapping[str, Mapping[str, DatacenterState]],
    view: HealthView,
    now: float,
) -> tuple[DatacenterHealth, Drain | None]:
    dc = config.datacenters[name]
    drain = view.drain_for(region=dc.region, datacenter=name, now=now)
    if drain is not None:
        return DatacenterHealth.DRAINED, drain
    hosted = [by_dc[name] for by_dc in states.values() if name in by_dc]
    if not hosted:
        return DatacenterHealth.UP, None
    eligible = [s.eligible for s in hosted]
    if not any(eligible):
        return DatacenterHealth.DOWN, None
    endpoints = [e for e in config.endpoints() if e.datacenter == name]
    unwell = any(
        view.health(e.id) is not Health.UP
        or view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now) is not None
        for e in endpoints
    )
    return (DatacenterHealth.DEGRADED if unwell or not all(eligible) else DatacenterHealth.UP), None


def build_state(
    config: Config,
    view: HealthView,
    snapshot: Snapshot,
    details: Snapshot | None,
    sync: SyncInfo,
    *,
    now: float,
) -> dict[str, Any]:
    """Everything `GET /v1/state` returns (see the OpenAPI spec for the shape)."""
    states = service_states(config, view, now=now)
    drains = [d for d in view.drains if d.active(now)]
    datacenters = []
    dc_health: dict[str, DatacenterHealth] = {}
    for name, dc in config.datacenters.items():
        health, drain = datacenter_health(name, config, states, view, now)
        dc_health[name] = health
        datacenters.append(
            {
                "name": name,
                "region": dc.region,
                "latitude": dc.latitude,
                "longitude": dc.longitude,
                "state": health.value,
                "drain": drain_json(drain) if drain else None,
                "services": [
                    {
                        "service": service,
                        "eligible": by_dc[name].eligible,
                        "endpoints_up": by_dc[name].up,
                        "endpoints": sum(
                            1 for e in config.services[service].endpoints if e.datacenter == name
                        ),
                    }
                    for service, by_dc in states.items()
                    if name in by_dc
                ],
            }
        )
    regions = []
    for region in config.regions:
        members = [n for n, dc in config.datacenters.items() if dc.region == region]
        drain = next((d for d in drains if d.kind is DrainKind.REGION and d.target == region), None)
        regions.append(
            {
                "name": region,
                "datacenters": members,
                "drain": drain_json(drain) if drain else None,
                "states": {n: dc_health[n].value for n in members},
            }
        )
    services = []
    for service in config.services.values():
        by_dc = states[service.name]
        eligible = [n for n, s in by_dc.items() if s.eligible]
        services.append(
            {
                "name": service.name,
                "ttl": service.ttl,
                "when_all_down": service.when_all_down.value,
                "eligible_datacenters": eligible,
                "all_down": not eligible,
                "datacenters": list(by_dc),
            }
        )
    stale_after_s = config.prober.stale_after_s
    quorum, hold_stale_s = config.prober.quorum, config.prober.hold_stale_s
    picture = staleness(snapshot, stale_after_s=stale_after_s, quorum=quorum, hold_stale_s=hold_stale_s)
    held = picture.held
    endpoints = []
    for endpoint in config.endpoints():
        vote = tally(
            snapshot, endpoint.id, stale_after_s=stale_after_s, quorum=quorum, hold_stale_s=hold_stale_s
        )
        drain = view.drain_for(
            region=config.datacenters[endpoint.datacenter].region,
            datacenter=endpoint.datacenter,
            endpoint_id=endpoint.id,
            now=now,
        )
        per_prober: Sequence[dict[str, Any]] = []
        if details is not None:
            per_prober = [
                prober_json(prober_id, report.states[endpoint.id], now=now)
                for prober_id, report in sorted(details.probers.items())
                if endpoint.id in report.states
            ]
        endpoints.append(
            {
                "id": endpoint.id,
                "service": endpoint.service,
                "datacenter": endpoint.datacenter,
                "address": str(endpoint.address),
                "weight": endpoint.weight,
                "check": endpoint.check.kind.value,
                "health": view.health(endpoint.id).value,
                "drained": drain is not None,
                "drain": drain_json(drain) if drain else None,
                "held": endpoint.id in held,
                "quorum": vote.quorum,
                "votes": {p: h.value for p, h in vote.votes.items()},
                "votes_held": vote.held,
                "probers": list(per_prober),
            }
        )
    probers = [
        {
            "id": report.prober_id,
            "heartbeat_at": iso(report.heartbeat_at),
            "heartbeat_age_s": round(max(0.0, snapshot.read_at - report.heartbeat_at), 3),
            "stale": report.prober_id in picture.stale_since,
            "stale_since": iso(picture.stale_since.get(report.prober_id)),
        }
        for report in sorted(snapshot.probers.values(), key=lambda r: r.prober_id)
    ]
    age = None if sync.last_sync_at is None else round(max(0.0, now - sync.last_sync_at), 3)
    return {
        "now": iso(now),
        "mode": sync.mode,
        "version": {"store": sync.store_version, "view": sync.view_version},
        "sync": {
            "connected": sync.connected,
            "last_sync_at": iso(sync.last_sync_at),
            "age_s": age,
            "stale": age is None or age > max(3.0, 3 * sync.poll_interval_s),
            "poll_interval_s": sync.poll_interval_s,
            "details": sync.details,
        },
        "probers": probers,
        "stale_probers": sorted(picture.stale_since),
        "hold": hold_json(picture, read_at=snapshot.read_at, hold_stale_s=hold_stale_s),
        "regions": regions,
        "datacenters": datacenters,
        "services": services,
        "endpoints": endpoints,
        "drains": [drain_json(d) for d in drains],
    }
