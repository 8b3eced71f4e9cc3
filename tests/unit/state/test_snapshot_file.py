"""The last-known-state file: atomic save, tolerant load."""

from __future__ import annotations

import logging
from pathlib import Path
from types import MappingProxyType

import pytest

from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, DrainKind, Health
from gslb.state.snapshot_file import load_snapshot, save_snapshot

SNAP = Snapshot(
    version=3,
    read_at=10.0,
    probers=MappingProxyType({"p1": ProberReport.of("p1", 9.0, {"e1": EndpointState(health=Health.DOWN)})}),
    drains=(Drain(DrainKind.DATACENTER, "ams", "why"),),
)


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    save_snapshot(path, SNAP, saved_at=11.0)
    assert load_snapshot(path) == SNAP
    save_snapshot(path, Snapshot(version=4), saved_at=12.0)
    loaded = load_snapshot(path)
    assert loaded is not None and loaded.version == 4
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left behind


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path / "nothing.json") is None


@pytest.mark.parametrize("content", [b"", b'{"format": "gslb-snapshot"', b"\x00\x01garbage"])
def test_corrupt_file_is_logged_and_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert load_snapshot(path) is None
    assert "ignoring corrupt state snapshot" in caplog.text


def test_unreadable_path_is_ignored(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path) is None  # a directory
