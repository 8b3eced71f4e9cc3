"""Endpoint state records keep the peak-EWMA cost and the load figure; older records still decode."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.errors import StateError
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Health
from gslb.state.codec import from_redis, snapshot_from_json, snapshot_to_json, to_redis

STATE = EndpointState(
    health=Health.UP,
    ok_streak=9,
    ewma_rtt_ms=12.5,
    changed_at=1700000000.5,
    checked_at=1700000100.25,
    last_ok=True,
    last_rtt_ms=11.0,
    detail="HTTP 200",
    cost_ms=48.125,
    cost_at=1700000100.25,
    load=0.375,
)

# A record as written before the steering policies (gslb at commit dfe83c0): no cost, cat, load.
OLD_RECORD = (
    '{"v":1,"h":"degraded","ok":4,"fail":0,"ewma":12.5,"base":3.25,"n":40,"chg":1700000000.5,'
    '"at":1700000100.25,"last":true,"rtt":11.0,"why":"HTTP 200"}'
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def test_cost_and_load_round_trip() -> None:
    raw = to_redis(STATE)
    fields = json.loads(raw)
    assert (fields["cost"], fields["cat"], fields["load"]) == (48.125, 1700000100.25, 0.375)
    assert from_redis(raw, EndpointState) == STATE


def test_an_old_record_decodes_without_figures() -> None:
    state = from_redis(OLD_RECORD, EndpointState)
    assert state.health is Health.DEGRADED
    assert state.ewma_rtt_ms == 12.5 and state.detail == "HTTP 200"
    assert (state.cost_ms, state.cost_at, state.load) == (None, None, None)


def test_explicit_nulls_decode_as_no_figures() -> None:
    raw = OLD_RECORD[:-1] + ',"cost":null,"cat":null,"load":null}'
    state = from_redis(raw, EndpointState)
    assert (state.cost_ms, state.cost_at, state.load) == (None, None, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("cost", '"fast"'), ("cat", "true"), ("load", '"high"'), ("load", "[1]")],
    ids=["cost-string", "cost-at-bool", "load-string", "load-list"],
)
def test_a_bad_figure_is_a_bad_record(field: str, value: str) -> None:
    with pytest.raises(StateError, match=field):
        from_redis(OLD_RECORD[:-1] + f',"{field}":{value}}}', EndpointState)


@given(
    st.builds(
        EndpointState,
        health=st.sampled_from(Health),
        changed_at=finite,
        checked_at=st.none() | finite,
        cost_ms=st.none() | finite,
        cost_at=st.none() | finite,
        load=st.none() | finite,
    )
)
def test_any_figures_round_trip(state: EndpointState) -> None:
    assert from_redis(to_redis(state), EndpointState) == state


def test_the_snapshot_file_keeps_the_figures() -> None:
    snap = Snapshot(
        version=4,
        read_at=5.0,
        probers=MappingProxyType({"p1": ProberReport.of("p1", 4.5, {"www/ams/192.0.2.1": STATE})}),
    )
    back = snapshot_from_json(snapshot_to_json(snap, saved_at=6.0))
    assert back.probers["p1"].states["www/ams/192.0.2.1"] == STATE
