"""Locator.locate against MaxMind's test databases, the embedded GeoLite2 and written ones."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest

from gslb.config.model import Override
from gslb.errors import ConfigError
from gslb.geo import Location, LocationSource, Locator
from gslb.geo.centroids import CONTINENT_CENTROIDS, country_centroids

DATA = Path(__file__).resolve().parents[2] / "data" / "geoip"
CITY = DATA / "GeoIP2-City-Test.mmdb"
LITE_CITY = DATA / "GeoLite2-City-Test.mmdb"
COUNTRY = DATA / "GeoIP2-Country-Test.mmdb"

WriteMmdb = Callable[..., Path]  # the `mmdb` fixture of conftest.py

DATABASE = LocationSource.DATABASE
UNKNOWN = LocationSource.UNKNOWN
OVERRIDE = LocationSource.OVERRIDE


@pytest.fixture(scope="module")
def city() -> Locator:
    return Locator(CITY)


@pytest.fixture(scope="module")
def country_db() -> Locator:
    return Locator(COUNTRY)


@pytest.fixture(scope="module")
def geolite2() -> Locator:
    return Locator(None)


def locate(locator: Locator, text: str) -> Location:
    return locator.locate(ip_address(text))


CITY_HITS = {  # address: (network, country, continent, city, latitude, longitude)
    "81.2.69.142": ("81.2.69.142/31", "GB", "EU", "London", 51.5142, -0.0931),
    "81.2.69.143": ("81.2.69.142/31", "GB", "EU", "London", 51.5142, -0.0931),
    "81.2.69.144": ("81.2.69.144/28", "GB", "EU", "London", 51.5142, -0.0931),
    "81.2.69.160": ("81.2.69.160/27", "GB", "EU", "London", 51.5142, -0.0931),
    "175.16.199.1": ("175.16.199.0/24", "CN", "AS", "Changchun", 43.88, 125.3228),
    "175.16.199.255": ("175.16.199.0/24", "CN", "AS", "Changchun", 43.88, 125.3228),
    "216.160.83.56": ("216.160.83.56/29", "US", "NA", "Milton", 47.2513, -122.3149),
    "89.160.20.112": ("89.160.20.112/28", "SE", "EU", "Linköping", 58.4167, 15.6167),
    "89.160.20.200": ("89.160.20.128/25", "SE", "EU", "Linköping", 58.4167, 15.6167),
    "2.125.160.216": ("2.125.160.216/29", "GB", "EU", "Boxford", 51.75, -1.25),
    "214.0.1.1": ("214.0.1.0/24", "AU", "OC", "Melbourne", -37.8159, 144.9669),
    "67.43.156.1": ("67.43.156.0/24", "BT", "AS", None, 27.5, 90.5),
    "202.196.224.1": ("202.196.224.0/20", "PH", "AS", None, 13.0, 122.0),
    "2001:218::1": ("2001:218::/32", "JP", "AS", None, 35.68536, 139.75309),
    "2001:220::1": ("2001:220::/32", "KR", "AS", None, 37.0, 127.5),
    "2a02:cf40::1": ("2a02:cf40::/29", "NO", "EU", None, 62.0, 10.0),
}


SUBDIVISIONS = {"81.2": "GB-ENG", "2.125": "GB-ENG", "175.16": "CN-22", "216.160": "US-WA", "89.160": "SE-E"}
SUBDIVISIONS["214.0"] = "AU-VIC"


@pytest.mark.parametrize("address", CITY_HITS, ids=list(CITY_HITS))
def test_city_hits(city: Locator, address: str) -> None:
    network, country, continent, city_name, latitude, longitude = CITY_HITS[address]
    subdivision = SUBDIVISIONS.get(".".join(address.split(".")[:2]))
    assert locate(city, address) == Location(
        ip_network(network),
        DATABASE,
        latitude=latitude,
        longitude=longitude,
        country=country,
        continent=continent,
        city=city_name,
        subdivision=subdivision,
    )
    assert locate(city, address).known


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("1.1.1.1", "1.0.0.0/8"),
        ("8.8.8.8", "8.0.0.0/7"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("81.2.69.141", "81.2.69.140/31"),  # the empty neighbour of the London /31
        ("50.114.0.1", "32.0.0.0/3"),
        ("2001:db8::1", "2001:db8::/32"),
        ("::1", "::/104"),  # ::/96 holds the IPv4 tree: ::0.0.0.1 misses like 0.0.0.1
    ],
    ids=["1.1.1.1", "8.8.8.8", "loopback", "empty-neighbour-/31", "empty-/3", "ipv6-doc", "ipv6-loopback"],
)
def test_misses_report_the_empty_network(city: Locator, address: str, network: str) -> None:
    assert locate(city, address) == Location(ip_network(network), UNKNOWN)
    assert not locate(city, address).known


def test_traits_only_record_is_unknown(city: Locator) -> None:
    assert locate(city, "214.1.1.1") == Location(ip_network("214.1.1.0/24"), UNKNOWN)


def test_continent_only_record_gets_the_continent_centroid(city: Locator) -> None:
    latitude, longitude = CONTINENT_CENTROIDS["EU"]
    assert locate(city, "2.3.3.1") == Location(
        ip_network("2.3.3.0/24"), DATABASE, latitude=latitude, longitude=longitude, continent="EU"
    )


def test_geolite2_city_test_database(tmp_path: Path) -> None:
    locator = Locator(LITE_CITY)
    assert locate(locator, "81.2.69.142").city == "London"
    # 214.78.0.0/19 is one San Diego record here (GeoIP2-City-Test splits it).
    assert locate(locator, "214.78.0.1").network == ip_network("214.78.0.0/19")
    assert locate(locator, "214.1.1.1").source is UNKNOWN


@pytest.mark.parametrize(
    ("address", "network", "country", "continent"),
    [
        ("81.2.69.142", "81.2.69.142/31", "GB", "EU"),
        ("67.43.156.1", "67.43.156.0/24", "BT", "AS"),
        ("175.16.199.1", "175.16.199.0/24", "CN", "AS"),
        ("216.160.83.56", "216.160.83.56/29", "US", "NA"),
        ("50.114.0.1", "50.114.0.0/22", "US", "NA"),
        ("2001:218::1", "2001:218::/32", "JP", "AS"),
        ("2001:220::1", "2001:220::1/128", "KR", "AS"),  # Country-Test splits 2001:220::/32
    ],
    ids=["gb", "bt", "cn", "us", "us-country-only-network", "ipv6-jp", "ipv6-/128"],
)
def test_country_database_places_clients_at_country_centroids(
    country_db: Locator, address: str, network: str, country: str, continent: str
) -> None:
    latitude, longitude = country_centroids()[country]
    assert locate(country_db, address) == Location(
        ip_network(network),
        DATABASE,
        latitude=latitude,
        longitude=longitude,
        country=country,
        continent=continent,
    )


def test_country_database_misses_and_traits(country_db: Locator) -> None:
    assert locate(country_db, "1.1.1.1") == Location(ip_network("1.0.0.0/8"), UNKNOWN)
    assert locate(country_db, "214.1.1.1").source is UNKNOWN


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("::ffff:81.2.69.142", "::ffff:81.2.69.142/127"),
        ("::ffff:175.16.199.7", "::ffff:175.16.199.0/120"),
        ("::ffff:1.1.1.1", "::ffff:1.0.0.0/104"),
    ],
    ids=["london", "changchun", "miss"],
)
def test_ipv4_mapped_addresses_are_ipv4_clients(city: Locator, address: str, network: str) -> None:
    mapped = IPv6Address(address)
    assert mapped.ipv4_mapped is not None
    plain = city.locate(mapped.ipv4_mapped)
    got = city.locate(mapped)
    assert got.network == ip_network(network)
    assert mapped in got.network
    assert (got.source, got.country, got.latitude) == (plain.source, plain.country, plain.latitude)


def test_ipv4_lookups_in_an_ipv6_tree_report_ipv4_prefix_lengths(city: Locator) -> None:
    location = locate(city, "81.2.69.142")
    assert isinstance(location.network.network_address, IPv4Address)
    assert location.network.prefixlen == 31


def test_network_always_contains_the_address(city: Locator) -> None:
    for text in ("81.2.69.142", "1.1.1.1", "214.1.1.1", "2001:218::1", "::ffff:81.2.69.142", "::1"):
        address = ip_address(text)
        assert address in city.locate(address).network


@pytest.mark.parametrize(
    ("address", "country", "continent", "network"),
    [
        ("193.0.14.129", "NL", "EU", "193.0.0.0/20"),
        ("18.0.0.1", "US", "NA", "18.0.0.0/11"),
        ("163.44.0.1", "JP", "AS", "163.44.0.0/20"),
        ("81.2.69.142", "GB", "EU", "81.2.68.0/23"),
        ("2001:218::1", "JP", "AS", "2001:218::/35"),
    ],
    ids=["k-root-amsterdam", "mit-cambridge", "tokyo", "london", "ipv6-japan"],
)
def test_embedded_geolite2_database(
    geolite2: Locator, address: str, country: str, continent: str, network: str
) -> None:
    location = locate(geolite2, address)
    assert (location.country, location.continent, location.network) == (
        country,
        continent,
        ip_network(network),
    )
    assert location.source is DATABASE and location.known


def test_embedded_geolite2_description(geolite2: Locator) -> None:
    assert geolite2.description.startswith("GeoLite2-City built 2018-07-03 (")
    assert geolite2.description.endswith("GeoLite2-City.mmdb)")
    assert geolite2.build_epoch == 1530653216


def test_embedded_geolite2_misses_private_space(geolite2: Locator) -> None:
    assert locate(geolite2, "10.1.2.3") == Location(ip_network("10.0.0.0/8"), UNKNOWN)
    # An anonymous-proxy record: registered_country and traits only.
    assert locate(geolite2, "67.43.156.1").source is UNKNOWN


def test_description_and_build_epoch(city: Locator) -> None:
    assert city.description == f"GeoIP2-City built 2026-02-04 ({CITY})"
    assert city.build_epoch == 1770245369


# --- overrides -------------------------------------------------------------------------------

OVERRIDES = (
    Override(ip_network("81.2.69.142/32"), datacenter="ams"),  # inside the London /31
    Override(ip_network("175.16.0.0/16"), latitude=52.37, longitude=4.90),  # contains Changchun /24
    Override(ip_network("175.16.199.128/25"), datacenter="nrt"),  # nested in the /16
    Override(ip_network("2001:218::/48"), datacenter="nrt"),
    Override(ip_network("::ffff:1.1.1.0/120"), datacenter="syd"),  # mapped form of 1.1.1.0/24
)


@pytest.fixture(scope="module")
def overridden() -> Locator:
    return Locator(CITY, OVERRIDES)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("81.2.69.142", Location(ip_network("81.2.69.142/32"), OVERRIDE, datacenter="ams")),
        ("175.16.199.200", Location(ip_network("175.16.199.128/25"), OVERRIDE, datacenter="nrt")),
        ("175.16.199.1", Location(ip_network("175.16.199.0/25"), OVERRIDE, latitude=52.37, longitude=4.90)),
        ("175.16.1.1", Location(ip_network("175.16.0.0/17"), OVERRIDE, latitude=52.37, longitude=4.90)),
        ("175.16.198.1", Location(ip_network("175.16.198.0/24"), OVERRIDE, latitude=52.37, longitude=4.90)),
        ("2001:218::1", Location(ip_network("2001:218::/48"), OVERRIDE, datacenter="nrt")),
        ("1.1.1.1", Location(ip_network("1.1.1.0/24"), OVERRIDE, datacenter="syd")),
        ("::ffff:1.1.1.1", Location(ip_network("::ffff:1.1.1.0/120"), OVERRIDE, datacenter="syd")),
    ],
    ids=[
        "pins-a-host-inside-a-db-network",
        "longest-match-wins",
        "coords-narrowed-around-a-nested-override",
        "coords-low-half",
        "coords-next-to-the-nested-override",
        "ipv6",
        "mapped-override-applies-to-ipv4",
        "mapped-client",
    ],
)
def test_overrides_win_over_the_database(overridden: Locator, address: str, expected: Location) -> None:
    location = locate(overridden, address)
    assert location == expected
    assert location.known


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("81.2.69.143", "81.2.69.143/32"),  # London /31 minus the overridden .142
        ("2001:218:1::1", "2001:218:1::/48"),  # JP /32 minus the overridden /48
        ("2001:218:8000::1", "2001:218:8000::/33"),
        ("1.2.3.4", "1.2.0.0/15"),  # empty 1.0.0.0/8 minus the overridden 1.1.1.0/24
    ],
    ids=["db-/31", "ipv6-db-/32-near", "ipv6-db-/32-far", "empty-/8"],
)
def test_database_network_is_narrowed_around_overrides(
    overridden: Locator, address: str, network: str
) -> None:
    location = locate(overridden, address)
    assert location.network == ip_network(network)
    assert location.source is not OVERRIDE
    for override in OVERRIDES:
        assert not location.network.overlaps(override.network)


def test_narrowed_database_location_keeps_its_data(overridden: Locator) -> None:
    location = locate(overridden, "81.2.69.143")
    assert (location.source, location.city, location.country) == (DATABASE, "London", "GB")


def test_override_networks_exclude_mapped_space(mmdb: WriteMmdb) -> None:
    locator = Locator(
        mmdb([("2001:db8::/32", {"country": {"iso_code": "NL"}})]),
        [Override(ip_network("::/0"), datacenter="ams")],
    )
    # 2001:db8::1 and ::ffff:0:0 part at bit 2: the widest prefix that avoids mapped space.
    assert locate(locator, "2001:db8::1") == Location(ip_network("2000::/3"), OVERRIDE, datacenter="ams")
    assert locate(locator, "::1").network == ip_network("::/81")
    assert locate(locator, "::ffff:1.2.3.4") == Location(ip_network("::ffff:0:0/96"), UNKNOWN)


def test_duplicate_overrides_keep_the_first(caplog: pytest.LogCaptureFixture) -> None:
    locator = Locator(
        CITY,
        [
            Override(ip_network("192.0.2.0/24"), datacenter="ams"),
            Override(ip_network("::ffff:192.0.2.0/120"), datacenter="fra"),
        ],
    )
    assert locate(locator, "192.0.2.1").datacenter == "ams"
    assert "repeats" in caplog.text


# --- databases of other shapes (written by the conftest writer) ------------------------------

NL = {
    "continent": {"code": "EU"},
    "country": {"iso_code": "NL", "names": {"en": "Netherlands"}},
    "city": {"names": {"en": "Amsterdam", "de": "Amsterdam"}},
    "location": {"latitude": 52.37, "longitude": 4.9, "accuracy_radius": 20},
}


@pytest.mark.parametrize("record_size", [24, 28, 32], ids=["24-bit", "28-bit", "32-bit"])
@pytest.mark.parametrize("ip_version", [4, 6], ids=["ipv4-tree", "ipv6-tree"])
def test_written_databases(mmdb: WriteMmdb, record_size: int, ip_version: int) -> None:
    path = mmdb(
        [("10.0.0.0/8", NL), ("10.1.0.0/16", {"country": {"iso_code": "JP"}})],
        ip_version=ip_version,
        record_size=record_size,
    )
    locator = Locator(path)
    # The /16 splits the /8 in the tree: a lookup reports the leaf it ends in.
    assert locate(locator, "10.2.0.1") == Location(
        ip_network("10.2.0.0/15"), DATABASE, 52.37, 4.9, "NL", "EU", "Amsterdam"
    )
    assert locate(locator, "10.200.0.1").network == ip_network("10.128.0.0/9")
    jp_latitude, jp_longitude = country_centroids()["JP"]
    assert locate(locator, "10.1.0.1") == Location(
        ip_network("10.1.0.0/16"), DATABASE, jp_latitude, jp_longitude, "JP"
    )
    assert locate(locator, "11.0.0.1") == Location(ip_network("11.0.0.0/8"), UNKNOWN)


def test_ipv4_only_database_answers_ipv6_unknown(mmdb: WriteMmdb) -> None:
    locator = Locator(
        mmdb([("10.0.0.0/8", NL)], ip_version=4), [Override(ip_network("2001:db8::/32"), datacenter="x")]
    )
    # All of IPv6 misses; the scope stops short of the override: 2001:0218:: and 2001:0db8::
    # part at bit 20.
    assert locate(locator, "2001:218::1") == Location(ip_network("2001::/21"), UNKNOWN)
    assert locate(locator, "2001:db8::1").datacenter == "x"
    assert locate(locator, "::ffff:10.0.0.1").country == "NL"


def test_ipv6_database_without_ipv4_data(mmdb: WriteMmdb) -> None:
    locator = Locator(mmdb([("2001:db8::/32", NL)]))
    assert locate(locator, "192.0.2.1") == Location(ip_network("0.0.0.0/0"), UNKNOWN)
    assert locate(locator, "2001:db8::1").city == "Amsterdam"


@pytest.mark.parametrize(
    "record",
    [
        {"traits": {"is_anonymous_proxy": True}},
        {"country": "NL"},
        {"country": {"iso_code": 31}},
        {"location": {"latitude": "52", "longitude": 4.9}},
        {"location": [52.0, 4.9]},
        {"location": {"latitude": 152.0, "longitude": 4.9}},
        {"location": {"latitude": 52.0, "longitude": float("nan")}},
        {"city": "Amsterdam"},
        {"country": {"iso_code": "ZZ"}},
    ],
    ids=[
        "traits",
        "country-not-a-map",
        "iso-code-not-a-string",
        "latitude-string",
        "location-list",
        "latitude-out-of-range",
        "longitude-nan",
        "city-string",
        "unknown-country",
    ],
)
def test_odd_records_do_not_crash(mmdb: WriteMmdb, record: dict[str, object]) -> None:
    locator = Locator(mmdb([("10.0.0.0/8", record)]))
    location = locate(locator, "10.0.0.1")
    assert location.network == ip_network("10.0.0.0/8")
    assert location.latitude is None
    assert not location.known


def test_record_that_is_not_a_map_is_unknown(mmdb: WriteMmdb) -> None:
    locator = Locator(mmdb([("10.0.0.0/8", "just a string")]))
    assert locate(locator, "10.0.0.1") == Location(ip_network("10.0.0.0/8"), UNKNOWN)


def test_unknown_country_falls_back_to_its_continent(mmdb: WriteMmdb) -> None:
    locator = Locator(mmdb([("10.0.0.0/8", {"country": {"iso_code": "ZZ"}, "continent": {"code": "SA"}})]))
    latitude, longitude = CONTINENT_CENTROIDS["SA"]
    assert locate(locator, "10.0.0.1") == Location(
        ip_network("10.0.0.0/8"), DATABASE, latitude, longitude, "ZZ", "SA"
    )


def test_locate_never_raises_after_close(caplog: pytest.LogCaptureFixture) -> None:
    locator = Locator(CITY)
    locator.close()
    assert locate(locator, "81.2.69.142") == Location(ip_network("81.2.69.142/32"), UNKNOWN)
    assert locate(locator, "2001:218::1") == Location(ip_network("2001:218::1/128"), UNKNOWN)
    assert caplog.text.count("failed") == 1  # logged once, not per query


def test_context_manager_closes() -> None:
    with Locator(CITY) as locator:
        assert locate(locator, "81.2.69.142").city == "London"
    assert locate(locator, "81.2.69.142").source is UNKNOWN


# --- opening errors --------------------------------------------------------------------------


def opening_problem(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        Locator(path)
    assert caught.value.source == str(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: ")
    return problem


def test_missing_database(tmp_path: Path) -> None:
    assert "cannot open (No such file or directory)" in opening_problem(tmp_path / "nope.mmdb")


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    assert "cannot open (Is a directory)" in opening_problem(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a database at all" * 100, (DATA / "LICENSE-MIT").read_bytes()],
    ids=["empty", "text", "license"],
)
def test_not_an_mmdb(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mmdb"
    path.write_bytes(content)
    assert "not a MaxMind DB file" in opening_problem(path)


def test_truncated_tree(tmp_path: Path) -> None:
    original = CITY.read_bytes()
    path = tmp_path / "cut.mmdb"
    marker = original.rindex(b"\xab\xcd\xefMaxMind.com")
    path.write_bytes(original[:100] + original[marker:])  # tree cut short, metadata kept
    problem = opening_problem(path)
    assert "not a MaxMind DB file" in problem or "search tree" in problem


@pytest.mark.parametrize(
    "database_type",
    [
        "GeoLite2-ASN",
        "GeoIP2-ISP",
        "GeoIP2-Anonymous-IP",
        "GeoIP2-Domain",
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
    ],
)
def test_database_without_locations_is_refused(mmdb: WriteMmdb, database_type: str) -> None:
    path = mmdb([("10.0.0.0/8", {"autonomous_system_number": 64500})], database_type=database_type)
    assert f"a {database_type} database has no locations" in opening_problem(path)


@pytest.mark.parametrize(
    "database_type",
    ["GeoIP2-Enterprise", "DBIP-City-Lite", "DBIP-Location-ISP (compat=Enterprise)", "my-own-geo"],
)
def test_other_database_types_are_accepted(mmdb: WriteMmdb, database_type: str) -> None:
    locator = Locator(mmdb([("10.0.0.0/8", NL)], database_type=database_type))
    assert locate(locator, "10.0.0.1").city == "Amsterdam"
    assert locator.description.startswith(f"{database_type} built 2023-11-14 (")


def test_location_known() -> None:
    network = ip_network("192.0.2.0/24")
    assert Location(network, OVERRIDE, datacenter="ams").known
    assert Location(network, DATABASE, latitude=0.0, longitude=0.0).known
    assert not Location(network, DATABASE, latitude=1.0).known
    assert not Location(network, DATABASE, country="NL").known
    assert not Location(network, UNKNOWN).known


def test_block_cache_never_changes_an_answer() -> None:
    """Locations are cached per /24 (/56) only when their network holds the whole block."""
    overrides = (Override(ip_network("1.1.1.128/25"), datacenter="syd"),)
    forward, backward = Locator(CITY, overrides), Locator(CITY, overrides)
    addresses = [
        ip_address(f"{prefix}.{host}") for prefix in ("81.2.69", "1.1.1", "175.16.199") for host in range(256)
    ]
    expected = [forward.locate(address) for address in addresses]
    assert [backward.locate(address) for address in reversed(addresses)] == expected[::-1]
    assert [forward.locate(address) for address in addresses] == expected
    for address, location in zip(addresses, expected, strict=True):
        assert address in location.network
