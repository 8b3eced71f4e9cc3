"""Locator.locations_within: every Location under a network, for widening the ECS scope."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.config.model import Override
from gslb.geo import Location, LocationSource, Locator

DATA = Path(__file__).resolve().parents[2] / "data" / "geoip"
CITY = DATA / "GeoIP2-City-Test.mmdb"
COUNTRY = DATA / "GeoIP2-Country-Test.mmdb"

DATABASE = LocationSource.DATABASE
UNKNOWN = LocationSource.UNKNOWN
OVERRIDE = LocationSource.OVERRIDE

OVERRIDES = (
    Override(ip_network("81.2.69.142/32"), datacenter="ams"),
    Override(ip_network("81.2.69.176/28"), latitude=1.0, longitude=2.0),  # inside the London /27
    Override(ip_network("175.16.0.0/16"), latitude=52.37, longitude=4.90),
    Override(ip_network("175.16.199.128/25"), datacenter="nrt"),
    Override(ip_network("2001:218::/48"), datacenter="nrt"),
    Override(ip_network("2001:218:0:8000::/49"), datacenter="hnd"),  # nested, at the /48's edge
    Override(ip_network("1.1.1.0/24"), datacenter="syd"),
)


@pytest.fixture(scope="module")
def city() -> Locator:
    return Locator(CITY)


@pytest.fixture(scope="module")
def overridden() -> Locator:
    return Locator(CITY, OVERRIDES)


def networks(locations: list[Location] | None) -> list[IPv4Network | IPv6Network]:
    assert locations is not None
    return [location.network for location in locations]


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("81.2.69.142/32", "81.2.69.142/31"),
        ("81.2.69.142/31", "81.2.69.142/31"),
        ("175.16.199.0/26", "175.16.199.0/24"),
        ("1.1.1.0/24", "1.0.0.0/8"),
        ("2001:218:1::/48", "2001:218::/32"),
        ("::ffff:81.2.69.142/128", "::ffff:81.2.69.142/127"),
    ],
    ids=["host-in-/31", "the-/31", "inside-a-/24", "inside-an-empty-/8", "ipv6-inside-/32", "mapped-host"],
)
def test_small_network_has_one_location(city: Locator, network: str, expected: str) -> None:
    locations = city.locations_within(ip_network(network), 1)
    assert networks(locations) == [ip_network(expected)]
    assert locations == [city.locate(ip_network(network).network_address)]


def test_supernet_lists_every_database_and_empty_network(city: Locator) -> None:
    locations = city.locations_within(ip_network("81.2.69.128/25"), 16)
    assert networks(locations) == [
        ip_network(n)
        for n in (
            "81.2.69.128/29",
            "81.2.69.136/30",
            "81.2.69.140/31",
            "81.2.69.142/31",
            "81.2.69.144/28",
            "81.2.69.160/27",
            "81.2.69.192/28",
            "81.2.69.208/28",
            "81.2.69.224/27",
        )
    ]
    assert locations is not None
    assert [location.city for location in locations] == [None] * 3 + ["London"] * 4 + [None] * 2
    assert [location.source for location in locations] == [UNKNOWN] * 3 + [DATABASE] * 4 + [UNKNOWN] * 2


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("2001:218::/31", ["2001:218::/32", "2001:219::/32"]),
        ("::ffff:81.2.69.140/126", ["::ffff:81.2.69.140/127", "::ffff:81.2.69.142/127"]),
        (
            "89.160.20.0/24",
            ["89.160.20.0/26", "89.160.20.64/27", "89.160.20.96/28", "89.160.20.112/28", "89.160.20.128/25"],
        ),
    ],
    ids=["ipv6", "mapped", "linkoping"],
)
def test_supernets(city: Locator, network: str, expected: list[str]) -> None:
    assert networks(city.locations_within(ip_network(network), 16)) == [ip_network(n) for n in expected]


@pytest.mark.parametrize(
    ("limit", "found"),
    [(0, False), (8, False), (9, True), (100, True)],
    ids=["zero", "one-short", "exactly", "plenty"],
)
def test_limit(city: Locator, limit: int, found: bool) -> None:
    locations = city.locations_within(ip_network("81.2.69.128/25"), limit)
    assert (locations is not None) == found


def test_limit_stops_the_walk_of_a_big_database_early() -> None:
    locator = Locator(None)
    assert locator.locations_within(ip_network("0.0.0.0/0"), 100) is None
    assert locator.locations_within(ip_network("::/0"), 100) is None


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("81.2.69.142/31", [("81.2.69.142/32", OVERRIDE), ("81.2.69.143/32", DATABASE)]),
        (
            "81.2.69.160/27",
            [("81.2.69.160/28", DATABASE), ("81.2.69.176/28", OVERRIDE)],
        ),
        (
            "175.16.199.0/24",
            [("175.16.199.0/25", OVERRIDE), ("175.16.199.128/25", OVERRIDE)],
        ),
        (
            "2001:218::/47",
            [("2001:218::/49", OVERRIDE), ("2001:218:0:8000::/49", OVERRIDE), ("2001:218:1::/48", DATABASE)],
        ),
        ("1.1.0.0/23", [("1.1.0.0/24", UNKNOWN), ("1.1.1.0/24", OVERRIDE)]),
        ("::ffff:1.1.1.0/121", [("::ffff:1.1.1.0/120", OVERRIDE)]),
    ],
    ids=[
        "host-pinned",
        "coords-in-a-/27",
        "nested-overrides",
        "ipv6-nested",
        "empty-with-override",
        "mapped",
    ],
)
def test_overrides_split_networks(
    overridden: Locator, network: str, expected: list[tuple[str, LocationSource]]
) -> None:
    locations = overridden.locations_within(ip_network(network), 16)
    assert locations is not None
    assert [(location.network, location.source) for location in locations] == [
        (ip_network(n), source) for n, source in expected
    ]


def test_whole_ipv4_space_matches_the_database(city: Locator) -> None:
    locations = city.locations_within(ip_network("0.0.0.0/0"), 10_000)
    assert locations is not None
    found = {location.network for location in locations}
    with maxminddb.open_database(str(CITY)) as reader:
        for network, _record in reader:
            if isinstance(network, IPv4Network):
                assert network in found
    assert sum(location.network.num_addresses for location in locations) == 2**32


def test_mapped_block_inside_a_wider_ipv6_network(mmdb: Callable[..., Path]) -> None:
    locator = Locator(
        mmdb(
            [
                ("10.0.0.0/8", {"country": {"iso_code": "NL"}}),
                ("2001:db8::/32", {"country": {"iso_code": "JP"}}),
            ]
        )
    )
    locations = locator.locations_within(ip_network("::/80"), 100)
    ipv4 = locator.locations_within(ip_network("0.0.0.0/0"), 100)
    assert locations is not None and ipv4 is not None
    mapped_block = ip_network("::ffff:0:0/96")
    mapped = [location for location in locations if location.network.overlaps(mapped_block)]
    # Mapped clients are IPv4 clients: their networks come from the IPv4 tree, in mapped form.
    assert mapped == [
        locator.locate(ip_address(f"::ffff:{location.network.network_address}")) for location in ipv4
    ]
    assert [location.network for location in mapped[:3]] == [
        ip_network("::ffff:0.0.0.0/101"),
        ip_network("::ffff:8.0.0.0/103"),
        ip_network("::ffff:10.0.0.0/104"),
    ]
    assert mapped[2].country == "NL"
    assert sum(location.network.num_addresses for location in locations) == 2**48


# --- property: the result is exactly the set of locate() answers ------------------------------

CORNERS = [
    "81.2.69.128/25",
    "175.16.192.0/18",
    "89.160.20.0/24",
    "214.78.0.0/16",
    "1.1.0.0/16",
    "2001:218::/30",
    "2001:218::/46",
    "::ffff:81.2.69.0/120",
]


@st.composite
def networks_near_data(draw: st.DrawFn) -> IPv4Network | IPv6Network:
    corner = ip_network(draw(st.sampled_from(CORNERS)))
    extra = draw(st.integers(min_value=0, max_value=min(16, corner.max_prefixlen - corner.prefixlen)))
    offset = draw(st.integers(min_value=0, max_value=corner.num_addresses - 1))
    address = ip_address(int(corner.network_address) + offset)
    return ip_network(f"{address}/{corner.prefixlen + extra}", strict=False)


@settings(max_examples=200, deadline=None)
@given(network=networks_near_data(), samples=st.lists(st.integers(min_value=0), min_size=1, max_size=20))
def test_locations_within_is_the_set_of_locate_answers(
    network: IPv4Network | IPv6Network, samples: list[int]
) -> None:
    for locator in (CITY_LOCATOR, OVERRIDDEN_LOCATOR, COUNTRY_LOCATOR):
        locations = locator.locations_within(network, 1000)
        assert locations is not None
        # Each Location is what locate() says of any of its addresses, and they tile `network`.
        for location in locations:
            assert locator.locate(location.network.network_address) == location
            assert locator.locate(location.network.broadcast_address) == location
        covered = sum(min(location.network.num_addresses, network.num_addresses) for location in locations)
        assert covered == network.num_addresses
        for sample in samples:
            address = network.network_address + sample % network.num_addresses
            assert locator.locate(address) in locations


CITY_LOCATOR = Locator(CITY)
OVERRIDDEN_LOCATOR = Locator(CITY, OVERRIDES)
COUNTRY_LOCATOR = Locator(COUNTRY, OVERRIDES)
