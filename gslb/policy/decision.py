"""Decisions: which datacenter of an order answers, and which of its endpoints.

Pure layer: standard library, `gslb.config.model`, `gslb.health.view` and `gslb.policy` only.
Work is split by how often it changes: the datacenter order of a client depends only on the
config and where the client is (distance, geo rules: compiled into the steering maps, see
`gslb.policy.steering`); which datacenters are eligible, and what each one's endpoint policy
may answer (`gslb.policy.select`), depends on the HealthView (computed once per view); a
query then walks the order to the first eligible datacenter, or draws one by weight.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from gslb.config.model import Config, Datacenter, IPAddress, Service, WhenAllDown
from gslb.health.view import Drain, Health, HealthView
from gslb.policy.endpoints import WeightedChoice
from gslb.policy.select import Selection, select

EARTH_RADIUS_KM = 6371.0088


class Mode(enum.Enum):
    NEAREST = "nearest"  # the first datacenter of the order was eligible
    FAILOVER = "failover"  # an earlier datacenter of the order was not eligible
    WEIGHTED = "weighted"  # drawn by datacenter weight
    FAIL_OPEN = "fail_open"  # nothing eligible: nearest datacenter that is down but not drained
    FALLBACK = "fallback"  # nothing eligible: the configured fallback addresses
    SERVFAIL = "servfail"  # nothing eligible and the service says SERVFAIL
    DRAINED = "drained"  # everything drained (forced) and no fallback: NODATA


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float


def distance_km(a: Position, b: Position) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    dphi = phi2 - phi1
    dlambda = math.radians(b.longitude - a.longitude)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def order_datacenters(
    candidates: Sequence[str],
    datacenters: Mapping[str, Datacenter],
    *,
    position: Position | None,
    pinned: str | None,
    default_order: Sequence[str],
) -> tuple[str, ...]:
    """Datacenters from nearest to farthest; a pinned one first; unknown position: default order."""
    if position is not None:
        ranked = sorted(
            candidates,
            key=lambda n: distance_km(position, Position(datacenters[n].latitude, datacenters[n].longitude)),
        )
    else:
        preferred = [n for n in default_order if n in candidates]
        ranked = preferred + [n for n in candidates if n not in preferred]
    if pinned in candidates:
        ranked.remove(pinned)  # type: ignore[arg-type]
        ranked.insert(0, pinned)  # type: ignore[arg-type]
    return tuple(ranked)


@dataclass(frozen=True, slots=True)
class DatacenterState:
    """One service's datacenter under one HealthView."""

    name: str
    eligible: bool
    drain: Drain | None
    up: int  # endpoints up or degraded and not drained
    addresses_v4: tuple[IPAddress, ...]  # the endpoints answers may carry, in config order
    addresses_v6: tuple[IPAddress, ...]
    fail_open_v4: tuple[IPAddress, ...]  # every undrained endpoint, for when_all_down fail-open
    fail_open_v6: tuple[IPAddress, ...]
    select_v4: Selection
    select_v6: Selection

    def selection(self, v4: bool) -> Selection:
        return self.select_v4 if v4 else self.select_v6


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer a decision may give: the datacenter and the addresses it carries."""

    datacenter: str | None
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one order of one service points under one view, for one family.

    `answers` holds every answer the decision can give: more than one when replies vary
    (rotation, weighted draws, p2c) and `pick()` says which one a reply carries. `keyed` is
    set for consistent hashing: the answer then follows from the client network.
    """

    mode: Mode
    datacenter: str | None
    addresses: tuple[IPAddress, ...]  # of the family asked for; may be empty (NODATA)
    answers: tuple[Answer, ...] = ()
    pick: Callable[[], int] | None = None
    keyed: Callable[[bytes], Answer] | None = None
    key_prefixes: tuple[int, int] = (32, 128)  # keyed: the client prefix hashed (IPv4, IPv6)

    @property
    def varies(self) -> bool:
        return self.pick is not None and len(self.answers) > 1

    def for_key(self, key: bytes) -> Decision:
        """The decision for one client network (keyed decisions only)."""
        assert self.keyed is not None
        answer = self.keyed(key)
        return Decision(self.mode, answer.datacenter, answer.addresses)


