"""to_redis/from_redis and snapshot JSON: round trips, versioning, refusing garbage."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.errors import StateError
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.codec import from_redis, snapshot_from_json, snapshot_to_json, to_redis
from gslb.state.record import AuditAction, AuditEntry, Heartbeat

STATE = EndpointState(
    health=Health.DEGRADED,
    ok_streak=4,
    fail_streak=0,
    ewma_rtt_ms=12.5,
    baseline_rtt_ms=3.25,
    baseline_samples=40,
    changed_at=1700000000.5,
    checked_at=1700000100.25,
    last_ok=True,
    last_rtt_ms=11.0,
    detail="HTTP 200",
)
DRAIN = Drain(DrainKind.REGION, "eu", "maintenance ünïcode", "alice", 1.5, 99.0)
AUDIT = AuditEntry(2.0, "bob", AuditAction.UNDRAIN, "region:eu", "done", "")

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@pytest.mark.parametrize(
    "value",
    [STATE, EndpointState(), DRAIN, Drain(DrainKind.ENDPOINT, "a/b/c", ""), AUDIT, Heartbeat(3.0)],
    ids=["state", "empty-state", "drain", "drain-no-expiry", "audit", "heartbeat"],
)
def test_round_trip(value: EndpointState | Drain | AuditEntry | Heartbeat) -> None:
    raw = to_redis(value)
    assert json.loads(raw)["v"] == 1
    cls: Any = type(value)
    assert from_redis(raw, cls) == value
    assert from_redis(raw.encode(), cls) == value


@given(
    st.builds(
        EndpointState,
        health=st.sampled_from(Health),
        ok_streak=st.integers(0, 10**6),
        fail_streak=st.integers(0, 10**6),
        ewma_rtt_ms=st.none() | finite,
        baseline_rtt_ms=st.none() | finite,
        baseline_samples=st.integers(0, 10**6),
        changed_at=finite,
        checked_at=st.none() | finite,
        last_ok=st.none() | st.booleans(),
        last_rtt_ms=st.none() | finite,
        detail=st.text(),
    )
)
def test_any_state_round_trips(state: EndpointState) -> None:
    assert from_redis(to_redis(state), EndpointState) == state


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"v": 2, "at": 1.0}',
        '{"at": 1.0}',
        '{"v": 1}',
        '{"v": 1, "at": "soon"}',
        '{"v": 1, "at": true}',
        b"\xff\xfe",
    ],
    ids=["garbage", "list", "newer-format", "no-version", "missing-field", "string", "bool", "bad-utf8"],
)
def test_refuses_what_it_cannot_read(raw: str | bytes) -> None:
    with pytest.raises(StateError):
        from_redis(raw, Heartbeat)


def test_unknown_enum_value_is_refused() -> None:
    raw = to_redis(STATE).replace('"degraded"', '"sideways"')
    with pytest.raises(StateError, match="EndpointState"):
        from_redis(raw, EndpointState)


def test_snapshot_round_trip() -> None:
    snap = Snapshot(
        version=12,
        read_at=5.0,
        probers=MappingProxyType({"p1": ProberReport.of("p1", 4.5, {"www/ams/192.0.2.1": STATE})}),
        drains=(DRAIN,),
    )
    back = snapshot_from_json(snapshot_to_json(snap, saved_at=6.0))
    assert back.version == 12
    assert back.read_at == 5.0
    assert back.drains == (DRAIN,)
    assert dict(back.probers["p1"].states) == {"www/ams/192.0.2.1": STATE}
    assert dict(back.probers["p1"].health) == {"www/ams/192.0.2.1": Health.DEGRADED}
    assert back.probers["p1"].heartbeat_at == 4.5


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "{}",
        '{"format": "gslb-snapshot", "v": 9}',
        '{"format": "gslb-snapshot", "v": 1, "version": 1, "read_at": 0, "probers": [], "drains": []}',
        '{"format": "gslb-snapshot", "v": 1, "version": 1, "read_at": 0, "probers": {}, "drains": [1]}',
    ],
    ids=["truncated", "empty", "newer-format", "probers-not-object", "bad-drain"],
)
def test_bad_snapshot(raw: str) -> None:
    with pytest.raises(StateError):
        snapshot_from_json(raw)
