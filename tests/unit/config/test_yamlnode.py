"""What stops YAML from being read, and keys given twice, are config errors with their place."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.errors import ConfigError
from gslb.responder import Responder
from tests.server_fixture import EXAMPLE_CONFIG

DATA = Path(__file__).resolve().parents[2] / "data" / "config"


def problems_of(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


# One fixture per problem; the whole problem, with the file, line and column.
FIXTURES = [
    ("not-utf8.yaml", "not UTF-8 text (byte 0xe9 cannot be decoded), {path}, line 1, column 6"),
    ("binary.yaml", "not text: control character U+0000 is not allowed in YAML, {path}, line 4, column 18"),
    (
        "duplicate-datacenter.yaml",
        "datacenters.ams: given twice, at line 6 and line 9 (YAML would silently keep the last), "
        "{path}, line 9, column 3",
    ),
    (
        "duplicate-ttl.yaml",
        "services.www.gslb.example.com.ttl: given twice, at line 9 and line 12 (YAML would silently "
        "keep the last), {path}, line 12, column 5",
    ),
    (
        "ttl-too-big.yaml",
        "services.www.gslb.example.com.ttl: 2147483648 is above 86400, {path}, line 9, column 10",
    ),
    (
        "yaml-syntax.yaml",
        "YAML syntax: expected ',' or ']', but got '<stream end>', {path}, line 4, column 1",
    ),
    ("unbuildable-value.yaml", "server.workers: expected int, got 'two', {path}, line 5, column 12"),
    ("unknown-tag.yaml", "server.workers: expected int, got a list, {path}, line 5, column 12"),
]


@pytest.mark.parametrize(("fixture", "message"), FIXTURES, ids=[f for f, _ in FIXTURES])
def test_each_problem_names_its_place(fixture: str, message: str) -> None:
    path = DATA / fixture
    assert problems_of(path) == (message.format(path=path),)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    assert problems_of(path) == (f"cannot read: No such file or directory, {path}",)


def test_the_column_of_a_bad_byte_counts_characters(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_bytes("# é\n".encode() + b"regions: [caf\xe9]\n")
    assert problems_of(path) == (f"not UTF-8 text (byte 0xe9 cannot be decoded), {path}, line 2, column 14",)


def test_duplicates_are_found_at_any_depth_and_in_lists(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text("zones:\n  - origin: a.test\n    origin: b.test\nregions: [europe]\nregions: [asia]\n")
    problems = problems_of(path)
    assert [p.split(":", 1)[0] for p in problems if "given twice" in p] == ["zones[0].origin", "regions"]


def test_aliases_neither_loop_nor_count_twice(tmp_path: Path) -> None:
    """An alias shares its anchor's node: a recursive one must not loop, and a mapping that is
    used twice is checked once (its duplicate key is one problem, not two)."""
    path = tmp_path / "gslb.yaml"
    path.write_text(
        "x-check: &check {type: tcp, port: 80, port: 81}\nx-loop: &loop {self: *loop}\na: *check\nb: *check\n"
    )
    problems = problems_of(path)
    assert sum("given twice" in p for p in problems) == 1


def test_keys_that_read_the_same_are_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text('regions: [europe]\n"regions": [asia]\n')
    (problem,) = [p for p in problems_of(path) if "given twice" in p]
    assert problem.startswith("regions: given twice, at line 1 and line 2")


def test_a_reload_of_a_file_that_is_not_utf8_keeps_the_old_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP with a broken file: the usual "reload failed" line, not "Task exception was never
    retrieved" (a UnicodeDecodeError is no GslbError, so it escaped the reload's handler)."""
    shutil.copytree(EXAMPLE_CONFIG.parent, tmp_path / "data")
    path = tmp_path / "data" / EXAMPLE_CONFIG.name
    responder = Responder(load(path))
    before = responder.parts
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    with caplog.at_level(logging.ERROR, logger="gslb.responder"):
        assert asyncio.run(responder.reload()) is False
    assert responder.parts is before
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage().startswith(f"reload of {path} failed; still serving the previous config (")
    assert "not UTF-8 text (byte 0xe9 cannot be decoded)" in record.getMessage()


def test_deep_nesting_is_a_problem_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "gslb.yaml"
    path.write_text("regions: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert problems_of(path) == (f"YAML nested too deeply to read, {path}",)


def test_a_huge_integer_is_shown_short(tmp_path: Path) -> None:
    """Python refuses int() of more than 4,300 digits: the value is reported, not raised."""
    path = tmp_path / "gslb.yaml"
    path.write_text("server: {workers: " + "9" * 5000 + "}\n")
    assert problems_of(path) == (
        f"server.workers: expected int, got '{'9' * 39}... (5002 characters), {path}, line 1, column 19",
    )
