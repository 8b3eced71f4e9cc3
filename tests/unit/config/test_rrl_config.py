"""`server.rrl`: response rate limiting is on by default; every key loads; bad values are
reported with their key path and line."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.config.model import RateLimit
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"


def config_with(tmp_path: Path, rrl: str) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(
        f"""server:
  rrl: {rrl}
zones: [{{origin: gslb.example.com, file: {ZONE}}}]
"""
    )
    return path


def test_on_by_default_with_limits_a_busy_resolver_never_meets() -> None:
    rrl = load(EXAMPLE_CONFIG).server.rrl
    assert rrl == RateLimit()
    assert rrl.enabled and not rrl.log_only
    assert (rrl.responses_per_second, rrl.nxdomains_per_second, rrl.errors_per_second) == (100, 100, 100)
    assert (rrl.all_per_second, rrl.ecs_per_second, rrl.window_s, rrl.slip) == (0, 20_000, 15, 2)
    assert (rrl.ipv4_prefix_length, rrl.ipv6_prefix_length) == (24, 56)
    assert rrl.exempt == (ip_network("127.0.0.0/8"), ip_network("::1/128"))  # no reflection there


def test_an_empty_exempt_list_limits_loopback_too(tmp_path: Path) -> None:
    assert load(config_with(tmp_path, "{exempt: []}")).server.rrl.exempt == ()


def test_every_key_loads(tmp_path: Path) -> None:
    text = (
        "{enabled: true, responses_per_second: 5, nxdomains_per_second: 4, errors_per_second: 3, "
        "all_per_second: 7, ecs_per_second: 8, window_s: 30, slip: 0, ipv4_prefix_length: 32, "
        "ipv6_prefix_length: 64, "
        "exempt: [127.0.0.0/8, '2001:db8::/32'], log_only: true, table_size: 5000, log_interval_s: 60}"
    )
    assert load(config_with(tmp_path, text)).server.rrl == RateLimit(
        enabled=True,
        responses_per_second=5,
        nxdomains_per_second=4,
        errors_per_second=3,
        all_per_second=7,
        ecs_per_second=8,
        window_s=30,
        slip=0,
        ipv4_prefix_length=32,
        ipv6_prefix_length=64,
        exempt=(ip_network("127.0.0.0/8"), ip_network("2001:db8::/32")),
        log_only=True,
        table_size=5000,
        log_interval_s=60.0,
    )


def test_it_can_be_turned_off(tmp_path: Path) -> None:
    assert not load(config_with(tmp_path, "{enabled: false}")).server.rrl.enabled


@pytest.mark.parametrize(
    ("rrl", "expected"),
    [
        ("{slip: 11}", "server.rrl.slip: 11 is above 10"),
        ("{window_s: 0}", "server.rrl.window_s: 0 is below 1"),
        ("{responses_per_second: -1}", "server.rrl.responses_per_second: -1 is below 0"),
        ("{all_per_second: 2.5}", "server.rrl.all_per_second: expected int, got 2.5"),
        ("{ipv4_prefix_length: 33}", "server.rrl.ipv4_prefix_length: 33 is above 32"),
        ("{exempt: [10.0.0.1/8]}", "server.rrl.exempt[0]: '10.0.0.1/8' is not a network like 192.0.2.0/24"),
        ("{exempt: [nonsense]}", "server.rrl.exempt[0]: 'nonsense' is not a network like 192.0.2.0/24"),
        ("{log_only: maybe}", "server.rrl.log_only: expected bool, got 'maybe'"),
        ("{slipp: 2}", 'server.rrl.slipp: unknown key "slipp"'),
    ],
    ids=[
        "slip",
        "window",
        "negative-rate",
        "not-an-int",
        "prefix",
        "host-bits",
        "not-a-network",
        "bool",
        "typo",
    ],
)
def test_a_bad_value_is_reported_with_its_key_path_and_line(tmp_path: Path, rrl: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(config_with(tmp_path, rrl))
    (problem,) = info.value.problems
    assert problem.startswith(expected), problem
    assert "gslb.yaml, line 2" in problem
