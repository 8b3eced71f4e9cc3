"""`server.tcp`: the connection caps and client network prefix lengths, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.config.model import TcpLimits
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"


def config_with(tmp_path: Path, tcp: str) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(
        f"""server:
  tcp: {tcp}
zones: [{{origin: gslb.example.com, file: {ZONE}}}]
"""
    )
    return path


def test_defaults() -> None:
    limits = load(EXAMPLE_CONFIG).server.tcp
    assert limits == TcpLimits()
    assert (limits.max_connections_per_network, limits.ipv4_prefix_length, limits.ipv6_prefix_length) == (
        128,
        24,
        56,
    )


def test_network_keys_load(tmp_path: Path) -> None:
    path = config_with(
        tmp_path, "{max_connections_per_network: 20, ipv4_prefix_length: 16, ipv6_prefix_length: 48}"
    )
    limits = load(path).server.tcp
    assert (limits.max_connections_per_network, limits.ipv4_prefix_length, limits.ipv6_prefix_length) == (
        20,
        16,
        48,
    )


@pytest.mark.parametrize(
    ("tcp", "expected"),
    [
        ("{max_connections_per_network: 0}", "server.tcp.max_connections_per_network: 0 is below 1"),
        ("{ipv4_prefix_length: 33}", "server.tcp.ipv4_prefix_length: 33 is above 32"),
        ("{ipv6_prefix_length: 129}", "server.tcp.ipv6_prefix_length: 129 is above 128"),
        ("{ipv6_prefix_length: 56.5}", "server.tcp.ipv6_prefix_length: expected int, got 56.5"),
    ],
    ids=["network-cap", "ipv4-prefix", "ipv6-prefix", "not-an-int"],
)
def test_a_bad_value_is_reported_with_its_key_path_and_line(tmp_path: Path, tcp: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(config_with(tmp_path, tcp))
    (problem,) = info.value.problems
    assert problem.startswith(expected), problem
    assert "gslb.yaml, line 2" in problem
