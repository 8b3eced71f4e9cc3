"""Votes of several probers plus operator drains -> the one `HealthView` the query path reads.

Pure layer: standard library and `gslb.health` only. Rules, in order:

- Only fresh probers vote (heartbeat at most `stale_after_s` old when the snapshot was read).
  A prober that does not report an endpoint counts as UP for it, and an endpoint nobody
  reports is UP: missing data never takes anything out of answers.
- Static stability: when no prober is fresh, the last vote holds. The probers that voted
  last (those fresh when the freshest heartbeat was written) vote again with their last
  verdicts, so a dead checker neither brings back what it saw die nor takes anything down
  by its absence. `hold_stale_s` (None: hold forever) ends the hold: after that many seconds
  without a fresh prober the held verdicts no longer count and every endpoint is UP. A
  stale prober never outvotes a fresh one: as soon as one prober is fresh, the fresh decide.
- The quorum is `quorum` when configured (an absolute number of probers; with fewer voters
  than that nothing can go down), else a majority of the voters.
- DOWN when at least a quorum of voters say DOWN.
- DEGRADED when at least a quorum say DEGRADED or DOWN but fewer than a quorum say DOWN: the
  probers agree the endpoint is unwell but not that it is dead, so it is soft-drained rather
  than removed. Two probers disagreeing (one DOWN, one UP, majority 2) is therefore UP: one
  vantage point's bad network must not steer the world.
- Drains pass through unchanged; drains whose expiry has passed are dropped.
- Costs and loads (what `p2c_ewma` and `least_load` rank by) come from the fresh probers
  only, the median when several report one; a held or stale prober's figures are not used
  (they say how fast an endpoint was, not how fast it is), and an endpoint with no figure
  is absent. They come from the reports' `states`, so a snapshot read without details has
  none.

Freshness and the hold are judged at the snapshot's `read_at` (when the reader last saw the
heartbeats), never by a clock; `now` only expires drains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from gslb.health.snapshot import Snapshot
from gslb.health.view import Health, HealthView


@dataclass(frozen=True, slots=True)
class Tally:
    """How the voters decided one endpoint, for `explain` and the status page."""

    endpoint_id: str
    health: Health
    quorum: int
    votes: Mapping[str, Health]  # every voter -> its health for the endpoint (UP if unknown)
    stale: tuple[str, ...]  # probers whose heartbeat is stale
    held: bool = False  # no prober is fresh: the votes are the last verdicts of stale probers


@dataclass(frozen=True, slots=True)
class Hold:
    """No prober is fresh: the last verdicts of the probers that voted last hold."""

    since: float  # when the last fresh prober went stale (its heartbeat + stale_after_s)
    probers: tuple[str, ...]  # whose last verdicts hold
    endpoints: Mapping[str, Health]  # endpoints those verdicts keep DEGRADED or DOWN
    released: bool = False  # `hold_stale_s` ran out: the held verdicts no longer count


@dataclass(frozen=True, slots=True)
class Staleness:
    """Which probers are stale since when, and what is held on their verdicts."""

    stale_since: Mapping[str, float]  # stale prober -> when its heartbeat went stale
    hold: Hold | None = None  # None while some prober is fresh (or none ever reported)

    @property
    def held(self) -> Mapping[str, Health]:
        """Endpoints kept out of answers (or soft-drained) by held verdicts right now."""
        if self.hold is None or self.hold.released:
            return _NOTHING
        return self.hold.endpoints


_NOTHING: Mapping[str, Health] = MappingProxyType({})
_NO_FIGURES: Mapping[str, float] = MappingProxyType({})


def quorum_size(fresh: int, quorum: int | None) -> int:
    """The number of DOWN votes needed: configured, else a majority of the voters."""
    if quorum is not None:
        return max(1, quorum)
    return fresh // 2 + 1


def decide(votes: Iterable[Health], quorum: int) -> Health:
    """One health from the votes of the voters (absent probers count as UP)."""
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


def last_voters(snapshot: Snapshot, stale_after_s: float) -> tuple[str, ...]:
    """The probers that were fresh when the freshest heartbeat in `snapshot` was written.

    Once no prober is fresh, these are the probers whose verdicts made the last view: the
    ones that hold. (A prober that was already stale then stays out, as it was.)
    """
    if not snapshot.probers:
        return ()
    last = max(report.heartbeat_at for report in snapshot.probers.values())
    return replace(snapshot, read_at=last).fresh_probers(stale_after_s)


def hold_since(snapshot: Snapshot, stale_after_s: float) -> float | None:
    """When the last fresh prober went stale; None while some prober is fresh or none reported."""
    if not snapshot.probers or snapshot.fresh_probers(stale_after_s):
        return None
    return max(report.heartbeat_at for report in snapshot.probers.values()) + stale_after_s


def voters(snapshot: Snapshot, *, stale_after_s: float, hold_stale_s: float | None = None) -> tuple[str, ...]:
    """The probers whose verdicts count: the fresh ones, else (holding) the last fresh ones.

    Empty when no prober ever reported, or when no prober has been fresh for longer than
    `hold_stale_s` (the hold is released and every endpoint counts as UP).
    """
    fresh = snapshot.fresh_probers(stale_after_s)
    if fresh:
        return fresh
    since = hold_since(snapshot, stale_after_s)
    if since is None or (hold_stale_s is not None and snapshot.read_at - since > hold_stale_s):
        return ()
    return last_voters(snapshot, stale_after_s)


def _decide_all(snapshot: Snapshot, voter_ids: Iterable[str], quorum: int | None) -> dict[str, Health]:
    """Every endpoint some voter does not consider UP -> the decided health, if not UP."""
    ids = tuple(voter_ids)
    need = quorum_size(len(ids), quorum)
    votes: dict[str, list[Health]] = {}
    for prober_id in ids:
        for endpoint_id, health in snapshot.probers[prober_id].health.items():
            if health is not Health.UP:  # UP votes change nothing: skip the bulk of them
                votes.setdefault(endpoint_id, []).append(health)
    endpoints: dict[str, Health] = {}
    for endpoint_id, healths in votes.items():
        health = decide(healths, need)
        if health is not Health.UP:  # UP is the default: views that mean the same compare equal
            endpoints[endpoint_id] = health
    return endpoints


def combine(
    snapshot: Snapshot,
    *,
    now: float,
    stale_after_s: float,
    quorum: int | None = None,
    version: int | None = None,
    hold_stale_s: float | None = None,
) -> HealthView:
    """The endpoints that are not UP, and the drains still in force.

    Only DEGRADED and DOWN endpoints are listed (`HealthView.health` answers UP for the
    rest), so two views that mean the same compare equal; `tally` has the full vote.

    `version` defaults to the snapshot's version; readers that also change the view on time
    (drain expiry, staleness) pass their own counter.
    """
    ids = voters(snapshot, stale_after_s=stale_after_s, hold_stale_s=hold_stale_s)
    endpoints = _decide_all(snapshot, ids, quorum)
    drains = tuple(d for d in snapshot.drains if d.active(now))
    costs, loads = figures(snapshot, snapshot.fresh_probers(stale_after_s))
    return HealthView(
        version=snapshot.version if version is None else version,
        endpoints=MappingProxyType(endpoints),
        drains=drains,
        costs=costs,
        loads=loads,
    )


def figures(snapshot: Snapshot, prober_ids: Iterable[str]) -> tuple[Mapping[str, float], Mapping[str, float]]:
    """Peak-EWMA cost and load per endpoint: the median over these probers' states."""
    sources = tuple(snapshot.probers[p].states for p in prober_ids if snapshot.probers[p].states)
    if not sources:
        return _NO_FIGURES, _NO_FIGURES
    cost_maps = [{eid: s.cost_ms for eid, s in states.items() if s.cost_ms is not None} for states in sources]
    load_maps = [{eid: s.load for eid, s in states.items() if s.load is not None} for states in sources]
    costs, loads = MappingProxyType(_medians(cost_maps)), MappingProxyType(_medians(load_maps))
    return costs, loads


