"""`gslb check`: one run reports the problems of the config and of its zone files together."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.cli import main
from tests.server_fixture import EXAMPLE_CONFIG

DATA = Path(__file__).resolve().parents[1] / "data"


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check", "-c", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_valid_config(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(EXAMPLE_CONFIG, capsys)
    assert (status, err) == (0, "")
    assert out == f"{EXAMPLE_CONFIG}: OK (1 zone, 3 datacenters, 1 service)\n"


def test_yaml_and_zone_problems_come_in_one_report(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "config" / "zone-and-yaml-problems.yaml"
    zone = path.parent / "../zones/bad-ipv4.zone"
    status, out, err = check(path, capsys)
    assert (status, out) == (2, "")
    assert err == (
        f"{path} is invalid (2 problems):\n"
        f"  - datacenters.ams.latitude: 152.37 is above 90, {path}, line 7, column 19\n"
        f'  - {zone}, line 6: A data "127.0.0.520" is not an IPv4 address\n'
    )


def test_a_missing_zone_file_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text("zones: [{origin: gslb.example.com, file: nowhere.zone}]\nregions: [europe, europe]\n")
    status, _, err = check(path, capsys)
    assert status == 2
    assert err.count("nowhere.zone") == 1, err
    assert "(2 problems)" in err


def test_a_config_that_is_not_utf8_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "config" / "not-utf8.yaml"
    status, out, err = check(path, capsys)
    assert (status, out) == (2, "")
    assert err == (
        f"{path} is invalid (1 problem):\n"
        f"  - not UTF-8 text (byte 0xe9 cannot be decoded), {path}, line 1, column 6\n"
    )


def test_gslb_config_names_the_config_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = DATA / "config" / "zone-and-yaml-problems.yaml"
    monkeypatch.setenv("GSLB_CONFIG", str(bad))
    assert main(["check"]) == 2
    assert capsys.readouterr().err.startswith(f"{bad} is invalid")
    assert main(["check", "-c", str(EXAMPLE_CONFIG)]) == 0
    assert capsys.readouterr().out.startswith(f"{EXAMPLE_CONFIG}: OK")


def test_probe_without_a_config_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GSLB_CONFIG", raising=False)
    assert main(["probe"]) != 0
    assert "pass -c FILE or set GSLB_CONFIG" in capsys.readouterr().err
