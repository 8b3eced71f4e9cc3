"""`GET /v1/state` as plain data: datacenters, regions, services, endpoints, drains, sync.

Pure: standard library, `gslb.config.model`, `gslb.health` and `gslb.policy` only; the
route handler passes the live values in. One word per concept: a datacenter's `state` is
`up` (eligible for every service it hosts, every endpoint up), `degraded` (still eligible
for some service, but some endpoint is degraded, down or drained, or it is not eligible for
every service), `down` (eligible for none of its services) or `drained` (a region or
datacenter drain holds it out, or endpoint drains do: without them it would be eligible).

Versions, one name each everywhere (the CLI, `/v1/explain`, `/metrics`, the fleet): the
`state_version` is the store version of the state in use (what `gslb drain` reports as
written, what each responder reports as applied); the `view_generation` is this process's
local count of health-view swaps (it also moves when a drain expires or a prober goes
stale, which do not change the store).

A prober's `ewma_rtt_ms` is null when its last check failed or it holds the endpoint down:
failures count as a full timeout in the EWMA, so the figure would be the timeout, not a
round trip. `failure` is then the check's own words (refused, timeout, HTTP 503...).

Staleness is loud here: every prober says whether it is stale and since when, and `hold` says
whether the last verdicts hold because no prober is fresh (since when, whose verdicts, which
endpoints they keep out of answers, and whether `prober.hold_stale_s` has released them).

The fleet (`add_fleet`): every responder's registration record with its status (`up`,
`stale`: no heartbeat for `STALE_AFTER_S`, `stopped`: stopped cleanly) and what is wrong
across the live ones: a zone served with different serials (serial drift), different config
files (config-hash drift), a failed last reload, a responder that cannot read the store.
Each drain lists the live responders that apply it and those that do not yet.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gslb.api.audit import iso, split_who
from gslb.config.model import Config
from gslb.health.quorum import Staleness, staleness, tally
from gslb.health.snapshot import Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.policy.decision import DatacenterState, service_states
from gslb.state.responders import STALE_AFTER_S, ResponderRecord, drain_id


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
    failed = state.last_ok is False
    return {
        "prober": prober_id,
        "health": state.health.value,
        "degraded": state.health is Health.DEGRADED,
        # a failure counts as a full timeout in the EWMA: no round-trip figure for a failing check
        "ewma_rtt_ms": None if failed or state.health is Health.DOWN else _round(state.ewma_rtt_ms),
        "baseline_rtt_ms": _round(state.baseline_rtt_ms),
        "last_ok": state.last_ok,
        "last_rtt_ms": _round(state.last_rtt_ms),
        "last_check_at": iso(state.checked_at),
        "last_check_age_s": None if state.checked_at is None else round(max(0.0, now - state.checked_at), 3),
        "ok_streak": state.ok_streak,
        "fail_streak": state.fail_streak,
        "changed_at": iso(state.changed_at) if state.changed_at else None,
        "detail": state.detail,
        "failure": (state.detail or "check failed") if failed else None,
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


def endpoint_drains(name: str, config: Config, view: HealthView, now: float) -> list[Drain]:
    """The endpoint drains in force on the endpoints of datacenter `name`, in config order."""
    found = []
    for endpoint in config.endpoints():
        if endpoint.datacenter != name:
            continue
        drain = view.drain_for(region="", datacenter="", endpoint_id=endpoint.id, now=now)
        if drain is not None:
            found.append(drain)
    return found


def datacenter_health(
    name: str,
    config: Config,
    states: Mapping[str, Mapping[str, DatacenterState]],
    view: HealthView,
    now: float,
) -> tuple[DatacenterHealth, Drain | None]:
    """The datacenter's state and the region or datacenter drain that holds it out, if any.
    Eligible for none of its services only because of endpoint drains is `drained` too
    (`endpoint_drains` names them): those endpoints are not down, they are held out."""
    dc = config.datacenters[name]
    drain = view.drain_for(region=dc.region, datacenter=name, now=now)
    if drain is not None:
        return DatacenterHealth.DRAINED, drain
    hosted = [by_dc[name] for by_dc in states.values() if name in by_dc]
    if not hosted:
        return DatacenterHealth.UP, None
    eligible = [s.eligible for s in hosted]
    drained = endpoint_drains(name, config, view, now)
    if not any(eligible):
        if drained and _eligible_undrained(name, config, view, now):
            return DatacenterHealth.DRAINED, None
        return DatacenterHealth.DOWN, None
    endpoints = [e for e in config.endpoints() if e.datacenter == name]
    unwell = bool(drained) or any(view.health(e.id) is not Health.UP for e in endpoints)
    return (DatacenterHealth.DEGRADED if unwell or not all(eligible) else DatacenterHealth.UP), None


def _eligible_undrained(name: str, config: Config, view: HealthView, now: float) -> bool:
    """Would datacenter `name` be eligible for some service without the endpoint drains?"""
    kept = tuple(d for d in view.drains if d.kind is not DrainKind.ENDPOINT)
    states = service_states(config, replace(view, drains=kept), now=now)
    return any(by_dc[name].eligible for by_dc in states.values() if name in by_dc)


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
                "endpoint_drains": [drain_json(d) for d in endpoint_drains(name, config, view, now)],
                "services": [
                    {
                        "service": service,
                        "eligible": by_dc[name].eligible,
                        "endpoints_up": by_dc[name].up,
                        "endpoints_drained": sum(
                            1
                            for e in config.services[service].endpoints
                            if e.datacenter == name
                            and view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now)
                        ),
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
        "state_version": sync.store_version,
        "view_generation": sync.view_version,
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


# -- the fleet of responders --------------------------------------------------------------------


class ResponderStatus(enum.Enum):
    UP = "up"
    STALE = "stale"  # no heartbeat for STALE_AFTER_S: dead, hung, or cut off from the store
    STOPPED = "stopped"  # stopped cleanly


def responder_status(record: ResponderRecord, *, now: float) -> ResponderStatus:
    if record.stopped_at is not None:
        return ResponderStatus.STOPPED
    if now - record.at > STALE_AFTER_S:
        return ResponderStatus.STALE
    return ResponderStatus.UP


def live_responders(records: Sequence[ResponderRecord], *, now: float) -> list[ResponderRecord]:
    return [r for r in records if responder_status(r, now=now) is ResponderStatus.UP]


def serial_drift(records: Sequence[ResponderRecord]) -> dict[str, dict[int, list[str]]]:
    """Zones that `records` serve with more than one serial: origin -> serial -> responder ids."""
    by_zone: dict[str, dict[int, list[str]]] = {}
    for record in records:
        for origin, serial in record.serials.items():
            by_zone.setdefault(origin, {}).setdefault(serial, []).append(record.id)
    return {
        origin: dict(sorted(serials.items()))
        for origin, serials in sorted(by_zone.items())
        if len(serials) > 1
    }


def config_drift(records: Sequence[ResponderRecord]) -> dict[str, list[str]]:
    """Config hash -> responder ids, when `records` run more than one config file content."""
    by_hash: dict[str, list[str]] = {}
    for record in records:
        if record.config_hash:
            by_hash.setdefault(record.config_hash, []).append(record.id)
    return dict(sorted(by_hash.items())) if len(by_hash) > 1 else {}


def applied_split(
    records: Sequence[ResponderRecord], version: int, *, now: float
) -> dict[str, list[dict[str, Any]]]:
    """Which live responders answer from store `version` or later (a drain written at that
    version is in their answers), which do not yet, and which cannot tell (stale)."""
    applied, pending, silent = [], [], []
    for record in records:
        status = responder_status(record, now=now)
        age = round(max(0.0, now - record.at), 3)
        if status is ResponderStatus.STOPPED:
            continue
        if status is ResponderStatus.STALE:
            silent.append({"id": record.id, "heartbeat_age_s": age})
        elif record.state_version >= version:
            applied.append({"id": record.id, "applied_at": iso(record.state_applied_at)})
        else:
            pending.append({"id": record.id, "state_version": record.state_version, "heartbeat_age_s": age})
    return {"applied": applied, "pending": pending, "not_reporting": silent}


def responder_problems(record: ResponderRecord, *, now: float, poll_interval_s: float) -> list[str]:
    """What is wrong with one responder, in words (empty when nothing is)."""
    status = responder_status(record, now=now)
    if status is ResponderStatus.STOPPED:
        return []
    problems = []
    if status is ResponderStatus.STALE:
        problems.append(f"responder {record.id}: no heartbeat for {now - record.at:.0f} s (stale)")
    reload = record.last_reload
    if reload is not None and not reload.ok:
        first = (reload.problem.strip().splitlines() or ["(no message)"])[0]
        problems.append(
            f"responder {record.id}: last reload failed at {iso(reload.at)}, still serving the "
            f"previous config: {first}"
        )
    if status is ResponderStatus.UP:
        age = record.sync_age_s
        if not record.store_connected or age is None or age > max(3.0, 3 * poll_interval_s):
            read = "never" if age is None else f"{age:.0f} s ago"
            problems.append(f"responder {record.id}: cannot read the state store (last read {read})")
    return problems


def responder_json(record: ResponderRecord, *, now: float, poll_interval_s: float) -> dict[str, Any]:
    reload = record.last_reload
    age = record.sync_age_s
    return {
        "id": record.id,
        "status": responder_status(record, now=now).value,
        "host": record.host,
        "pid": record.pid,
        "version": record.version,
        "identity": record.identity,
        "listen": list(record.listen),
        "mode": record.mode,
        "started_at": iso(record.started_at),
        "heartbeat_at": iso(record.at),
        "heartbeat_age_s": round(max(0.0, now - record.at), 3),
        "stopped_at": iso(record.stopped_at),
        "config_path": record.config_path,
        "config_hash": record.config_hash,
        "zones": dict(sorted(record.serials.items())),
        "last_reload": None
        if reload is None
        else {
            "at": iso(reload.at),
            "ok": reload.ok,
            "problem": reload.problem,
            "config_hash": reload.config_hash,
            "zones": dict(sorted(reload.serials.items())),
        },
        "state_version": record.state_version,
        "state_applied_at": iso(record.state_applied_at),
        "last_sync_at": iso(record.last_sync_at),
        "sync_age_s": None if age is None else round(age, 3),
        "store_connected": record.store_connected,
        "answers": dict(record.answers),
        "answers_per_s": {dc: round(rate, 3) for dc, rate in record.answers_per_s.items()},
        "problems": responder_problems(record, now=now, poll_interval_s=poll_interval_s),
    }


def fleet_json(
    records: Sequence[ResponderRecord] | None, *, now: float, poll_interval_s: float
) -> dict[str, Any]:
    """`fleet` in `GET /v1/state`: counts, drifts, failed reloads and every problem in words.
    `records` None: the store could not be read (the fleet is unknown, and says so)."""
    if records is None:
        return {
            "known": False,
            "responders": 0,
            "up": [],
            "stale": [],
            "stopped": [],
            "zone_serial_drift": {},
            "config_drift": {},
            "failed_reloads": [],
            "answers_per_s": {},
            "problems": ["responders unknown: the state store could not be read"],
        }
    status = {r.id: responder_status(r, now=now) for r in records}
    live = live_responders(records, now=now)
    zones = serial_drift(live)
    configs = config_drift(live)
    problems = [p for r in records for p in responder_problems(r, now=now, poll_interval_s=poll_interval_s)]
    for origin, serials in zones.items():
        where = "; ".join(f"{serial} on {', '.join(ids)}" for serial, ids in serials.items())
        problems.append(f"zone {origin}: serial drift: {where}")
    if configs:
        where = "; ".join(f"{digest[:12]} on {', '.join(ids)}" for digest, ids in configs.items())
        problems.append(f"config drift: the responders run different config files: {where}")
    rates: dict[str, float] = {}
    for record in live:
        for dc, rate in record.answers_per_s.items():
            rates[dc] = rates.get(dc, 0.0) + rate
    return {
        "known": True,
        "responders": len(records),
        "up": [r.id for r in records if status[r.id] is ResponderStatus.UP],
        "stale": [r.id for r in records if status[r.id] is ResponderStatus.STALE],
        "stopped": [r.id for r in records if status[r.id] is ResponderStatus.STOPPED],
        "zone_serial_drift": {
            origin: {str(serial): ids for serial, ids in serials.items()} for origin, serials in zones.items()
        },
        "config_drift": configs,
        "failed_reloads": [
            r.id
            for r in records
            if status[r.id] is not ResponderStatus.STOPPED
            and r.last_reload is not None
            and not r.last_reload.ok
        ],
        "answers_per_s": {dc: round(rate, 3) for dc, rate in sorted(rates.items())},
        "problems": problems,
    }


def drain_responders(drain: Drain, records: Sequence[ResponderRecord], *, now: float) -> dict[str, list[str]]:
    """The live responders that apply `drain` (it is in their answers) and those that do not yet."""
    key = drain_id(drain.kind.value, drain.target, drain.created_at)
    live = live_responders(records, now=now)
    return {
        "applied": [r.id for r in live if key in r.drains],
        "pending": [r.id for r in live if key not in r.drains],
    }


def add_fleet(
    body: dict[str, Any],
    records: Sequence[ResponderRecord] | None,
    drains: Sequence[Drain],
    *,
    now: float,
    poll_interval_s: float,
) -> dict[str, Any]:
    """Add `responders`, `fleet` and each drain's `responders` to a `build_state` body."""
    known = list(records or ())
    body["responders"] = [responder_json(r, now=now, poll_interval_s=poll_interval_s) for r in known]
    body["fleet"] = fleet_json(records, now=now, poll_interval_s=poll_interval_s)
    if records is not None:
        by_key = {(d.kind.value, d.target): d for d in drains}
        for item in body.get("drains", []):
            drain = by_key.get((item["kind"], item["target"]))
            if drain is not None:
                item["responders"] = drain_responders(drain, known, now=now)
    return body
