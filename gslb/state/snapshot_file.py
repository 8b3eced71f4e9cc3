"""The responder's last-known-state file: a snapshot saved atomically after each good sync.

Adapter: standard library and `gslb.state.codec` only. Saving writes a temporary file in the
same directory, fsyncs it and renames it over the old one, so a crash leaves either the old
or the new file, never half of one. Loading a missing or corrupt file logs one line and
returns None: a bad cache must never stop a responder from starting.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gslb.atomicfile import write_atomically
from gslb.errors import StateError
from gslb.health.snapshot import Snapshot
from gslb.state.codec import snapshot_from_json, snapshot_to_json

log = logging.getLogger(__name__)


def save_snapshot(path: Path, snapshot: Snapshot, *, saved_at: float) -> None:
    """Write `snapshot` to `path` atomically (temporary file, fsync, rename)."""
    write_atomically(path, snapshot_to_json(snapshot, saved_at=saved_at).encode())


def load_snapshot(path: Path) -> Snapshot | None:
    """The snapshot saved at `path`, or None (logged) when it is missing or unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log.info("no state snapshot at %s yet", path)
        return None
    except OSError as e:
        log.warning("cannot read state snapshot %s: %s; starting without it", path, e)
        return None
    try:
        return snapshot_from_json(raw)
    except StateError as e:
        log.warning("ignoring corrupt state snapshot %s: %s", path, e)
        return None