def datacenter_state(
    service: Service, dc: Datacenter, view: HealthView, *, now: float, rng: random.Random | None = None
) -> DatacenterState:
    """Eligibility of one datacenter: not drained and at least min_up endpoints usable.

    Inside a datacenter, degraded endpoints are soft-drained: used only when no endpoint
    of the same family is fully up; endpoints of weight 0 are standby: used only when no
    endpoint of weight above 0 of the family is usable.
    """
    drain = view.drain_for(region=dc.region, datacenter=dc.name, now=now)
    endpoints = [e for e in service.endpoints if e.datacenter == dc.name]
    usable = [
        e for e in endpoints if view.drain_for(region="", datacenter="", endpoint_id=e.id, now=now) is None
    ]
    health = {e.id: view.health(e.id) for e in usable}
    up = {e.id for e in usable if health[e.id] is not Health.DOWN}
    pick = service.pick_for(dc.name)

    def selection(v4: bool) -> tuple[tuple[IPAddress, ...], Selection]:
        family = [e for e in endpoints if isinstance(e.address, IPv4Address) == v4]
        live = [i for i, e in enumerate(family) if e.id in up]
        best = [i for i in live if health[family[i].id] is Health.UP] or live
        eligible = [i for i in best if family[i].weight > 0] or best
        members = [(e.id, e.address, e.weight) for e in family]
        chosen = select(
            pick, members, eligible, costs=view.costs, loads=view.loads, rng=rng or random.Random()
        )
        return tuple(family[i].address for i in eligible), chosen

    def all_of(v4: bool) -> tuple[IPAddress, ...]:
        return tuple(e.address for e in usable if isinstance(e.address, IPv4Address) == v4)

    eligible = drain is None and len(up) >= service.min_up
    addresses_v4, select_v4 = selection(True)
    addresses_v6, select_v6 = selection(False)
    return DatacenterState(
        dc.name,
        eligible,
        drain,
        len(up),
        addresses_v4,
        addresses_v6,
        all_of(True),
        all_of(False),
        select_v4,
        select_v6,
    )


def decide(
    service: Service,
    order: Sequence[str],
    states: Mapping[str, DatacenterState],
    *,
    v4: bool,
    rng: random.Random | None = None,
) -> Decision:
    """Walk the order to the first eligible datacenter that serves this family; an empty
    order (a weighted service's clients no geo rule matched) draws by datacenter weight."""
    if not order and service.weights:
        drawn = _weighted(service, states, v4=v4, rng=rng or random.Random())
        if drawn is not None:
            return drawn
    for index, name in enumerate(order):
        state = states[name]
        addresses = state.addresses_v4 if v4 else state.addresses_v6
        if state.eligible and addresses:
            return _from(Mode.NEAREST if index == 0 else Mode.FAILOVER, name, state.selection(v4), v4=v4)
    # A family no datacenter serves at all is NODATA, not an outage.
    if not any((s.fail_open_v4 if v4 else s.fail_open_v6) for s in states.values()):
        return Decision(Mode.NEAREST, None, ())
    return when_all_down(service, order or tuple(states), states, v4=v4)


def _from(mode: Mode, name: str, selection: Selection, *, v4: bool) -> Decision:
    """The decision for one datacenter's selection."""
    answers = tuple(Answer(name, a) for a in selection.answers)
    keyed = selection.keyed
    if keyed is not None:
        return Decision(
            mode,
            name,
            answers[0].addresses,
            answers,
            keyed=lambda key: Answer(name, keyed(key)),
            key_prefixes=selection.key_prefixes,
        )
    return Decision(mode, name, answers[0].addresses, answers, selection.pick if selection.varies else None)


