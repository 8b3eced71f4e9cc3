"""Is this DNS node ready for traffic, and if not, why: the decision behind /readyz and `gslb healthcheck`.

Pure: standard library only (the `gslb healthcheck` command imports it, and must start fast).
The responder gathers `NodeFacts` (gslb.api.health) and `decide` turns them into one
`Readiness` with the first reason that holds, in this order: draining (lame duck, stopping),
starting (DNS listeners not open yet), zones not loaded, no health state (distributed mode,
never synced and no snapshot loaded), health state older than the limit. In embedded mode
the state is the process's own memory and is always fresh. The facts travel as JSON
(`/readyz?format=json`) so that `gslb healthcheck` decides with the same rules, and may use
its own `--max-state-age`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DRAINING = "draining (lame duck, stopping)"
STARTING = "starting (DNS listeners not open yet)"


@dataclass
class NodeStatus:
    """What the process itself knows about its lifecycle; set by the runtime, read by /readyz."""

    listening: bool = False  # the DNS listeners are open
    draining: bool = False  # SIGTERM (or SIGINT) received: lame duck, then stop


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything `decide` needs, as the responder sees it at one moment."""

    listening: bool
    draining: bool
    zones_configured: int
    zones_loaded: int
    embedded: bool  # in-memory state (no state.redis_url): always fresh
    synced: bool = True  # the state store was read successfully at least once
    snapshot_loaded: bool = False  # a saved snapshot was loaded at start
    connected: bool = True  # the last read of the state store succeeded
    state_age_s: float | None = 0.0  # since the state was last read from the store (None: never)

    def to_json(self) -> dict[str, Any]:
        return {
            "listening": self.listening,
            "draining": self.draining,
            "zones": {"configured": self.zones_configured, "loaded": self.zones_loaded},
            "state": {
                "mode": "embedded" if self.embedded else "distributed",
                "synced": self.synced,
                "snapshot_loaded": self.snapshot_loaded,
                "connected": self.connected,
                "age_s": None if self.state_age_s is None else round(self.state_age_s, 3),
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> NodeFacts:
        """The facts of a `/readyz?format=json` reply's "conditions"; ValueError if malformed."""
        try:
            zones, state = doc["zones"], doc["state"]
            age = state["age_s"]
            facts = cls(
                listening=_bool(doc["listening"]),
                draining=_bool(doc["draining"]),
                zones_configured=_int(zones["configured"]),
                zones_loaded=_int(zones["loaded"]),
                embedded={"embedded": True, "distributed": False}[state["mode"]],
                synced=_bool(state["synced"]),
                snapshot_loaded=_bool(state["snapshot_loaded"]),
                connected=_bool(state["connected"]),
                state_age_s=None if age is None else _float(age),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"missing or wrong field {e}") from None
        return facts


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str | None  # one line, None when ready
    facts: NodeFacts
    max_state_age_s: float | None

    @property
    def line(self) -> str:
        """What /readyz answers and `gslb healthcheck` prints when not ready."""
        return "ready" if self.reason is None else f"not ready: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        conditions = self.facts.to_json()
        conditions["state"]["max_age_s"] = self.max_state_age_s
        return {"ready": self.ready, "reason": self.reason, "conditions": conditions}


def decide(facts: NodeFacts, *, max_state_age_s: float | None) -> Readiness:
    """The first reason not to send traffic here (see the module docstring), or ready.

    `max_state_age_s` None: any age is fine once the state was read or a snapshot loaded
    (static stability: a Redis outage shared by every node must not withdraw them all)."""
    reason: str | None = None
    if facts.draining:
        reason = DRAINING
    elif not facts.listening:
        reason = STARTING
    elif facts.zones_loaded < facts.zones_configured:
        reason = f"zones not loaded ({facts.zones_loaded} of {facts.zones_configured})"
    elif not facts.embedded:
        if not facts.synced and not facts.snapshot_loaded:
            reason = "no health state yet (state store not read since start, no snapshot loaded)"
        elif (
            max_state_age_s is not None
            and facts.state_age_s is not None
            and facts.state_age_s > max_state_age_s
        ):
            reason = f"health state {seconds(facts.state_age_s)} old (limit {seconds(max_state_age_s)})"
    return Readiness(reason is None, reason, facts, max_state_age_s)


def seconds(value: float) -> str:
    """42.3 -> "42 s", 2.46 -> "2.5 s", 1.0 -> "1 s": short, for one-line reasons."""
    if value >= 10:
        return f"{math.floor(value)} s"
    return f"{round(value, 1):g} s"


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(repr(value))
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(repr(value))
    return value


def _float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(repr(value))
    return float(value)
