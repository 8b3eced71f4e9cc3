"""`check.load_field` / `check.load_header`: where an http check's load figure comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"


def config_with(tmp_path: Path, check: str) -> Path:
    """A config whose one service has this check (on line 9 of the file)."""
    path = tmp_path / "gslb.yaml"
    path.write_text(
        f"zones: [{{origin: gslb.example.com, file: {ZONE}}}]\n"
        "regions: [europe]\n"
        "datacenters:\n"
        "  ams: {latitude: 52.37, longitude: 4.90, region: europe}\n"
        "geoip: {default_order: [ams]}\n"
        "services:\n"
        "  www.gslb.example.com:\n"
        "    datacenters: {ams: [192.0.2.10]}\n"
        f"    check: {check}\n"
    )
    return path


@pytest.mark.parametrize(
    ("check", "field", "header"),
    [
        ("{type: http, load_field: load}", "load", None),
        ("{type: https, load_field: stats.load}", "stats.load", None),
        ("{type: http, load_header: X-Load}", None, "X-Load"),
        ("{type: http}", None, None),
    ],
    ids=["field", "dotted-field", "header", "neither"],
)
def test_a_load_source_loads(tmp_path: Path, check: str, field: str | None, header: str | None) -> None:
    config = load(config_with(tmp_path, check))
    (endpoint,) = config.endpoints()
    assert (endpoint.check.load_field, endpoint.check.load_header) == (field, header)


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{type: tcp, port: 80, load_field: load}", '"load_field" needs an http or https check, not tcp'),
        (
            "{type: dns, query_name: x.test, load_header: X-Load}",
            '"load_header" needs an http or https check',
        ),
        (
            "{type: http, load_field: load, load_header: X-Load}",
            'set "load_field" or "load_header", not both',
        ),
        (
            "{type: http, load_field: stats..load}",
            'load_field "stats..load" is not a field name or dotted path',
        ),
        ('{type: http, load_header: " "}', "load_header is empty"),
        ("{type: http, load_field: 3}", "expected"),
    ],
    ids=["tcp", "dns", "both", "empty-segment", "empty-header", "not-a-string"],
)
def test_a_bad_load_source_is_an_error_with_its_place(tmp_path: Path, check: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(config_with(tmp_path, check))
    found = [p for p in info.value.problems if message in p]
    assert found, info.value.problems
    assert found[0].startswith("services.www.gslb.example.com.check.load_")
    assert "gslb.yaml, line 9" in found[0]
