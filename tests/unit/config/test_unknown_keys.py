"""An unknown key says which known key it was probably meant to be."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gslb.config.loader import read
from tests.server_fixture import EXAMPLE_ZONE

CONFIG = """
zones: [{origin: gslb.example.com, file: ZONE}]
regions: [europe]
datacenters:
  ams: {latitude: 52.37, longitude: 4.90, region: europe}
services:
  www.gslb.example.com:
    SERVICE_KEY: 1
    datacenters:
      ams: [192.0.2.10]
state:
  STATE_KEY: 1
"""


def config(state_key: str, service_key: str) -> str:
    text = CONFIG.replace("ZONE", str(EXAMPLE_ZONE)).replace("SERVICE_KEY", service_key)
    return text.replace("STATE_KEY", state_key)


@pytest.mark.parametrize(
    ("state_key", "service_key", "expected"),
    [
        (
            "poll_intervall_s",
            "ttl",
            'state.poll_intervall_s: unknown key "poll_intervall_s" (did you mean "poll_interval_s"? '
            "known: key_prefix, poll_interval_s, redis_timeout_s, redis_url, snapshot_path), ",
        ),
        (
            "poll_interval_s",
            "min_upp",
            'services.www.gslb.example.com.min_upp: unknown key "min_upp" (did you mean "min_up"? known: ',
        ),
        (
            "poll_interval_s",
            "whenalldown",
            'unknown key "whenalldown" (did you mean "when_all_down"? known: ',
        ),
    ],
    ids=["state", "service", "underscores"],
)
def test_an_unknown_key_gets_a_did_you_mean(
    tmp_path: Path, state_key: str, service_key: str, expected: str
) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text(config(state_key, service_key))
    (problem,) = read(path)[1].items
    assert expected in problem
    assert re.search(r", line (8|12), column \d+$", problem), problem  # where the key is written


def test_no_guess_when_nothing_is_close(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text(config("zzzz", "ttl"))
    (problem,) = read(path)[1].items
    assert 'unknown key "zzzz" (known: key_prefix, poll_interval_s,' in problem
    assert "did you mean" not in problem
