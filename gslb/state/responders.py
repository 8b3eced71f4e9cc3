"""What a responder says about itself in the store: its registration record and its codec.

Adapter-side but pure: standard library and `gslb.errors` only (no redis, no I/O), so the
api, the CLI and tests use it freely. Every responder (`gslb serve`) writes one
`ResponderRecord` under its id about once a second (`gslb.fleet`); the api reads them all
to show the fleet: who answers, with which zone serials and config, whether its last reload
worked, which store version it has applied and how long ago it last read the store.

Records are versioned JSON like the other state records (`"v": 1`); a reader ignores fields
it does not know and treats missing optional ones as absent, so responders of different
releases can share one store. Time values are seconds since the epoch.

Ageing: a record whose heartbeat is older than `STALE_AFTER_S` is shown as stale (the
responder died, hangs, or lost the store); one older than `FORGET_AFTER_S` is dropped by the
next responder heartbeat that prunes (`Store.forget_responders`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gslb.errors import StateError

FORMAT = 1
HEARTBEAT_INTERVAL_S = 1.0
"""A responder rewrites its record this often (and at once when it applies a new version)."""
STALE_AFTER_S = 5.0
"""A record whose heartbeat is older than this is shown as stale."""
FORGET_AFTER_S = 3600.0
"""A record whose heartbeat is older than this is dropped from the store."""
MAX_PROBLEM = 4000
"""A failed reload's problem text is cut to this many characters in the record."""

_EMPTY_INTS: Mapping[str, int] = MappingProxyType({})
_EMPTY_FLOATS: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """One SIGHUP reload: when, whether it worked, and what it loaded (or why it failed)."""

    at: float
    ok: bool
    problem: str = ""  # the error text of a failed reload
    config_hash: str = ""  # sha256 of the config file bytes read by the reload
    serials: Mapping[str, int] = field(default_factory=lambda: _EMPTY_INTS)  # of a reload that worked


@dataclass(frozen=True, slots=True)
class ResponderRecord:
    """A responder's registration, rewritten by its heartbeat (see the module docstring)."""

    id: str  # "<host name>:<port of the first listener>", "/w<n>" appended for a worker
    at: float  # heartbeat time
    host: str
    pid: int
    version: str  # gslb version
    started_at: float
    listen: tuple[str, ...] = ()  # "127.0.0.1:53", ...
    identity: str = ""  # server.identity (id.server or NSID) when configured
    config_path: str = ""
    config_hash: str = ""  # sha256 of the config file bytes in use
    serials: Mapping[str, int] = field(default_factory=lambda: _EMPTY_INTS)  # zone origin -> serial
    last_reload: ReloadResult | None = None
    state_version: int = 0  # the store version of the health view it answers from
    state_applied_at: float | None = None  # when it first applied that version
    last_sync_at: float | None = None  # last successful read of the store
    store_connected: bool = False
    mode: str = "distributed"  # or "embedded"
    drains: tuple[str, ...] = ()  # drain ids it applies: "<kind>:<target>@<created_at>"
    answers: Mapping[str, int] = field(default_factory=lambda: _EMPTY_INTS)  # datacenter -> total
    answers_per_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY_FLOATS)  # datacenter -> rate
    stopped_at: float | None = None  # set by a clean stop: no longer answering

    @property
    def sync_age_s(self) -> float | None:
        """How old its picture of the store was when it wrote the record."""
        return None if self.last_sync_at is None else max(0.0, self.at - self.last_sync_at)


def drain_id(kind: str, target: str, created_at: float) -> str:
    """How a responder names a drain it applies (a replaced drain gets a new id)."""
    return f"{kind}:{target}@{created_at:.6f}"


