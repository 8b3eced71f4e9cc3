"""Votes of several probers plus operator drains -> the one `HealthView` the query path reads.

Pure layer: standard library and `gslb.health` only. Rules, in order:

- Only fresh probers vote (heartbeat at most `stale_after_s` old when the snapshot was read).
  A stale prober, a prober that does not report an endpoint, and an endpoint nobody fresh
  reports all count as UP: stale or missing data never takes anything out of answers.
- The quorum is `quorum` when configured (an absolute number of probers; with fewer fresh
  probers than that nothing can go down), else a majority of the fresh probers.
- DOWN when at least a quorum of fresh probers say DOWN.
- DEGRADED when at least a quorum say DEGRADED or DOWN but fewer than a quorum say DOWN: the
  probers agree the endpoint is unwell but not that it is dead, so it is soft-drained rather
  than removed. Two probers disagreeing (one DOWN, one UP, majority 2) is therefore UP: one
  vantage point's bad network must not steer the world.
- Drains pass through unchanged; drains whose expiry has passed are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gslb.health.snapshot import Snapshot
from gslb.health.view import Health, HealthView


@dataclass(frozen=True, slots=True)
class Tally:
    """How the fresh probers voted on one endpoint, for `explain` and the status page."""

    endpoint_id: str
    health: Health
    quorum: int
    votes: Mapping[str, Health]  # every fresh prober -> its health for the endpoint (UP if unknown)
    stale: tuple[str, ...]  # probers left out of the vote


def quorum_size(fresh: int, quorum: int | None) -> int:
    """The number of DOWN votes needed: configured, else a majority of the fresh probers."""
    if quorum is not None:
        return max(1, quorum)
    return fresh // 2 + 1


def decide(votes: Iterable[Health], quorum: int) -> Health:
    """One health from the votes of the fresh probers (absent probers count as UP)."""
    down = degraded = 0
    for health in votes:
        if health is Health.DOWN:
            down += 1
        elif health is Health.DEGRADED:
            degraded += 1
    if down >= quorum:
        return Health.DOWN
    if down + degraded >= quorum:
        return Health.DEGRADED
    return Health.UP


def combine(
    snapshot: Snapshot,
    *,
    now: float,
    stale_after_s: float,
    quorum: int | None = None,
    version: int | None = None,
) -> HealthView:
    """The endpoints that are not UP, and the drains still in force.

    Only DEGRADED and DOWN endpoints are listed (`HealthView.health` answers UP for the
    rest), so two views that mean the same compare equal; `tally` has the full vote.

    `version` defaults to the snapshot's version; readers that also change the view on time
    (drain expiry, staleness) pass their own counter.
    """
    fresh = snapshot.fresh_probers(stale_after_s)
    need = quorum_size(len(fresh), quorum)
    votes: dict[str, list[Health]] = {}
    for prober_id in fresh:
        for endpoint_id, health in snapshot.probers[prober_id].health.items():
            if health is not Health.UP:  # UP votes change nothing: skip the bulk of them
                votes.setdefault(endpoint_id, []).append(health)
    endpoints: dict[str, Health] = {}
    for endpoint_id, healths in votes.items():
        health = decide(healths, need)
        if health is not Health.UP:  # UP is the default: views that mean the same compare equal
            endpoints[endpoint_id] = health
    drains = tuple(d for d in snapshot.drains if d.active(now))
    return HealthView(
        version=snapshot.version if version is None else version,
        endpoints=MappingProxyType(endpoints),
        drains=drains,
    )


def tally(snapshot: Snapshot, endpoint_id: str, *, stale_after_s: float, quorum: int | None = None) -> Tally:
    """The vote behind one endpoint's health, as `combine` counts it."""
    fresh = snapshot.fresh_probers(stale_after_s)
    need = quorum_size(len(fresh), quorum)
    votes: dict[str, Health] = {}
    for prober_id in fresh:
        votes[prober_id] = snapshot.probers[prober_id].health.get(endpoint_id, Health.UP)
    return Tally(
        endpoint_id=endpoint_id,
        health=decide(votes.values(), need),
        quorum=need,
        votes=MappingProxyType(votes),
        stale=snapshot.stale_probers(stale_after_s),
    )
