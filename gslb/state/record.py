"""Values the state store keeps besides health: audit entries, heartbeats, poll results, hints.

Adapter-side types with no I/O: standard library and `gslb.health` only, so the api and the
CLI can use them without importing redis.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class AuditAction(enum.Enum):
    DRAIN = "drain"
    UNDRAIN = "undrain"
    REMOVE_PROBER = "remove_prober"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action, kept newest first in the store (and by the api in its log file)."""

    at: float
    who: str
    action: AuditAction
    target: str  # "datacenter:ams", "region:eu", "endpoint:<id>", "prober:<id>"
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A prober's proof of life: written with every batch of states, at least once a second."""

    at: float


@dataclass(frozen=True, slots=True)
class Poll:
    """The cheap per-second read: the store version and every prober's heartbeat time."""

    version: int
    heartbeats: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


class Hint(enum.Enum):
    """A wake-up from the change channel. It never carries data: the snapshot is the truth."""

    SUBSCRIBED = "subscribed"  # (re)subscribed: anything may have been missed, resync fully
    CHANGED = "changed"  # something was written; poll now
