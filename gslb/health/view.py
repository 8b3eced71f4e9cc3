"""The immutable health picture the query path reads: endpoint health, drains, costs and loads.

Pure layer: standard library and `gslb.config.model` only. A background task builds a new
`HealthView` and swaps it in with one assignment; the query path never waits for it.
Unknown endpoints count as up: missing data never takes anything out of answers (and stale
data only holds what it last said, see `gslb.health.quorum`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Health(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class DrainKind(enum.Enum):
    REGION = "region"
    DATACENTER = "datacenter"
    ENDPOINT = "endpoint"


@dataclass(frozen=True, slots=True)
class Drain:
    kind: DrainKind
    target: str
    reason: str
    who: str = ""
    created_at: float = 0.0
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


_EMPTY: Mapping[str, Health] = MappingProxyType({})
_NO_FIGURES: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HealthView:
    """Health per endpoint id and the drains in force, at one state version.

    `costs` (peak-EWMA latency cost in ms) and `loads` (the http check's load figure) are
    what `p2c_ewma` and `least_load` rank by: the median over the fresh probers, and an
    endpoint without a figure is absent (policies fall back for it, never treat it as 0).
    """

    version: int = 0
    endpoints: Mapping[str, Health] = field(default_factory=lambda: _EMPTY)
    drains: tuple[Drain, ...] = ()
    costs: Mapping[str, float] = field(default_factory=lambda: _NO_FIGURES)
    loads: Mapping[str, float] = field(default_factory=lambda: _NO_FIGURES)

    def health(self, endpoint_id: str) -> Health:
        return self.endpoints.get(endpoint_id, Health.UP)

    def drain_for(
        self, *, region: str, datacenter: str, endpoint_id: str | None = None, now: float
    ) -> Drain | None:
        """The drain that takes this datacenter (or endpoint) out of answers, if any."""
        for drain in self.drains:
            if not drain.active(now):
                continue
            if (
                (drain.kind is DrainKind.REGION and drain.target == region)
                or (drain.kind is DrainKind.DATACENTER and drain.target == datacenter)
                or (drain.kind is DrainKind.ENDPOINT and drain.target == endpoint_id)
            ):
                return drain
        return None

    def next_expiry(self, now: float) -> float | None:
        """When the next active drain expires: the answer cache must not outlive it."""
        times = [d.expires_at for d in self.drains if d.expires_at is not None and d.expires_at > now]
        return min(times) if times else None
