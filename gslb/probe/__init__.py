"""Probing: health checks (the only aiohttp client user) and the prober loop.

Adapter package. It decides nothing itself: results go through `gslb.health.tracker` and
the states go to a `gslb.state` store.
"""

from gslb.probe.checks import Checker, CheckResult, CheckRunner, probe_port
from gslb.probe.prober import Prober, ProberStats, Target, default_prober_id, plan_targets

__all__ = [
    "CheckResult",
    "CheckRunner",
    "Checker",
    "Prober",
    "ProberStats",
    "Target",
    "default_prober_id",
    "plan_targets",
    "probe_port",
]