def responder_to_json(record: ResponderRecord) -> str:
    """Compact, versioned JSON for one record."""
    reload = record.last_reload
    doc: dict[str, Any] = {
        "v": FORMAT,
        "id": record.id,
        "at": record.at,
        "host": record.host,
        "pid": record.pid,
        "version": record.version,
        "started_at": record.started_at,
        "listen": list(record.listen),
        "identity": record.identity,
        "config_path": record.config_path,
        "config_hash": record.config_hash,
        "serials": dict(record.serials),
        "last_reload": None
        if reload is None
        else {
            "at": reload.at,
            "ok": reload.ok,
            "problem": reload.problem[:MAX_PROBLEM],
            "config_hash": reload.config_hash,
            "serials": dict(reload.serials),
        },
        "state_version": record.state_version,
        "state_applied_at": record.state_applied_at,
        "last_sync_at": record.last_sync_at,
        "store_connected": record.store_connected,
        "mode": record.mode,
        "drains": list(record.drains),
        "answers": dict(record.answers),
        "answers_per_s": {k: round(v, 3) for k, v in record.answers_per_s.items()},
        "stopped_at": record.stopped_at,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def responder_from_json(raw: str | bytes) -> ResponderRecord:
    """Decode `responder_to_json`; StateError if it is not such a record."""
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"bad responder record: {e}") from e
    if not isinstance(d, dict):
        raise StateError("bad responder record: not an object")
    if d.get("v") != FORMAT:
        raise StateError(f"bad responder record: format version {d.get('v')!r}, expected {FORMAT}")
    try:
        reload_doc = d.get("last_reload")
        reload = None
        if reload_doc is not None:
            if not isinstance(reload_doc, dict):
                raise ValueError("last_reload: expected an object")
            reload = ReloadResult(
                at=_float(reload_doc, "at"),
                ok=_bool(reload_doc, "ok"),
                problem=_str(reload_doc, "problem", ""),
                config_hash=_str(reload_doc, "config_hash", ""),
                serials=_ints(reload_doc, "serials"),
            )
        return ResponderRecord(
            id=_str(d, "id"),
            at=_float(d, "at"),
            host=_str(d, "host", ""),
            pid=_int(d, "pid", 0),
            version=_str(d, "version", ""),
            started_at=_float(d, "started_at"),
            listen=tuple(_strs(d, "listen")),
            identity=_str(d, "identity", ""),
            config_path=_str(d, "config_path", ""),
            config_hash=_str(d, "config_hash", ""),
            serials=_ints(d, "serials"),
            last_reload=reload,
            state_version=_int(d, "state_version", 0),
            state_applied_at=_opt_float(d, "state_applied_at"),
            last_sync_at=_opt_float(d, "last_sync_at"),
            store_connected=_bool(d, "store_connected", False),
            mode=_str(d, "mode", "distributed"),
            drains=tuple(_strs(d, "drains")),
            answers=_ints(d, "answers"),
            answers_per_s=_floats(d, "answers_per_s"),
            stopped_at=_opt_float(d, "stopped_at"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"bad responder record: {type(e).__name__} {e}") from e


_MISSING: Any = object()


def _get(d: Mapping[str, Any], key: str, default: Any) -> Any:
    if key in d and d[key] is not None:
        return d[key]
    if default is _MISSING:
        raise KeyError(key)
    return default


def _float(d: Mapping[str, Any], key: str) -> float:
    value = _get(d, key, _MISSING)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _opt_float(d: Mapping[str, Any], key: str) -> float | None:
    return None if d.get(key) is None else _float(d, key)


def _int(d: Mapping[str, Any], key: str, default: Any = _MISSING) -> int:
    value = _get(d, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return value


def _str(d: Mapping[str, Any], key: str, default: Any = _MISSING) -> str:
    value = _get(d, key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {value!r}")
    return value


def _bool(d: Mapping[str, Any], key: str, default: Any = _MISSING) -> bool:
    value = _get(d, key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    return value


def _strs(d: Mapping[str, Any], key: str) -> list[str]:
    value = _get(d, key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings")
    return value


def _ints(d: Mapping[str, Any], key: str) -> Mapping[str, int]:
    value = _get(d, key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key}: expected an object")
    out = {str(k): _int(value, k) for k in value}
    return MappingProxyType(out)


def _floats(d: Mapping[str, Any], key: str) -> Mapping[str, float]:
    value = _get(d, key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key}: expected an object")
    return MappingProxyType({str(k): _float(value, k) for k in value})
