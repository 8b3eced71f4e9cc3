"""Drain requests: validate the body and the target, and work out what a drain would do.

Pure: standard library, `gslb.api.inputs`, `gslb.config.model` and `gslb.health` only (no
aiohttp), so the 409 rule is unit-tested on its own. Reasons and targets are checked as text
first (`gslb.api.inputs.check_text`). A drain is refused when it would leave some service
with nothing to answer for an address family it serves: every endpoint of that family
drained, counting the drains already in force. Health does not count here: a datacenter
that is down but not drained still answers through `when_all_down: fail_open`, whereas a
drain is operator intent and holds even then. An undrain is never refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from gslb.api.inputs import RequestProblem, check_text
from gslb.config.model import Config, Endpoint, Service
from gslb.health.view import Drain, DrainKind, HealthView

MAX_REASON = 500
MAX_NAME = 255  # a region or datacenter name in a path
MAX_ENDPOINT_ID = 1024  # service name (up to 253) / datacenter / address
MAX_EXPIRES_IN_S = 366 * 86400.0
DRAIN_KEYS = frozenset({"reason", "expires_in_s", "force"})
UNDRAIN_KEYS = frozenset({"reason"})


@dataclass(frozen=True, slots=True)
class DrainRequest:
    reason: str
    expires_in_s: float | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class Emptied:
    """A service (and address family) that a drain would leave with nothing to answer."""

    service: str
    family: str  # "A" or "AAAA"
    fallback: bool  # the service has fallback addresses: those answer instead of NODATA


@dataclass(frozen=True, slots=True)
class Impact:
    """What one drain changes: services and datacenters it covers, and what it empties."""

    services: tuple[str, ...]
    datacenters: tuple[str, ...]
    endpoints: int
    emptied: tuple[Emptied, ...]

    def max_ttl(self, config: Config) -> int:
        return max((config.services[s].ttl for s in self.services), default=0)


def parse_drain_body(body: object) -> DrainRequest:
    """The JSON body of a drain: `reason` (required), `expires_in_s`, `force`."""
    if not isinstance(body, dict):
        raise RequestProblem(400, "bad_body", "the body must be a JSON object")
    _unknown_keys(body, DRAIN_KEYS)
    reason = _reason(body.get("reason"), required=True)
    expires = body.get("expires_in_s")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int | float) or not math.isfinite(expires):
            raise RequestProblem(400, "bad_value", "expires_in_s must be a number of seconds")
        if not 0 < expires <= MAX_EXPIRES_IN_S:
            raise RequestProblem(
                400, "bad_value", f"expires_in_s must be above 0 and at most {MAX_EXPIRES_IN_S:.0f}"
            )
        expires = float(expires)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise RequestProblem(400, "bad_value", "force must be true or false")
    return DrainRequest(reason, expires, force)


def parse_undrain_body(body: object) -> str:
    """The reason of an undrain (optional; the body may be empty)."""
    if body is None:
        return ""
    if not isinstance(body, dict):
        raise RequestProblem(400, "bad_body", "the body must be a JSON object")
    _unknown_keys(body, UNDRAIN_KEYS)
    return _reason(body.get("reason"), required=False)


def _unknown_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise RequestProblem(400, "unknown_key", f"unknown key {unknown[0]!r} (known: {known})")


def _reason(value: object, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise RequestProblem(
            400, "bad_value", "reason must be a non-empty string (why, for the audit log)", field="reason"
        )
    return check_text(value, "reason", max_length=MAX_REASON).strip()


def check_target(config: Config, kind: DrainKind, target: str) -> None:
    """Raise a 404 RequestProblem when the region, datacenter or endpoint is not configured
    (a 400 when `target` is not even text that could name one)."""
    if kind is DrainKind.ENDPOINT:
        check_text(target, "endpoint id", max_length=MAX_ENDPOINT_ID)
    else:
        check_text(target, f"{kind.value} name", max_length=MAX_NAME)
    if kind is DrainKind.REGION:
        known: Iterable[str] = config.regions
    elif kind is DrainKind.DATACENTER:
        known = config.datacenters
    else:
        known = [e.id for e in config.endpoints()]
    if target in known:
        return
    listed = list(known)
    hint = ", ".join(listed[:20]) + (", ..." if len(listed) > 20 else "") if listed else "none"
    raise RequestProblem(
        404, f"unknown_{kind.value}", f'unknown {kind.value} "{target}" (known: {hint})', known=listed[:100]
    )


def _drained(config: Config, view: HealthView, endpoint: Endpoint, *, now: float) -> bool:
    dc = config.datacenters[endpoint.datacenter]
    return (
        view.drain_for(region=dc.region, datacenter=dc.name, now=now) is not None
        or view.drain_for(region="", datacenter="", endpoint_id=endpoint.id, now=now) is not None
    )


def _families(service: Service) -> dict[str, list[Endpoint]]:
    out: dict[str, list[Endpoint]] = {}
    for e in service.endpoints:
        if e.weight > 0:
            out.setdefault("A" if isinstance(e.address, IPv4Address) else "AAAA", []).append(e)
    return out


def empty_services(config: Config, drains: Iterable[Drain], *, now: float) -> set[tuple[str, str]]:
    """(service, family) pairs with every endpoint drained under `drains`."""
    view = HealthView(drains=tuple(drains))
    out = set()
    for service in config.services.values():
        for family, endpoints in _families(service).items():
            if all(_drained(config, view, e, now=now) for e in endpoints):
                out.add((service.name, family))
    return out


def covers(config: Config, drain: Drain, endpoint: Endpoint) -> bool:
    """Whether `drain` alone takes `endpoint` out of answers."""
    if drain.kind is DrainKind.ENDPOINT:
        return drain.target == endpoint.id
    if drain.kind is DrainKind.DATACENTER:
        return drain.target == endpoint.datacenter
    return config.datacenters[endpoint.datacenter].region == drain.target


def impact(config: Config, existing: Iterable[Drain], drain: Drain, *, now: float) -> Impact:
    """What adding `drain` to the drains in force does (`existing` may include an older one
    for the same target: it is replaced)."""
    current = [
        d for d in existing if d.active(now) and not (d.kind is drain.kind and d.target == drain.target)
    ]
    before = empty_services(config, current, now=now)
    after = empty_services(config, [*current, drain], now=now)
    covered = [e for e in config.endpoints() if covers(config, drain, e)]
    emptied = tuple(
        Emptied(name, family, bool(config.services[name].fallback)) for name, family in sorted(after - before)
    )
    return Impact(
        services=tuple(sorted({e.service for e in covered})),
        datacenters=tuple(sorted({e.datacenter for e in covered})),
        endpoints=len(covered),
        emptied=emptied,
    )


def refusal(impact: Impact) -> RequestProblem:
    """The 409 for a drain that would leave services with nothing to answer."""
    by_service: dict[str, list[Emptied]] = {}
    for e in impact.emptied:
        by_service.setdefault(e.service, []).append(e)
    parts = []
    for service, emptied in by_service.items():
        families = " and ".join(e.family for e in emptied)
        then = "the fallback addresses" if emptied[0].fallback else "NODATA"
        parts.append(f"{service.rstrip('.')} ({families}: the answer would be {then})")
    return RequestProblem(
        409,
        "would_drain_everything",
        "refused: this drain would leave nothing undrained to answer for "
        + "; ".join(parts)
        + ". Undrain something first, or repeat with force: true",
        emptied=[{"service": e.service, "family": e.family, "fallback": e.fallback} for e in impact.emptied],
    )


def previously_empty(config: Config, existing: Iterable[Drain], removed: Drain, *, now: float) -> set[str]:
    """Services an undrain of `removed` brings back from having nothing to answer (for the
    negative TTL: resolvers may hold those NODATA replies until it runs out)."""
    active = [d for d in existing if d.active(now)]
    before = empty_services(config, [*active, removed], now=now)
    after = empty_services(config, [d for d in active if d != removed], now=now)
    return {name for name, _ in before - after}