def _weighted(
    service: Service, states: Mapping[str, DatacenterState], *, v4: bool, rng: random.Random
) -> Decision | None:
    """A draw among the eligible datacenters by weight (weight 0: standby, drawn only when no
    datacenter of weight above 0 is eligible); each one's own endpoint policy inside."""
    usable = [
        name
        for name, state in states.items()
        if state.eligible and (state.addresses_v4 if v4 else state.addresses_v6)
    ]
    names = [n for n in usable if service.weights.get(n, 0) > 0] or usable
    if not names:
        return None
    if len(names) == 1:
        return _from(Mode.WEIGHTED, names[0], states[names[0]].selection(v4), v4=v4)
    selections = [states[n].selection(v4) for n in names]
    shares = [service.weights.get(n, 0) for n in names]
    weights = WeightedChoice(shares)
    if any(s.keyed is not None for s in selections):
        # Sticky by client network end to end: the datacenter too is drawn by the key.
        decisions = [_from(Mode.WEIGHTED, n, s, v4=v4) for n, s in zip(names, selections, strict=True)]

        def keyed(key: bytes) -> Answer:
            d = decisions[_by_key(names, shares, key)]
            return d.keyed(key) if d.keyed is not None else Answer(d.datacenter, d.addresses)

        # Only the hashed datacenters' prefixes: the others' answers do not depend on the key.
        hashed = [d.key_prefixes for d in decisions if d.keyed is not None]
        prefixes = (max(p[0] for p in hashed), max(p[1] for p in hashed))
        first = decisions[0]
        return Decision(
            Mode.WEIGHTED,
            first.datacenter,
            first.addresses,
            first.answers,
            keyed=keyed,
            key_prefixes=prefixes,
        )
    answers: list[Answer] = []
    offsets: list[int] = []
    picks: list[Callable[[], int] | None] = []
    for name, selection in zip(names, selections, strict=True):
        offsets.append(len(answers))
        answers.extend(Answer(name, a) for a in selection.answers)
        picks.append(selection.pick if selection.varies else None)

    def pick() -> int:
        which = weights.pick(rng)
        inner = picks[which]
        return offsets[which] + (inner() if inner is not None else 0)

    return Decision(Mode.WEIGHTED, answers[0].datacenter, answers[0].addresses, tuple(answers), pick)


def _by_key(names: Sequence[str], weights: Sequence[int], key: bytes) -> int:
    """A weighted draw that is the same for the same key on every server, and that moves only
    the keys of a datacenter that leaves (a cumulative split would shift every range after it):
    weighted rendezvous hashing (Schindelhauer and Schomaker, 2005). Each datacenter scores
    weight / -ln(u), u uniform in (0, 1) from BLAKE2b of (name, key); the highest wins. Weights
    all 0 (only standbys left) count as equal."""
    equal = not any(weights)
    best, best_score = 0, -1.0
    for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
        if weight <= 0 and not equal:
            continue
        digest = hashlib.blake2b(name.encode() + b"\0" + key, digest_size=8).digest()
        u = ((int.from_bytes(digest, "big") >> 12) + 0.5) / (1 << 52)  # exact, strictly in (0, 1)
        score = (weight or 1) / -math.log(u)
        if score > best_score:
            best, best_score = index, score
    return best


def when_all_down(
    service: Service, order: Sequence[str], states: Mapping[str, DatacenterState], *, v4: bool
) -> Decision:
    fallback = tuple(a for a in service.fallback if isinstance(a, IPv4Address) == v4)
    if service.when_all_down is WhenAllDown.SERVFAIL:
        return Decision(Mode.SERVFAIL, None, ())
    if service.when_all_down is WhenAllDown.FAIL_OPEN:
        for name in order:
            state = states[name]
            addresses = state.fail_open_v4 if v4 else state.fail_open_v6
            if state.drain is None and addresses:
                return Decision(Mode.FAIL_OPEN, name, addresses)
    # FALLBACK, or fail-open with every datacenter drained: drains are operator intent.
    if fallback or service.fallback:
        return Decision(Mode.FALLBACK, None, fallback)
    return Decision(Mode.DRAINED, None, ())


def service_states(
    config: Config, view: HealthView, *, now: float, rng: random.Random | None = None
) -> dict[str, dict[str, DatacenterState]]:
    """Every service's datacenter states under one view (computed once per view swap)."""
    rng = rng or random.Random()
    return {
        service.name: {
            name: datacenter_state(service, config.datacenters[name], view, now=now, rng=rng)
            for name in service.datacenters()
        }
        for service in config.services.values()
    }