def _medians(maps: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median of the values the maps have for it."""
    if len(maps) == 1:
        return maps[0]
    first = maps[0]
    if len(maps) == 2 and first.keys() == maps[1].keys():  # two probers seeing the same endpoints
        second = maps[1]
        return {key: (value + second[key]) / 2.0 for key, value in first.items()}
    gathered: dict[str, list[float]] = {}
    for values in maps:
        for key, value in values.items():
            gathered.setdefault(key, []).append(value)
    return {key: _median(values) for key, values in gathered.items()}


def _median(values: list[float]) -> float:
    n = len(values)
    if n == 1:
        return values[0]
    values.sort()
    half = n // 2
    return values[half] if n % 2 else (values[half - 1] + values[half]) / 2.0


def staleness(
    snapshot: Snapshot,
    *,
    stale_after_s: float,
    quorum: int | None = None,
    hold_stale_s: float | None = None,
) -> Staleness:
    """The stale probers (since when) and, when none is fresh, what their last vote holds."""
    stale_since = {
        prober_id: snapshot.probers[prober_id].heartbeat_at + stale_after_s
        for prober_id in snapshot.stale_probers(stale_after_s)
    }
    since = hold_since(snapshot, stale_after_s)
    hold = None
    if since is not None:
        held_by = last_voters(snapshot, stale_after_s)
        hold = Hold(
            since=since,
            probers=held_by,
            endpoints=MappingProxyType(_decide_all(snapshot, held_by, quorum)),
            released=hold_stale_s is not None and snapshot.read_at - since > hold_stale_s,
        )
    return Staleness(stale_since=MappingProxyType(stale_since), hold=hold)


def tally(
    snapshot: Snapshot,
    endpoint_id: str,
    *,
    stale_after_s: float,
    quorum: int | None = None,
    hold_stale_s: float | None = None,
) -> Tally:
    """The vote behind one endpoint's health, as `combine` counts it."""
    ids = voters(snapshot, stale_after_s=stale_after_s, hold_stale_s=hold_stale_s)
    need = quorum_size(len(ids), quorum)
    votes: dict[str, Health] = {}
    for prober_id in ids:
        votes[prober_id] = snapshot.probers[prober_id].health.get(endpoint_id, Health.UP)
    return Tally(
        endpoint_id=endpoint_id,
        health=decide(votes.values(), need),
        quorum=need,
        votes=MappingProxyType(votes),
        stale=snapshot.stale_probers(stale_after_s),
        held=bool(ids) and not snapshot.fresh_probers(stale_after_s),
    )
