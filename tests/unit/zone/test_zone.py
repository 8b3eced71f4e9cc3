"""Authoritative lookup semantics (RFC 1034 4.3.2, RFC 4592 wildcards) and zone file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.dns.zonefile import load_zone_file, load_zones
from gslb.errors import ConfigError
from gslb.zone.codes import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CAA,
    TYPE_CNAME,
    TYPE_MX,
    TYPE_NS,
    TYPE_SOA,
    TYPE_SRV,
    TYPE_TXT,
)
from gslb.zone.name import from_text, key
from gslb.zone.zone import Outcome, Zones, build_zone
from tests.server_fixture import EXAMPLE_CONFIG

ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"


def k(text: str) -> bytes:
    """The name key of a presentation-form name."""
    return key(from_text(text))


@pytest.fixture(scope="module")
def zones() -> Zones:
    return load_zones(load(EXAMPLE_CONFIG))


@pytest.mark.parametrize(
    ("qname", "qtype", "outcome", "answer_types"),
    [
        ("static.gslb.example.com.", TYPE_A, Outcome.ANSWER, [TYPE_A]),
        ("static.gslb.example.com.", TYPE_MX, Outcome.NODATA, []),
        ("nothing.gslb.example.com.", TYPE_A, Outcome.NXDOMAIN, []),
        ("apps.gslb.example.com.", TYPE_A, Outcome.NODATA, []),  # empty non-terminal
        ("in-addr.arpa.gslb.example.com.", TYPE_A, Outcome.NODATA, []),
        ("x.apps.gslb.example.com.", TYPE_TXT, Outcome.ANSWER, [TYPE_TXT]),
        ("a.b.apps.gslb.example.com.", TYPE_A, Outcome.ANSWER, [TYPE_A]),  # wildcard covers deeper names
        ("x.apps.gslb.example.com.", TYPE_MX, Outcome.NODATA, []),
        ("docs.gslb.example.com.", TYPE_A, Outcome.ANSWER, [TYPE_CNAME]),  # chain leaves our zones
        ("docs.gslb.example.com.", TYPE_CNAME, Outcome.ANSWER, [TYPE_CNAME]),
        ("example.org.", TYPE_A, Outcome.REFUSED, []),
        ("gslb.example.com.evil.", TYPE_A, Outcome.REFUSED, []),
        ("GSLB.Example.COM.", TYPE_A, Outcome.NODATA, []),  # names compare case-insensitively
        (
            "gslb.example.com.",
            TYPE_ANY,
            Outcome.ANSWER,
            [TYPE_SOA, TYPE_NS, TYPE_NS, TYPE_MX, TYPE_TXT, TYPE_CAA],
        ),
    ],
    ids=str,
)
def test_lookup(zones: Zones, qname: str, qtype: int, outcome: Outcome, answer_types: list[int]) -> None:
    result = zones.lookup(k(qname), qtype)
    assert result.outcome is outcome
    assert sorted(r.rtype for r in result.answers) == sorted(answer_types)


def test_wildcard_answers_take_the_query_name(zones: Zones) -> None:
    result = zones.lookup(k("x.apps.gslb.example.com."), TYPE_A)
    assert [r.owner for r in result.answers] == [k("x.apps.gslb.example.com.")]


def test_wildcard_does_not_cover_existing_names_or_their_children(zones: Zones) -> None:
    # static exists, so *.apps cannot cover it; and there is no *.gslb.example.com
    assert zones.lookup(k("y.static.gslb.example.com."), TYPE_A).outcome is Outcome.NXDOMAIN


def test_cname_to_a_service_is_steered_at_the_target(zones: Zones) -> None:
    result = zones.lookup(k("api.gslb.example.com."), TYPE_AAAA)
    assert [r.rtype for r in result.answers] == [TYPE_CNAME]
    assert result.service is not None
    assert result.service_owner == k("www.gslb.example.com.")


def test_service_name_with_other_types_is_nodata(zones: Zones) -> None:
    result = zones.lookup(k("www.gslb.example.com."), TYPE_MX)
    assert result.outcome is Outcome.NODATA
    assert result.service is None


def test_glue_for_ns_and_srv(zones: Zones) -> None:
    ns = zones.lookup(k("gslb.example.com."), TYPE_NS)
    assert {r.owner for r in ns.additional} == {k("ns1.gslb.example.com."), k("ns2.gslb.example.com.")}
    srv = zones.lookup(k("_sip._tcp.gslb.example.com."), TYPE_SRV)
    assert [r.text for r in srv.additional] == ["192.0.2.60"]


def test_negative_ttl_is_min_of_soa_ttl_and_minimum(zones: Zones) -> None:
    zone = zones.find(k("gslb.example.com."))
    assert zone is not None
    assert zone.negative_ttl == 60


def test_longest_match_zone_selection(tmp_path: Path) -> None:
    parent = tmp_path / "parent.zone"
    child = tmp_path / "child.zone"
    parent.write_text("$TTL 60\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n")
    child.write_text("$TTL 60\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nns A 192.0.2.2\n")
    zones = Zones(
        [
            build_zone(k("p.test."), load_zone_file(parent, k("p.test."))),
            build_zone(k("c.p.test."), load_zone_file(child, k("c.p.test."))),
        ]
    )
    assert [r.text for r in zones.lookup(k("ns.c.p.test."), TYPE_A).answers] == ["192.0.2.2"]
    assert [r.text for r in zones.lookup(k("ns.p.test."), TYPE_A).answers] == ["192.0.2.1"]
    assert zones.lookup(k("xp.test."), TYPE_A).outcome is Outcome.REFUSED  # not at a label boundary


def test_zone_file_problems_name_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_zone_file(ZONES / "broken.zone", k("broken.test."))
    problems = "\n".join(info.value.problems)
    assert 'broken.zone, line 6: A data "300.1.1.1" is not an IPv4 address' in problems
    assert "broken.zone, line 7: record type AAA is not supported" in problems
    assert "broken.zone, line 8: $INCLUDE is not supported" in problems
    assert "broken.zone, line 10: cname.broken.test. has a CNAME and other data" in problems
    assert (
        "broken.zone, line 12: NS at sub.broken.test.: delegations below the apex are not supported"
        in problems
    )
    assert len(info.value.problems) == 5, problems


def test_zone_without_soa_is_rejected() -> None:
    with pytest.raises(ConfigError, match="needs exactly one SOA"):
        load_zone_file(ZONES / "no-soa.zone", k("nosoa.test."))
