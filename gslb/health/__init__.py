"""Health: per-prober hysteresis and EWMA, quorum over probers, drains -> `HealthView`.

Pure package: standard library and `gslb.config.model` only. No I/O happens here; the
state store (`gslb.state`) and the prober (`gslb.probe`) feed it values.
"""

from gslb.health.quorum import Hold, Staleness, Tally, combine, decide, quorum_size, staleness, tally, voters
from gslb.health.snapshot import ProberReport, Snapshot
from gslb.health.tracker import EndpointState, Verdict, apply, next_state
from gslb.health.view import Drain, DrainKind, Health, HealthView

__all__ = [
    "Drain",
    "DrainKind",
    "EndpointState",
    "Health",
    "HealthView",
    "Hold",
    "ProberReport",
    "Snapshot",
    "Staleness",
    "Tally",
    "Verdict",
    "apply",
    "combine",
    "decide",
    "next_state",
    "quorum_size",
    "staleness",
    "tally",
    "voters",
]
