"""load_overrides: the overrides file format and its errors (one fixture file per error)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

import pytest

from gslb.config.model import Override
from gslb.errors import ConfigError
from gslb.geo import load_overrides
from gslb.geo.overrides import canonical_network

FILES = Path(__file__).resolve().parents[2] / "data" / "geoip" / "overrides"


def test_valid_file() -> None:
    assert load_overrides(FILES / "valid.txt") == (
        Override(ip_network("192.0.2.0/24"), datacenter="ams"),
        Override(ip_network("198.51.100.7/32"), datacenter="iad"),
        Override(ip_network("2001:db8::/32"), latitude=52.37, longitude=4.90),
        Override(ip_network("2001:db8:1::/48"), latitude=-33.87, longitude=151.21),
        Override(ip_network("203.0.113.0/25"), latitude=0.0, longitude=0.0),
    )


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# nothing yet\n\n")
    assert load_overrides(path) == ()


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        ("host-bits", ["line 1: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"]),
        (
            "bad-prefix-length",
            ["line 3: '10.0.0.0/33' is not an IP network (expected e.g. 192.0.2.0/24 or 2001:db8::/32)"],
        ),
        (
            "not-a-network",
            ["line 1: 'office' is not an IP network (expected e.g. 192.0.2.0/24 or 2001:db8::/32)"],
        ),
        ("bad-latitude", ["line 1: latitude 91.5 is outside -90..90"]),
        ("bad-longitude", ["line 1: longitude -180.5 is outside -180..180"]),
        ("nan-latitude", ["line 1: latitude nan is outside -90..90"]),
        ("unknown-syntax", ["line 1: cannot read 'dc=ams': expected datacenter=NAME or LATITUDE,LONGITUDE"]),
        (
            "three-coordinates",
            ["line 1: cannot read '52.3,4.9,7': expected datacenter=NAME or LATITUDE,LONGITUDE"],
        ),
        (
            "missing-target",
            ["line 1: nothing after the network: expected datacenter=NAME or LATITUDE,LONGITUDE"],
        ),
        (
            "empty-datacenter",
            ["line 1: empty datacenter name: expected datacenter=NAME or LATITUDE,LONGITUDE"],
        ),
        ("trailing-words", ["line 1: unexpected 'fra' after datacenter=ams"]),
        ("duplicate", ["line 3: duplicate network 10.0.0.0/8 (first on line 1)"]),
        ("duplicate-mapped", ["line 2: duplicate network ::ffff:192.0.2.0/120 (first on line 1)"]),
        (
            "many-problems",
            [
                "line 2: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)",
                "line 3: latitude 100 is outside -90..90",
                "line 5: 'office' is not an IP network (expected e.g. 192.0.2.0/24 or 2001:db8::/32)",
                "line 5: nothing after the network: expected datacenter=NAME or LATITUDE,LONGITUDE",
                "line 6: duplicate network 192.0.2.0/24 (first on line 4)",
            ],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_errors_name_the_file_and_line(name: str, problems: list[str]) -> None:
    path = FILES / f"{name}.txt"
    with pytest.raises(ConfigError) as caught:
        load_overrides(path)
    assert caught.value.source == str(path)
    assert list(caught.value.problems) == [f"{path}, {problem}" for problem in problems]
    assert f"{path} is invalid ({len(problems)} problem" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.txt"
    with pytest.raises(ConfigError) as caught:
        load_overrides(path)
    assert caught.value.problems == (f"{path}: cannot read (No such file or directory)",)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"# zones\n10.0.0.0/8 datacenter=z\xfcrich\n")
    with pytest.raises(ConfigError) as caught:
        load_overrides(path)
    assert caught.value.problems == (f"{path}, line 2: not UTF-8 text (invalid start byte)",)


@pytest.mark.parametrize(
    ("network", "canonical"),
    [
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("192.0.2.0/24", "192.0.2.0/24"),
    ],
    ids=["mapped-/120", "mapped-block", "wider-than-mapped", "ipv6", "ipv4"],
)
def test_canonical_network(network: str, canonical: str) -> None:
    result: IPv4Network | IPv6Network = canonical_network(ip_network(network))
    assert result == ip_network(canonical)
