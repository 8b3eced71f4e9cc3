"""Drain requests: body validation, unknown targets, and the 409 rule (nothing left to answer)."""

from __future__ import annotations

from typing import Any

import pytest

from gslb.api.drains import (
    DrainRequest,
    check_target,
    impact,
    parse_drain_body,
    parse_undrain_body,
    previously_empty,
    refusal,
)
from gslb.api.inputs import RequestProblem
from gslb.config.model import Config
from gslb.health.view import Drain, DrainKind

NOW = 1000.0
WWW = "www.gslb.example.com."
API4 = "api4.gslb.example.com."
REGION, DC, EP = DrainKind.REGION, DrainKind.DATACENTER, DrainKind.ENDPOINT


def d(kind: DrainKind, target: str, expires_at: float | None = None) -> Drain:
    return Drain(kind, target, "test", "t@127.0.0.1", created_at=NOW, expires_at=expires_at)


# -- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"reason": "maintenance"}, DrainRequest("maintenance")),
        ({"reason": " padded  "}, DrainRequest("padded")),
        ({"reason": "x", "expires_in_s": 600}, DrainRequest("x", 600.0)),
        ({"reason": "x", "expires_in_s": 0.5, "force": True}, DrainRequest("x", 0.5, True)),
        ({"reason": "x", "force": False}, DrainRequest("x")),
    ],
    ids=["reason", "stripped", "expiry", "expiry-force", "no-force"],
)
def test_good_drain_bodies(body: dict[str, Any], expected: DrainRequest) -> None:
    assert parse_drain_body(body) == expected


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (None, "bad_body", "JSON object"),
        ([], "bad_body", "JSON object"),
        ({}, "bad_value", "reason"),
        ({"reason": ""}, "bad_value", "reason"),
        ({"reason": "   "}, "bad_value", "reason"),
        ({"reason": 5}, "bad_value", "reason"),
        ({"reason": "x" * 501}, "bad_value", "longer than 500"),
        ({"reason": "x", "expires_in_s": 0}, "bad_value", "above 0"),
        ({"reason": "x", "expires_in_s": -5}, "bad_value", "above 0"),
        ({"reason": "x", "expires_in_s": "600"}, "bad_value", "number"),
        ({"reason": "x", "expires_in_s": True}, "bad_value", "number"),
        ({"reason": "x", "expires_in_s": 1e12}, "bad_value", "at most"),
        ({"reason": "x", "force": "yes"}, "bad_value", "true or false"),
        ({"reason": "x", "expire_in_s": 60}, "unknown_key", "expire_in_s"),
    ],
    ids=[
        "null",
        "list",
        "no-reason",
        "empty-reason",
        "blank-reason",
        "number-reason",
        "long-reason",
        "zero-expiry",
        "negative-expiry",
        "string-expiry",
        "bool-expiry",
        "huge-expiry",
        "string-force",
        "typo",
    ],
)
def test_bad_drain_bodies_are_400(body: object, code: str, words: str) -> None:
    with pytest.raises(RequestProblem) as info:
        parse_drain_body(body)
    assert (info.value.status, info.value.code) == (400, code)
    assert words in info.value.message


def test_undrain_body_is_optional() -> None:
    assert parse_undrain_body(None) == ""
    assert parse_undrain_body({}) == ""
    assert parse_undrain_body({"reason": "fixed"}) == "fixed"
    with pytest.raises(RequestProblem):
        parse_undrain_body({"force": True})


# -- targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (REGION, "europe"),
        (DC, "ams"),
        (EP, "www.gslb.example.com/ams/192.0.2.10"),
        (EP, "www.gslb.example.com/ams/2001:db8:a::10"),
    ],
    ids=["region", "datacenter", "endpoint", "endpoint-v6"],
)
def test_known_targets(config: Config, kind: DrainKind, target: str) -> None:
    check_target(config, kind, target)


@pytest.mark.parametrize(
    ("kind", "target", "known"),
    [(REGION, "eu", "europe"), (DC, "fra", "ams"), (EP, "www.gslb.example.com/ams/192.0.2.99", "192.0.2.10")],
    ids=["region", "datacenter", "endpoint"],
)
def test_unknown_targets_are_404_and_list_the_known_ones(
    config: Config, kind: DrainKind, target: str, known: str
) -> None:
    with pytest.raises(RequestProblem) as info:
        check_target(config, kind, target)
    assert (info.value.status, info.value.code) == (404, f"unknown_{kind.value}")
    assert known in info.value.message


