"""JSON encoding of state records (`to_redis`/`from_redis`) and of whole snapshots (files).

Adapter-side but pure: standard library, `gslb.health` and `gslb.state.record` only, no
redis. Every record carries `"v": 1`; a reader that meets another format version raises
`StateError` for that record (the store skips it) instead of guessing. Field names are
short because thousands of endpoint states are written every second. Fields added later
within a version are optional on read (an endpoint state without "cost", "cat" or "load",
written before the steering policies, decodes with None there), and readers ignore fields
they do not know, so old and new probers and responders can share one store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast

from gslb.errors import StateError
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.record import AuditAction, AuditEntry, Heartbeat

FORMAT = 1
SNAPSHOT_FORMAT = "gslb-snapshot"

Record = EndpointState | Drain | AuditEntry | Heartbeat
R = TypeVar("R", EndpointState, Drain, AuditEntry, Heartbeat)


def to_redis(value: Record) -> str:
    """Compact, versioned JSON for one record."""
    return json.dumps(_encode(value), separators=(",", ":"), ensure_ascii=False)


def from_redis(raw: str | bytes, cls: type[R]) -> R:
    """Decode one record written by `to_redis`; StateError if it is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"bad {cls.__name__} record: {e}") from e
    return _decode(data, cls)


def drain_key(kind: DrainKind, target: str) -> str:
    """The key of a drain inside the drains hash: one drain per (kind, target)."""
    return f"{kind.value}:{target}"


def snapshot_to_json(snapshot: Snapshot, *, saved_at: float) -> str:
    """A whole snapshot as one JSON document (the responder's last-known-state file)."""
    doc = {
        "format": SNAPSHOT_FORMAT,
        "v": FORMAT,
        "saved_at": saved_at,
        "version": snapshot.version,
        "read_at": snapshot.read_at,
        "probers": {
            prober_id: {
                "heartbeat_at": report.heartbeat_at,
                "health": {eid: health.value for eid, health in report.health.items()},
                "states": {eid: _encode(state) for eid, state in report.states.items()},
            }
            for prober_id, report in snapshot.probers.items()
        },
        "drains": [_encode(d) for d in snapshot.drains],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def snapshot_from_json(raw: str | bytes) -> Snapshot:
    """Decode `snapshot_to_json`; StateError on anything unexpected."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"bad snapshot: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise StateError("bad snapshot: not a gslb snapshot")
    if doc.get("v") != FORMAT:
        raise StateError(f"bad snapshot: format version {doc.get('v')!r}, expected {FORMAT}")
    try:
        probers: dict[str, ProberReport] = {}
        for prober_id, entry in _dict(doc, "probers").items():
            health = {str(eid): Health(value) for eid, value in _dict(entry, "health").items()}
            states = {
                str(eid): _decode(value, EndpointState) for eid, value in _dict(entry, "states").items()
            }
            probers[str(prober_id)] = ProberReport(
                str(prober_id),
                _float(entry, "heartbeat_at"),
                MappingProxyType(health),
                MappingProxyType(states),
            )
        drains = tuple(_decode(d, Drain) for d in _list(doc, "drains"))
        return Snapshot(
            version=_int(doc, "version"),
            read_at=_float(doc, "read_at"),
            probers=MappingProxyType(probers),
            drains=drains,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"bad snapshot: {e}") from e


# --- records -------------------------------------------------------------------------------


def _encode_state(s: EndpointState) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "h": s.health.value,
        "ok": s.ok_streak,
        "fail": s.fail_streak,
        "ewma": s.ewma_rtt_ms,
        "base": s.baseline_rtt_ms,
        "n": s.baseline_samples,
        "chg": s.changed_at,
        "at": s.checked_at,
        "last": s.last_ok,
        "rtt": s.last_rtt_ms,
        "why": s.detail,
        "cost": s.cost_ms,
        "cat": s.cost_at,
        "load": s.load,
    }


def _decode_state(d: dict[str, Any]) -> EndpointState:
    return EndpointState(
        health=Health(d["h"]),
        ok_streak=_int(d, "ok"),
        fail_streak=_int(d, "fail"),
        ewma_rtt_ms=_opt_float(d, "ewma"),
        baseline_rtt_ms=_opt_float(d, "base"),
        baseline_samples=_int(d, "n"),
        changed_at=_float(d, "chg"),
        checked_at=_opt_float(d, "at"),
        last_ok=_opt_bool(d, "last"),
        last_rtt_ms=_opt_float(d, "rtt"),
        detail=_str(d, "why"),
        cost_ms=_opt_float(d, "cost"),
        cost_at=_opt_float(d, "cat"),
        load=_opt_float(d, "load"),
    )


def _encode_drain(dr: Drain) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "kind": dr.kind.value,
        "target": dr.target,
        "reason": dr.reason,
        "who": dr.who,
        "created_at": dr.created_at,
        "expires_at": dr.expires_at,
    }


def _decode_drain(d: dict[str, Any]) -> Drain:
    return Drain(
        kind=DrainKind(d["kind"]),
        target=_str(d, "target"),
        reason=_str(d, "reason"),
        who=_str(d, "who"),
        created_at=_float(d, "created_at"),
        expires_at=_opt_float(d, "expires_at"),
    )


def _encode_audit(a: AuditEntry) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "at": a.at,
        "who": a.who,
        "action": a.action.value,
        "target": a.target,
        "reason": a.reason,
        "detail": a.detail,
    }


def _decode_audit(d: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=_float(d, "at"),
        who=_str(d, "who"),
        action=AuditAction(d["action"]),
        target=_str(d, "target"),
        reason=_str(d, "reason"),
        detail=_str(d, "detail"),
    )


def _encode_heartbeat(h: Heartbeat) -> dict[str, Any]:
    return {"v": FORMAT, "at": h.at}


def _decode_heartbeat(d: dict[str, Any]) -> Heartbeat:
    return Heartbeat(at=_float(d, "at"))


_ENCODERS: Mapping[type, Callable[[Any], dict[str, Any]]] = {
    EndpointState: _encode_state,
    Drain: _encode_drain,
    AuditEntry: _encode_audit,
    Heartbeat: _encode_heartbeat,
}
_DECODERS: Mapping[type, Callable[[dict[str, Any]], Any]] = {
    EndpointState: _decode_state,
    Drain: _decode_drain,
    AuditEntry: _decode_audit,
    Heartbeat: _decode_heartbeat,
}


def _encode(value: Record) -> dict[str, Any]:
    return _ENCODERS[type(value)](value)


def _decode(data: object, cls: type[R]) -> R:
    if not isinstance(data, dict):
        raise StateError(f"bad {cls.__name__} record: not an object")
    if data.get("v") != FORMAT:
        raise StateError(f"bad {cls.__name__} record: format version {data.get('v')!r}, expected {FORMAT}")
    try:
        return cast(R, _DECODERS[cls](data))
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"bad {cls.__name__} record: {type(e).__name__} {e}") from e


def _float(d: Mapping[str, Any], key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _opt_float(d: Mapping[str, Any], key: str) -> float | None:
    return None if d.get(key) is None else _float(d, key)


def _int(d: Mapping[str, Any], key: str) -> int:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return value


def _str(d: Mapping[str, Any], key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {value!r}")
    return value


def _opt_bool(d: Mapping[str, Any], key: str) -> bool | None:
    value = d.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    return value


def _dict(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = d[key]
    if not isinstance(value, dict):
        raise ValueError(f"{key}: expected an object")
    return value


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    value = d[key]
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list")
    return value
