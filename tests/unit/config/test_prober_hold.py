"""`prober.hold_stale_s`: how long the last verdicts hold when no prober is fresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"


def config_with(tmp_path: Path, prober: str) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(f"zones: [{{origin: gslb.example.com, file: {ZONE}}}]\nprober: {prober}\n")
    return path


def test_the_default_is_to_hold_forever() -> None:
    assert load(EXAMPLE_CONFIG).prober.hold_stale_s is None


@pytest.mark.parametrize(("text", "seconds"), [("86400", 86400.0), ("0", 0.0), ("2.5", 2.5)])
def test_a_limit_loads(tmp_path: Path, text: str, seconds: float) -> None:
    assert load(config_with(tmp_path, f"{{hold_stale_s: {text}}}")).prober.hold_stale_s == seconds


def test_a_negative_limit_is_an_error_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(config_with(tmp_path, "{hold_stale_s: -1}"))
    assert [p for p in info.value.problems if p.startswith("prober.hold_stale_s: -1 is below 0")]