# -- what a drain does --------------------------------------------------------------------------


def test_a_region_drain_covers_its_datacenters_services_and_endpoints(config: Config) -> None:
    effect = impact(config, [], d(REGION, "europe"), now=NOW)
    assert effect.datacenters == ("ams",)
    assert effect.services == (API4, WWW)
    assert effect.endpoints == 4
    assert effect.emptied == ()
    assert effect.max_ttl(config) == 60


def test_a_region_without_services_affects_nothing(config: Config) -> None:
    effect = impact(config, [], d(REGION, "asia-pacific"), now=NOW)
    assert (effect.services, effect.emptied) == ((WWW,), ())
    assert effect.max_ttl(config) == 30


@pytest.mark.parametrize(
    ("existing", "new", "emptied"),
    [
        ([], d(REGION, "europe"), []),
        ([d(REGION, "europe")], d(REGION, "americas"), [(API4, "A")]),
        (
            [d(REGION, "europe"), d(REGION, "americas")],
            d(REGION, "asia-pacific"),
            [(WWW, "A"), (WWW, "AAAA")],
        ),
        ([d(DC, "ams"), d(DC, "iad")], d(DC, "sin"), [(WWW, "A"), (WWW, "AAAA")]),
        ([d(DC, "ams"), d(DC, "iad")], d(EP, "www.gslb.example.com/sin/2001:db8:c::10"), [(WWW, "AAAA")]),
        (
            [d(DC, "ams"), d(DC, "iad"), d(EP, "www.gslb.example.com/sin/203.0.113.10")],
            d(EP, "www.gslb.example.com/sin/203.0.113.11"),
            [(WWW, "A")],
        ),
        ([d(DC, "ams")], d(EP, "api4.gslb.example.com/iad/198.51.100.20"), [(API4, "A")]),
        ([d(DC, "ams", expires_at=NOW - 1)], d(DC, "iad"), []),
        ([d(DC, "ams", expires_at=NOW + 60)], d(DC, "iad"), [(API4, "A")]),
        ([d(DC, "ams"), d(DC, "iad")], d(DC, "iad"), [(API4, "A")]),
    ],
    ids=[
        "first-region",
        "second-region-empties-api4",
        "third-region-empties-www",
        "all-datacenters",
        "last-v6-endpoint",
        "last-v4-endpoint",
        "endpoint-after-datacenter",
        "expired-drains-do-not-count",
        "unexpired-drains-count",
        "replacing-a-drain-is-judged-without-it",
    ],
)
def test_what_a_drain_would_leave_with_nothing_to_answer(
    config: Config, existing: list[Drain], new: Drain, emptied: list[tuple[str, str]]
) -> None:
    effect = impact(config, existing, new, now=NOW)
    assert [(e.service, e.family) for e in effect.emptied] == emptied


def test_already_empty_services_do_not_count_again(config: Config) -> None:
    everything = [d(REGION, "europe"), d(REGION, "americas"), d(REGION, "asia-pacific")]
    effect = impact(config, everything, d(EP, "www.gslb.example.com/sin/203.0.113.10"), now=NOW)
    assert effect.emptied == ()


def test_the_refusal_names_services_families_and_force(config: Config) -> None:
    effect = impact(config, [d(REGION, "europe")], d(REGION, "americas"), now=NOW)
    problem = refusal(effect)
    assert (problem.status, problem.code) == (409, "would_drain_everything")
    assert "api4.gslb.example.com (A: the answer would be the fallback addresses)" in problem.message
    assert "force: true" in problem.message
    assert problem.extra["emptied"] == [{"service": API4, "family": "A", "fallback": True}]


def test_undrain_after_a_forced_drain_reports_the_services_it_brings_back(config: Config) -> None:
    existing = [d(REGION, "europe"), d(REGION, "americas")]
    assert previously_empty(config, existing[:1], existing[1], now=NOW) == {API4}
    assert previously_empty(config, [], existing[0], now=NOW) == set()
