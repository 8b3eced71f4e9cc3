"""Config errors name the key path, file, line and what is wrong; all problems at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.config.model import CheckKind, WhenAllDown
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

DATA = Path(__file__).resolve().parents[2] / "data" / "config"


def problems_of(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(DATA / name)
    return list(info.value.problems)


def test_example_config_loads() -> None:
    config = load(EXAMPLE_CONFIG)
    service = config.services["www.gslb.example.com."]
    assert service.ttl == 30
    assert service.when_all_down is WhenAllDown.FAIL_OPEN
    assert [e.datacenter for e in service.endpoints].count("ams") == 3
    assert config.datacenters["sin"].region == "asia-pacific"
    assert config.zones[0].file.is_file()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "unknown-datacenter.yaml",
            'services.www.gslb.example.com.datacenters.fra: unknown datacenter "fra" (known: ams)',
        ),
        ("unknown-key.yaml", 'servr: unknown key "servr"'),
        (
            "service-outside-zone.yaml",
            'services.www.example.org: "www.example.org." is in no configured zone',
        ),
        ("missing-zone-file.yaml", "zones[0].file: zone file"),
        ("fallback-without-addresses.yaml", 'when_all_down "fallback" needs "fallback" addresses'),
        ("yaml-syntax.yaml", "YAML syntax"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_one_problem_is_reported_with_its_place(fixture: str, expected: str) -> None:
    problems = problems_of(fixture)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected) or expected in problems[0], problems
    assert "line " in problems[0]


def test_line_and_column_point_at_the_offending_value() -> None:
    (problem,) = problems_of("unknown-datacenter.yaml")
    assert problem.endswith("unknown-datacenter.yaml, line 11, column 12")


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of("many-problems.yaml")
    joined = "\n".join(problems)
    for fragment in (
        'server.listen[0]: "127.0.0.1:99999" is not ADDRESS:PORT',
        "server.udp_payload_size: 100 is below 512",
        "datacenters.ams.latitude: 152.37 is above 90",
        'datacenters.ams.region: unknown region "europ" (known: europe)',
        "services.www.gslb.example.com.ttl: expected int, got 'thirty'",
        'services.www.gslb.example.com.when_all_down: "panic" is not one of: fail_open, fallback, servfail',
        "services.www.gslb.example.com.check.rise: 0 is below 1",
        "services.www.gslb.example.com.datacenters.ams[0]: '192.0.2.300' is not an IP address",
    ):
        assert fragment in joined, joined
    assert len(problems) == 8, joined


def test_message_lists_the_count_and_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        load(DATA / "many-problems.yaml")
    assert str(info.value).startswith(f"{DATA / 'many-problems.yaml'} is invalid (8 problems):\n  - ")


def test_checks_merge_from_service_to_datacenter_to_endpoint(tmp_path: Path) -> None:
    zone = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"
    path = tmp_path / "gslb.yaml"
    path.write_text(
        f"""
zones: [{{origin: gslb.example.com, file: {zone}}}]
regions: [europe]
datacenters: {{ams: {{latitude: 52.37, longitude: 4.90, region: europe}}}}
services:
  www.gslb.example.com:
    check: {{type: http, path: /health, interval_s: 2, timeout_s: 1}}
    datacenters:
      ams:
        check: {{port: 8080}}
        endpoints:
          - 192.0.2.10
          - {{address: 192.0.2.11, weight: 2, check: {{type: tcp}}}}
"""
    )
    first, second = load(path).services["www.gslb.example.com."].endpoints
    assert (first.check.kind, first.check.path, first.check.port) == (CheckKind.HTTP, "/health", 8080)
    assert (second.check.kind, second.check.port, second.weight) == (CheckKind.TCP, 8080, 2)
    assert second.id == "www.gslb.example.com/ams/192.0.2.11"


def test_the_deploy_example_is_valid(tmp_path: Path) -> None:
    deploy = EXAMPLE_CONFIG.parents[2] / "deploy" / "gslb.yaml"
    text = deploy.read_text().replace("/var/lib/GeoIP/GeoLite2-City.mmdb", "null")
    (tmp_path / "gslb.example.com.zone").write_text(
        (EXAMPLE_CONFIG.parent / "gslb.example.com.zone").read_text()
    )
    path = tmp_path / "gslb.yaml"
    path.write_text(text)
    config = load(path)
    assert config.state.redis_url == "redis://redis.internal:6379/0"
    assert [listen.port for listen in config.server.listen] == [53, 53]
