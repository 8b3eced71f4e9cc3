"""The nearest policy: distance order, eligibility, failover, when_all_down, A/AAAA consistency."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from gslb.config.model import Check, Datacenter, Endpoint, IPAddress, Service, Strategy, WhenAllDown
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.policy.decision import (
    DatacenterState,
    Mode,
    Position,
    datacenter_state,
    decide,
    distance_km,
    order_datacenters,
)

DCS = {
    "ams": Datacenter("ams", 52.37, 4.90, "europe"),
    "iad": Datacenter("iad", 39.04, -77.49, "americas"),
    "sin": Datacenter("sin", 1.35, 103.82, "asia-pacific"),
}
ADDRESSES = {
    "ams": ["192.0.2.10", "192.0.2.11", "2001:db8:a::10"],
    "iad": ["198.51.100.10", "198.51.100.11", "2001:db8:b::10"],
    "sin": ["203.0.113.10", "203.0.113.11", "2001:db8:c::10"],
}
TOKYO = Position(35.68, 139.75)
LONDON = Position(51.51, -0.13)


def service(
    *, when_all_down: WhenAllDown = WhenAllDown.FAIL_OPEN, fallback: tuple[str, ...] = (), min_up: int = 1
) -> Service:
    endpoints = tuple(
        Endpoint(f"www/{dc}/{a}", "www.", dc, ip_address(a), Check())
        for dc, addresses in ADDRESSES.items()
        for a in addresses
    )
    return Service(
        "www.",
        "example.",
        30,
        Strategy.NEAREST,
        min_up,
        when_all_down,
        tuple(ip_address(a) for a in fallback),
        endpoints,
    )


def states(svc: Service, view: HealthView, now: float = 0.0) -> dict[str, DatacenterState]:
    return {name: datacenter_state(svc, dc, view, now=now) for name, dc in DCS.items()}


def down(*endpoint_ids: str) -> dict[str, Health]:
    return dict.fromkeys(endpoint_ids, Health.DOWN)


def addresses(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ip_address(t) for t in texts)


def test_distance_is_great_circle() -> None:
    assert distance_km(LONDON, Position(52.37, 4.90)) == pytest.approx(358, abs=5)
    assert distance_km(TOKYO, Position(1.35, 103.82)) == pytest.approx(5320, abs=30)


@pytest.mark.parametrize(
    ("position", "pinned", "expected"),
    [
        (LONDON, None, ("ams", "iad", "sin")),
        (TOKYO, None, ("sin", "ams", "iad")),
        (Position(40.7, -74.0), None, ("iad", "ams", "sin")),
        (None, None, ("iad", "ams", "sin")),  # unknown location: the configured default order
        (TOKYO, "iad", ("iad", "sin", "ams")),  # an override pins a datacenter first
    ],
    ids=["london", "tokyo", "new-york", "unknown", "pinned"],
)
def test_order(position: Position | None, pinned: str | None, expected: tuple[str, ...]) -> None:
    order = order_datacenters(
        ["ams", "iad", "sin"], DCS, position=position, pinned=pinned, default_order=["iad"]
    )
    assert order == expected


def test_nearest_eligible_datacenter_wins() -> None:
    svc = service()
    decision = decide(svc, ("ams", "iad", "sin"), states(svc, HealthView()), v4=True)
    assert (decision.mode, decision.datacenter) == (Mode.NEAREST, "ams")
    assert decision.addresses == addresses("192.0.2.10", "192.0.2.11")


def test_down_endpoints_leave_the_answer_and_the_datacenter_stays() -> None:
    svc = service()
    view = HealthView(1, down("www/ams/192.0.2.10"))
    decision = decide(svc, ("ams", "iad", "sin"), states(svc, view), v4=True)
    assert (decision.datacenter, decision.addresses) == ("ams", addresses("192.0.2.11"))


def test_failover_to_the_next_nearest_when_all_endpoints_are_down() -> None:
    svc = service()
    view = HealthView(1, down(*(f"www/ams/{a}" for a in ADDRESSES["ams"])))
    decision = decide(svc, ("ams", "iad", "sin"), states(svc, view), v4=True)
    assert (decision.mode, decision.datacenter) == (Mode.FAILOVER, "iad")


def test_min_up_makes_a_thin_datacenter_ineligible() -> None:
    svc = service(min_up=3)
    view = HealthView(1, down("www/ams/192.0.2.10"))
    decision = decide(svc, ("ams", "iad", "sin"), states(svc, view), v4=True)
    assert decision.datacenter == "iad"


@pytest.mark.parametrize(
    ("kind", "target"),
    [(DrainKind.DATACENTER, "ams"), (DrainKind.REGION, "europe")],
    ids=["datacenter", "region"],
)
def test_drains_win_over_health(kind: DrainKind, target: str) -> None:
    svc = service()
    view = HealthView(1, drains=(Drain(kind, target, "maintenance"),))
    decision = decide(svc, ("ams", "iad", "sin"), states(svc, view), v4=True)
    assert decision.datacenter == "iad"


def test_expired_drain_no_longer_applies() -> None:
    svc = service()
    view = HealthView(1, drains=(Drain(DrainKind.DATACENTER, "ams", "x", expires_at=10.0),))
    assert decide(svc, ("ams", "iad"), states(svc, view, now=5.0), v4=True).datacenter == "iad"
    assert decide(svc, ("ams", "iad"), states(svc, view, now=11.0), v4=True).datacenter == "ams"


def test_endpoint_drain_removes_only_that_endpoint() -> None:
    svc = service()
    view = HealthView(1, drains=(Drain(DrainKind.ENDPOINT, "www/ams/192.0.2.10", "x"),))
    decision = decide(svc, ("ams",), states(svc, view), v4=True)
    assert decision.addresses == addresses("192.0.2.11")


def test_degraded_endpoints_are_soft_drained() -> None:
    svc = service()
    view = HealthView(1, {"www/ams/192.0.2.10": Health.DEGRADED})
    assert decide(svc, ("ams",), states(svc, view), v4=True).addresses == addresses("192.0.2.11")
    both = HealthView(2, {"www/ams/192.0.2.10": Health.DEGRADED, "www/ams/192.0.2.11": Health.DEGRADED})
    # degraded is better than nothing: used when no healthier endpoint is left
    assert decide(svc, ("ams", "iad"), states(svc, both), v4=True).addresses == addresses(
        "192.0.2.10", "192.0.2.11"
    )


def test_a_and_aaaa_steer_to_the_same_datacenter() -> None:
    svc = service()
    view = HealthView(1, down("www/ams/192.0.2.10", "www/ams/192.0.2.11"))  # ams keeps its IPv6 endpoint
    st = states(svc, view)
    v4 = decide(svc, ("ams", "iad", "sin"), st, v4=True)
    v6 = decide(svc, ("ams", "iad", "sin"), st, v4=False)
    # ams still has an eligible endpoint, but no IPv4 one: A fails over, AAAA stays
    assert (v4.datacenter, v6.datacenter) == ("iad", "ams")
    healthy = states(svc, HealthView())
    assert (
        decide(svc, ("sin", "ams"), healthy, v4=True).datacenter
        == decide(svc, ("sin", "ams"), healthy, v4=False).datacenter
    )


ALL_DOWN = HealthView(1, down(*(f"www/{dc}/{a}" for dc, addrs in ADDRESSES.items() for a in addrs)))


def test_when_all_down_fail_open_answers_the_nearest_undrained_datacenter() -> None:
    svc = service()
    decision = decide(svc, ("sin", "ams", "iad"), states(svc, ALL_DOWN), v4=True)
    assert (decision.mode, decision.datacenter) == (Mode.FAIL_OPEN, "sin")
    assert decision.addresses == addresses("203.0.113.10", "203.0.113.11")


def test_fail_open_skips_drained_datacenters() -> None:
    svc = service()
    view = HealthView(1, ALL_DOWN.endpoints, (Drain(DrainKind.DATACENTER, "sin", "x"),))
    decision = decide(svc, ("sin", "ams", "iad"), states(svc, view), v4=True)
    assert (decision.mode, decision.datacenter) == (Mode.FAIL_OPEN, "ams")


def test_when_all_down_fallback() -> None:
    svc = service(when_all_down=WhenAllDown.FALLBACK, fallback=("192.0.2.99", "2001:db8::99"))
    decision = decide(svc, ("ams",), states(svc, ALL_DOWN), v4=True)
    assert (decision.mode, decision.addresses) == (Mode.FALLBACK, addresses("192.0.2.99"))


def test_when_all_down_servfail() -> None:
    svc = service(when_all_down=WhenAllDown.SERVFAIL)
    assert decide(svc, ("ams",), states(svc, ALL_DOWN), v4=True).mode is Mode.SERVFAIL


def test_everything_drained_gives_fallback_or_nodata_never_a_drained_datacenter() -> None:
    drains = tuple(Drain(DrainKind.REGION, r, "x") for r in ("europe", "americas", "asia-pacific"))
    view = HealthView(1, drains=drains)
    bare = decide(service(), ("ams", "iad", "sin"), states(service(), view), v4=True)
    assert (bare.mode, bare.addresses) == (Mode.DRAINED, ())
    svc = service(fallback=("192.0.2.99",))
    with_fallback = decide(svc, ("ams", "iad", "sin"), states(svc, view), v4=True)
    assert (with_fallback.mode, with_fallback.addresses) == (Mode.FALLBACK, addresses("192.0.2.99"))
