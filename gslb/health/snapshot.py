"""The full health state at one store version: every prober's endpoint states, heartbeats, drains.

Pure layer: standard library and `gslb.health` only. `gslb.state` reads a `Snapshot` from
Redis (or memory, or a file) and `gslb.health.quorum.combine` turns it into the `HealthView`
the query path reads. These are plain values: nothing here talks to a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gslb.health.tracker import EndpointState
from gslb.health.view import Drain, Health


@dataclass(frozen=True, slots=True)
class ProberReport:
    """One prober's latest heartbeat, the endpoints it does not consider UP, and details.

    `health` is what votes; it lists only DEGRADED and DOWN endpoints (every other
    endpoint is UP for this prober), so what responders read stays small however many
    endpoints there are. `states` holds the full per-endpoint details (counters, EWMA, last
    result) only when the reader asked for them (explain, the api).
    """

    prober_id: str
    heartbeat_at: float
    health: Mapping[str, Health] = field(default_factory=lambda: MappingProxyType({}))
    states: Mapping[str, EndpointState] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, prober_id: str, heartbeat_at: float, states: Mapping[str, EndpointState]) -> ProberReport:
        """A report with details, its health taken from the states."""
        health = {eid: state.health for eid, state in states.items() if state.health is not Health.UP}
        return cls(prober_id, heartbeat_at, MappingProxyType(health), MappingProxyType(dict(states)))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a responder needs to build a `HealthView`.

    `read_at` is when the reader last saw the heartbeats (its own clock). Prober freshness
    is judged at that time, not at "now": a responder that has lost the store keeps the
    picture it last saw instead of declaring every prober stale.
    """

    version: int = 0
    read_at: float = 0.0
    probers: Mapping[str, ProberReport] = field(default_factory=lambda: MappingProxyType({}))
    drains: tuple[Drain, ...] = ()

    def fresh_probers(self, stale_after_s: float) -> tuple[str, ...]:
        """Probers whose heartbeat was at most `stale_after_s` old when the snapshot was read."""
        return tuple(
            sorted(p.prober_id for p in self.probers.values() if _fresh(p, self.read_at, stale_after_s))
        )

    def stale_probers(self, stale_after_s: float) -> tuple[str, ...]:
        """Probers left out of the vote because their heartbeat is too old."""
        return tuple(
            sorted(p.prober_id for p in self.probers.values() if not _fresh(p, self.read_at, stale_after_s))
        )


def _fresh(report: ProberReport, read_at: float, stale_after_s: float) -> bool:
    # A heartbeat from the future (clock skew) is fresh: skew must not take endpoints down.
    return read_at - report.heartbeat_at <= stale_after_s
