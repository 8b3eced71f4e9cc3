"""Steering policies end to end through `Steering`: geo rules, the failover and weighted
strategies, and the endpoint policies as a query sees them (`Decision.answers` / `pick()` /
`keyed`). Fixed seeds; the algorithms themselves are tested in test_endpoints.py.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest

from gslb.config.model import (
    Check,
    Config,
    Datacenter,
    Endpoint,
    GeoConfig,
    GeoRules,
    HashAlgorithm,
    IPAddress,
    Pick,
    PickPolicy,
    Service,
    Strategy,
    WhenAllDown,
)
from gslb.geo import Location, LocationSource
from gslb.health.view import Drain, DrainKind, Health, HealthView
from gslb.policy.decision import Decision, Mode
from gslb.policy.steering import Order, Steering, classifier, spec_of

NAME = "www.example."
DCS = {
    "ams": Datacenter("ams", 52.37, 4.90, "europe"),
    "iad": Datacenter("iad", 39.04, -77.49, "americas"),
    "sin": Datacenter("sin", 1.35, 103.82, "asia-pacific"),
}
ADDRESSES: dict[str, list[str]] = {
    "ams": ["192.0.2.10", "192.0.2.11", "2001:db8:a::10"],
    "iad": ["198.51.100.10", "198.51.100.11", "2001:db8:b::10"],
    "sin": ["203.0.113.10", "203.0.113.11", "2001:db8:c::10"],
}
SEED = 20261130


def endpoint_id(dc: str, address: str) -> str:
    return f"www/{dc}/{address}"


def service(
    *,
    strategy: Strategy = Strategy.NEAREST,
    geo: GeoRules | None = None,
    weights: Mapping[str, int] | None = None,
    pick: Pick | None = None,
    picks: Mapping[str, Pick] | None = None,
    endpoints: Mapping[str, Sequence[str | tuple[str, int]]] | None = None,
) -> Service:
    """A service over `endpoints` (datacenter -> addresses or (address, weight)), config order."""
    listed = ADDRESSES if endpoints is None else endpoints
    members = []
    for dc, items in listed.items():
        for item in items:
            address, weight = (item, 1) if isinstance(item, str) else item
            members.append(Endpoint(endpoint_id(dc, address), NAME, dc, ip_address(address), Check(), weight))
    return Service(
        NAME,
        "example.",
        30,
        strategy,
        1,
        WhenAllDown.FAIL_OPEN,
        (),
        tuple(members),
        geo=geo or GeoRules(),
        weights=weights or {},
        pick=pick or Pick(),
        picks=picks or {},
    )


def config_of(svc: Service) -> Config:
    return Config(
        source=Path("gslb.yaml"),
        datacenters=DCS,
        services={svc.name: svc},
        geoip=GeoConfig(default_order=("iad", "ams", "sin")),
    )


def steering(svc: Service, view: HealthView | None = None, seed: int = SEED) -> Steering:
    return Steering(config_of(svc), view or HealthView(), now=lambda: 0.0, rng=random.Random(seed))


def down(*ids: str) -> HealthView:
    return HealthView(1, dict.fromkeys(ids, Health.DOWN))


def dc_down(*dcs: str) -> HealthView:
    return down(*(endpoint_id(dc, a) for dc in dcs for a in ADDRESSES[dc]))


def addresses(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ip_address(t) for t in texts)


def where(
    latitude: float | None,
    longitude: float | None,
    country: str | None = None,
    continent: str | None = None,
    subdivision: str | None = None,
) -> Location:
    known = LocationSource.DATABASE if latitude is not None else LocationSource.UNKNOWN
    return Location(
        ip_network("192.0.2.0/24"),
        known,
        latitude,
        longitude,
        country,
        continent,
        subdivision=subdivision,
    )


BERLIN = where(52.52, 13.40, "DE", "EU", "DE-BE")  # nearest: ams
LONDON = where(51.51, -0.13, "GB", "EU", "GB-ENG")  # nearest: ams
SEATTLE = where(47.61, -122.33, "US", "NA", "US-WA")  # nearest: iad
NEW_YORK = where(40.71, -74.01, "US", "NA", "US-NY")  # nearest: iad
MEXICO = where(19.43, -99.13, "MX", "NA", "MX-CMX")  # nearest: iad
TOKYO = where(35.68, 139.75, "JP", "AS", "JP-13")  # nearest: sin
NOWHERE = where(None, None)


def shares(counts: Counter[str], total: int) -> dict[str, float]:
    return {name: count / total for name, count in counts.items()}


def assert_shares(counts: Counter[str], weights: Mapping[str, int], total: int) -> None:
    """Every share within ±2 % (relative) of its weight's share."""
    weight_sum = sum(weights.values())
    for name, weight in weights.items():
        expected = weight / weight_sum
        assert counts[name] / total == pytest.approx(expected, rel=0.02), (name, shares(counts, total))


# --- geo rules -------------------------------------------------------------------------------

RULES = GeoRules(
    subdivisions={"US-WA": ("ams",)},
    countries={"US": ("sin",), "DE": ("sin",), "JP": ("iad", "ams")},
    continents={"NA": ("ams", "sin"), "AS": ("iad",)},
)


@pytest.mark.parametrize(
    ("location", "order"),
    [
        (BERLIN, ("sin", "ams", "iad")),  # country DE: sin, then by distance (ams nearer than iad)
        (LONDON, ("ams", "iad", "sin")),  # no rule for GB or EU: distance
        (SEATTLE, ("ams", "iad", "sin")),  # subdivision US-WA beats country US and continent NA
        (NEW_YORK, ("sin", "iad", "ams")),  # country US beats continent NA
        (MEXICO, ("ams", "sin", "iad")),  # continent NA: the rule's two in its order, then iad
        (TOKYO, ("iad", "ams", "sin")),  # country JP beats continent AS
        (NOWHERE, ("iad", "ams", "sin")),  # no location, no rule: the default order
    ],
    ids=["country", "no-rule", "subdivision", "country-over-continent", "continent", "jp", "unknown"],
)
def test_geo_rules_beat_distance(location: Location, order: Order) -> None:
    svc = service(geo=RULES)
    assert classifier(config_of(svc), spec_of(svc))(location) == order
    assert (
        svc.geo.match(location.subdivision, location.country, location.continent)
        == {
            BERLIN: "country DE",
            LONDON: None,
            SEATTLE: "subdivision US-WA",
            NEW_YORK: "country US",
            MEXICO: "continent NA",
            TOKYO: "country JP",
            NOWHERE: None,
        }[location]
    )


def test_without_rules_the_order_is_by_distance() -> None:
    svc = service()
    classify = classifier(config_of(svc), spec_of(svc))
    assert classify(BERLIN) == ("ams", "iad", "sin")
    assert classify(SEATTLE) == ("iad", "ams", "sin")
    assert classify(TOKYO) == ("sin", "ams", "iad")


def test_a_rules_datacenter_down_falls_back_to_the_rest_by_distance() -> None:
    svc = service(geo=GeoRules(countries={"DE": ("sin",)}))
    order = classifier(config_of(svc), spec_of(svc))(BERLIN)
    healthy = steering(svc).decide(svc, order, v4=True)
    assert (healthy.mode, healthy.datacenter) == (Mode.NEAREST, "sin")
    assert healthy.addresses == addresses("203.0.113.10", "203.0.113.11")
    sin_down = steering(svc, dc_down("sin")).decide(svc, order, v4=True)
    assert (sin_down.mode, sin_down.datacenter) == (Mode.FAILOVER, "ams")  # nearest of the rest
    both_down = steering(svc, dc_down("sin", "ams")).decide(svc, order, v4=True)
    assert (both_down.mode, both_down.datacenter) == (Mode.FAILOVER, "iad")


def test_a_rules_own_order_comes_before_distance() -> None:
    svc = service(geo=GeoRules(countries={"DE": ("sin", "iad")}))
    order = classifier(config_of(svc), spec_of(svc))(BERLIN)
    assert order == ("sin", "iad", "ams")
    decision = steering(svc, dc_down("sin")).decide(svc, order, v4=True)
    assert decision.datacenter == "iad"  # the rule's second, though ams is nearer
    drained = HealthView(1, drains=(Drain(DrainKind.DATACENTER, "sin", "maintenance"),))
    assert steering(svc, drained).decide(svc, order, v4=False).datacenter == "iad"


# --- failover strategy -----------------------------------------------------------------------

FAILOVER_DCS: dict[str, Sequence[str | tuple[str, int]]] = {dc: ADDRESSES[dc] for dc in ("sin", "iad", "ams")}


@pytest.mark.parametrize(
    "location", [BERLIN, SEATTLE, TOKYO, NOWHERE], ids=["berlin", "seattle", "tokyo", "unknown"]
)
def test_failover_uses_the_listed_order_wherever_the_client_is(location: Location) -> None:
    svc = service(strategy=Strategy.FAILOVER, endpoints=FAILOVER_DCS)
    order = classifier(config_of(svc), spec_of(svc))(location)
    assert order == ("sin", "iad", "ams")
    assert steering(svc).decide(svc, order, v4=True).datacenter == "sin"
    failed = steering(svc, dc_down("sin")).decide(svc, order, v4=True)
    assert (failed.mode, failed.datacenter) == (Mode.FAILOVER, "iad")
    assert steering(svc, dc_down("sin", "iad")).decide(svc, order, v4=True).datacenter == "ams"


def test_failover_with_a_rule_puts_the_rule_first_then_the_listed_order() -> None:
    svc = service(
        strategy=Strategy.FAILOVER, endpoints=FAILOVER_DCS, geo=GeoRules(countries={"DE": ("ams",)})
    )
    classify = classifier(config_of(svc), spec_of(svc))
    assert classify(BERLIN) == ("ams", "sin", "iad")
    assert classify(TOKYO) == ("sin", "iad", "ams")


# --- weighted strategy -----------------------------------------------------------------------


def draw_datacenters(decision: Decision, draws: int) -> Counter[str]:
    assert decision.pick is not None
    pick = decision.pick
    answers = decision.answers
    return Counter(answers[pick()].datacenter or "" for _ in range(draws))


def test_weighted_strategy_shares_follow_the_weights() -> None:
    weights = {"ams": 50, "iad": 30, "sin": 20}
    svc = service(strategy=Strategy.WEIGHTED, weights=weights)
    order = classifier(config_of(svc), spec_of(svc))(BERLIN)
    assert order == ()  # unmatched clients of a weighted service: drawn per answer
    decision = steering(svc).decide(svc, order, v4=True)
    assert decision.mode is Mode.WEIGHTED
    assert decision.varies
    assert_shares(draw_datacenters(decision, 100_000), weights, 100_000)


def test_weighted_draw_goes_on_into_each_datacenters_endpoint_policy() -> None:
    svc = service(strategy=Strategy.WEIGHTED, weights={"ams": 1, "iad": 1, "sin": 0})
    decision = steering(svc).decide(svc, (), v4=True)
    assert decision.pick is not None
    seen = Counter(decision.answers[decision.pick()].addresses for _ in range(10_000))
    # `all` inside each datacenter: both rotations of ams and of iad, never sin (standby)
    assert set(seen) == {
        addresses("192.0.2.10", "192.0.2.11"),
        addresses("192.0.2.11", "192.0.2.10"),
        addresses("198.51.100.10", "198.51.100.11"),
        addresses("198.51.100.11", "198.51.100.10"),
    }


def test_weight_zero_is_standby_used_only_when_the_others_are_ineligible() -> None:
    svc = service(strategy=Strategy.WEIGHTED, weights={"ams": 3, "iad": 1, "sin": 0})
    healthy = draw_datacenters(steering(svc).decide(svc, (), v4=True), 10_000)
    assert set(healthy) == {"ams", "iad"}
    one_left = steering(svc, dc_down("ams")).decide(svc, (), v4=True)
    assert (one_left.mode, one_left.datacenter, one_left.varies) == (Mode.WEIGHTED, "iad", True)
    assert set(draw_datacenters(one_left, 1_000)) == {"iad"}  # not the standby
    drained = HealthView(
        1,
        drains=(
            Drain(DrainKind.DATACENTER, "ams", "maintenance"),
            Drain(DrainKind.REGION, "americas", "maintenance"),
        ),
    )
    for view in (dc_down("ams", "iad"), drained):
        standby = steering(svc, view).decide(svc, (), v4=True)
        assert (standby.mode, standby.datacenter) == (Mode.WEIGHTED, "sin")
        assert set(draw_datacenters(standby, 1_000)) == {"sin"}


def test_weighted_strategy_with_a_rule_answers_the_rules_clients_by_the_rule() -> None:
    svc = service(
        strategy=Strategy.WEIGHTED,
        weights={"ams": 1, "iad": 1, "sin": 1},
        geo=GeoRules(countries={"DE": ("sin", "ams")}),
    )
    classify = classifier(config_of(svc), spec_of(svc))
    assert classify(BERLIN) == ("sin", "ams", "iad")  # the rule, then the listed order
    assert classify(TOKYO) == ()
    decision = steering(svc).decide(svc, classify(BERLIN), v4=True)
    assert (decision.mode, decision.datacenter) == (Mode.NEAREST, "sin")


# --- endpoint policies -----------------------------------------------------------------------

FOUR = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]


def one_dc(pick: Pick, items: Sequence[str | tuple[str, int]] = FOUR) -> Service:
    return service(pick=pick, endpoints={"ams": items})


def ams_ids(*addresses: str) -> tuple[str, ...]:
    return tuple(endpoint_id("ams", a) for a in addresses)


def rotations(items: Sequence[str], records: int) -> set[tuple[IPAddress, ...]]:
    n = len(items)
    return {addresses(*(items[(i + k) % n] for k in range(records))) for i in range(n)}


def test_all_rotates_exactly_over_the_eligible_endpoints() -> None:
    svc = one_dc(Pick(PickPolicy.ALL))
    decision = steering(svc, down(*ams_ids("192.0.2.2"))).decide(svc, ("ams",), v4=True)
    eligible = ["192.0.2.1", "192.0.2.3", "192.0.2.4"]
    assert {a.addresses for a in decision.answers} == rotations(eligible, 3)
    assert decision.pick is not None
    picks = [decision.pick() for _ in range(300)]
    first = picks[0]
    assert picks == [(first + i) % 3 for i in range(300)]  # each rotation in turn, exactly
    for index in picks[:3]:
        assert sorted(decision.answers[index].addresses) == sorted(addresses(*eligible))


def test_a_single_eligible_endpoint_does_not_vary() -> None:
    svc = one_dc(Pick(PickPolicy.ALL))
    decision = steering(svc, down(*ams_ids(*FOUR[1:]))).decide(svc, ("ams",), v4=True)
    assert decision.addresses == addresses("192.0.2.1")
    assert not decision.varies


@pytest.mark.parametrize(("records", "width"), [(None, 1), (2, 2), (9, 4)], ids=["default", "two", "above-n"])
def test_round_robin_gives_the_next_endpoints_in_turn(records: int | None, width: int) -> None:
    svc = one_dc(Pick(PickPolicy.ROUND_ROBIN, max_records=records))
    decision = steering(svc).decide(svc, ("ams",), v4=True)
    assert decision.pick is not None
    answers = [decision.answers[decision.pick()].addresses for _ in range(8)]
    assert all(len(a) == width for a in answers)
    firsts = [FOUR.index(str(a[0])) for a in answers]
    assert firsts == [(firsts[0] + i) % 4 for i in range(8)]
    assert set(answers) == rotations(FOUR, width)


def test_all_with_max_records_cuts_each_rotation() -> None:
    svc = one_dc(Pick(PickPolicy.ALL, max_records=2))
    decision = steering(svc).decide(svc, ("ams",), v4=True)
    assert {a.addresses for a in decision.answers} == rotations(FOUR, 2)


def test_weighted_endpoints_share_by_weight_and_standby_waits() -> None:
    items: list[str | tuple[str, int]] = [
        ("192.0.2.1", 5),
        ("192.0.2.2", 3),
        ("192.0.2.3", 2),
        ("192.0.2.4", 0),
    ]
    svc = one_dc(Pick(PickPolicy.WEIGHTED, max_records=2), items)
    decision = steering(svc).decide(svc, ("ams",), v4=True)
    assert decision.pick is not None
    counts: Counter[str] = Counter()
    for _ in range(100_000):
        answer = decision.answers[decision.pick()].addresses
        assert len(answer) == 2 and answer[0] != answer[1]
        counts[str(answer[0])] += 1
    assert_shares(counts, {"192.0.2.1": 5, "192.0.2.2": 3, "192.0.2.3": 2}, 100_000)
    assert "192.0.2.4" not in counts
    standby = steering(svc, down(*ams_ids("192.0.2.1", "192.0.2.2", "192.0.2.3"))).decide(
        svc, ("ams",), v4=True
    )
    assert standby.addresses == addresses("192.0.2.4")


def first_of(decision: Decision, draws: int) -> Counter[str]:
    assert decision.pick is not None
    return Counter(str(decision.answers[decision.pick()].addresses[0]) for _ in range(draws))


def test_p2c_of_two_always_picks_the_cheaper() -> None:
    svc = one_dc(Pick(PickPolicy.P2C_EWMA), ["192.0.2.1", "192.0.2.2"])
    view = HealthView(1, costs={endpoint_id("ams", "192.0.2.1"): 40.0, endpoint_id("ams", "192.0.2.2"): 12.5})
    decision = steering(svc, view).decide(svc, ("ams",), v4=True)
    assert first_of(decision, 10_000) == {"192.0.2.2": 10_000}
    cheaper_first = (
        decision.answers[0].addresses
        if decision.answers[0].addresses[0] == ip_address("192.0.2.2")
        else decision.answers[1].addresses
    )
    assert cheaper_first == addresses("192.0.2.2", "192.0.2.1")


def test_p2c_picks_the_lower_cost_whenever_the_two_differ() -> None:
    # Every pair's cheaper member wins: the costliest never answers first, the cheapest
    # whenever it is drawn (2 of the 3 pairs hold it) and the middle one against the costliest.
    costs = {"192.0.2.1": 30.0, "192.0.2.2": 10.0, "192.0.2.3": 20.0}
    svc = one_dc(Pick(PickPolicy.P2C_EWMA), list(costs))
    view = HealthView(1, costs={endpoint_id("ams", a): c for a, c in costs.items()})
    counts = first_of(steering(svc, view).decide(svc, ("ams",), v4=True), 30_000)
    assert "192.0.2.1" not in counts
    assert counts["192.0.2.2"] / 30_000 == pytest.approx(2 / 3, abs=0.02)
    assert counts["192.0.2.3"] / 30_000 == pytest.approx(1 / 3, abs=0.02)


def test_p2c_ranks_an_endpoint_without_a_figure_as_an_average_one() -> None:
    svc = one_dc(Pick(PickPolicy.P2C_EWMA), ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    view = HealthView(1, costs={endpoint_id("ams", "192.0.2.1"): 10.0, endpoint_id("ams", "192.0.2.2"): 30.0})
    counts = first_of(steering(svc, view).decide(svc, ("ams",), v4=True), 30_000)
    assert "192.0.2.2" not in counts  # the costliest: loses to 10 and to the average, 20
    assert counts["192.0.2.1"] > counts["192.0.2.3"] > 0


def test_least_load_orders_by_the_load_figures() -> None:
    svc = one_dc(Pick(PickPolicy.LEAST_LOAD))
    loads = {"192.0.2.1": 0.7, "192.0.2.2": 0.2, "192.0.2.4": 0.5}  # .3 reports no figure
    view = HealthView(1, loads={endpoint_id("ams", a): v for a, v in loads.items()})
    decision = steering(svc, view).decide(svc, ("ams",), v4=True)
    assert not decision.varies
    assert decision.addresses == addresses("192.0.2.2", "192.0.2.4", "192.0.2.1", "192.0.2.3")
    capped = one_dc(Pick(PickPolicy.LEAST_LOAD, max_records=1))
    assert steering(capped, view).decide(capped, ("ams",), v4=True).addresses == addresses("192.0.2.2")
    # the least loaded goes down: the next one answers
    failed = HealthView(2, {endpoint_id("ams", "192.0.2.2"): Health.DOWN}, loads=view.loads)
    assert steering(capped, failed).decide(capped, ("ams",), v4=True).addresses == addresses("192.0.2.4")


def test_least_load_without_figures_is_weighted() -> None:
    items: list[str | tuple[str, int]] = [("192.0.2.1", 3), ("192.0.2.2", 1)]
    svc = one_dc(Pick(PickPolicy.LEAST_LOAD), items)
    decision = steering(svc).decide(svc, ("ams",), v4=True)
    assert decision.varies
    assert_shares(first_of(decision, 100_000), {"192.0.2.1": 3, "192.0.2.2": 1}, 100_000)


# --- consistent hash -------------------------------------------------------------------------

TEN = [f"192.0.2.{i}" for i in range(1, 11)]


def client_networks(count: int) -> list[IPv4Network]:
    rng = random.Random(SEED)
    found: set[IPv4Network] = set()
    while len(found) < count:
        found.add(IPv4Network(((rng.getrandbits(24) | 1 << 23) << 8, 24)))  # 128.0.0.0 and up
    return sorted(found)


def hashed(algorithm: HashAlgorithm, records: int | None = 1) -> Service:
    return one_dc(
        Pick(PickPolicy.CONSISTENT_HASH, max_records=records, algorithm=algorithm, table_size=1009), TEN
    )


def answer_for(steer: Steering, svc: Service, address: IPAddress) -> tuple[IPAddress, ...]:
    decision = steer.decide(svc, ("ams",), v4=address.version == 4)
    concrete, prefix = steer.for_client(decision, address)
    assert prefix == (24 if address.version == 4 else 56)
    return concrete.addresses


@pytest.mark.parametrize("algorithm", list(HashAlgorithm), ids=lambda a: a.value)
def test_consistent_hash_gives_a_client_network_the_same_answer(algorithm: HashAlgorithm) -> None:
    svc = hashed(algorithm)
    first, second = steering(svc, seed=1), steering(svc, seed=2)  # two servers
    decision = first.decide(svc, ("ams",), v4=True)
    assert decision.keyed is not None
    assert not first.independent(svc, decision)
    owners: Counter[IPAddress] = Counter()
    for network in client_networks(1_000):
        host = network.network_address
        answer = answer_for(first, svc, host)
        assert len(answer) == 1
        assert answer_for(first, svc, host + 200) == answer  # the same /24
        assert answer_for(first, svc, host) == answer  # again
        assert answer_for(second, svc, host + 7) == answer  # another server
        owners[answer[0]] += 1
    assert len(owners) == 10  # spread over every endpoint


@pytest.mark.parametrize("algorithm", list(HashAlgorithm), ids=lambda a: a.value)
def test_consistent_hash_moves_only_the_failed_endpoints_clients(algorithm: HashAlgorithm) -> None:
    svc = hashed(algorithm)
    networks = client_networks(1_000)
    healthy = steering(svc)
    before = {n: answer_for(healthy, svc, n.network_address) for n in networks}
    failed = ip_address("192.0.2.4")
    after_steering = steering(svc, down(endpoint_id("ams", "192.0.2.4")))
    after = {n: answer_for(after_steering, svc, n.network_address) for n in networks}
    moved = [n for n in networks if after[n] != before[n]]
    owned = [n for n in networks if before[n] == (failed,)]
    assert moved == owned
    assert 50 <= len(owned) <= 150  # about a tenth
    assert all(failed not in after[n] for n in networks)
    # it comes back: its clients return to it, nobody else moves
    again = steering(svc)
    assert {n: answer_for(again, svc, n.network_address) for n in networks} == before


@pytest.mark.parametrize("algorithm", list(HashAlgorithm), ids=lambda a: a.value)
def test_consistent_hash_with_max_records_keeps_the_owner_first(algorithm: HashAlgorithm) -> None:
    one, two = hashed(algorithm), hashed(algorithm, records=2)
    s1, s2 = steering(one), steering(two)
    for network in client_networks(200):
        pair = answer_for(s2, two, network.network_address)
        assert len(set(pair)) == 2
        assert pair[0] == answer_for(s1, one, network.network_address)[0]


def test_consistent_hash_answers_one_record_unless_max_records_says_more() -> None:
    default = hashed(HashAlgorithm.KETAMA, records=None)
    address = ip_address("198.51.100.7")
    assert len(answer_for(steering(default), default, address)) == 1


def test_consistent_hash_with_max_records_carries_more_endpoints_owner_first() -> None:
    one, every = hashed(HashAlgorithm.KETAMA), hashed(HashAlgorithm.KETAMA, records=len(TEN))
    s1, s_all = steering(one), steering(every, down(endpoint_id("ams", "192.0.2.5")))
    for network in client_networks(100):
        answer = answer_for(s_all, every, network.network_address)
        assert sorted(answer) == sorted(ip_address(a) for a in TEN if a != "192.0.2.5")
        owner = answer_for(s1, one, network.network_address)[0]
        if owner != ip_address("192.0.2.5"):
            assert answer[0] == owner


def test_consistent_hash_keys_ipv6_clients_by_their_56() -> None:
    svc = hashed(HashAlgorithm.MAGLEV)
    steer = steering(svc)
    decision = steer.decide(svc, ("ams",), v4=True)
    client = IPv6Address("2001:db8:1234:5600::1")
    concrete, prefix = steer.for_client(decision, client)
    assert prefix == 56
    assert (
        steer.for_client(decision, IPv6Address("2001:db8:1234:56ff:ffff::9"))[0].addresses
        == concrete.addresses
    )
    mapped, mapped_prefix = steer.for_client(decision, IPv6Address("::ffff:198.51.100.7"))
    assert mapped_prefix == 96 + 24  # in the mapped address's own width
    assert mapped.addresses == steer.for_client(decision, IPv4Address("198.51.100.200"))[0].addresses


def test_a_keyed_weighted_strategy_is_sticky_per_key() -> None:
    weights = {"ams": 2, "iad": 1, "sin": 1}
    svc = service(
        strategy=Strategy.WEIGHTED,
        weights=weights,
        pick=Pick(PickPolicy.CONSISTENT_HASH, algorithm=HashAlgorithm.MAGLEV, table_size=1009),
    )
    first, second = steering(svc, seed=1), steering(svc, seed=2)
    decision = first.decide(svc, (), v4=True)
    assert decision.keyed is not None
    assert not first.independent(svc, decision)
    networks = client_networks(4_000)
    where_to: dict[IPv4Network, tuple[str | None, tuple[IPAddress, ...]]] = {}
    for network in networks:
        concrete, prefix = first.for_client(decision, network.network_address)
        assert prefix == 24
        where_to[network] = (concrete.datacenter, concrete.addresses)
        other = second.for_client(second.decide(svc, (), v4=True), network.network_address + 99)[0]
        assert (other.datacenter, other.addresses) == where_to[network]
    counts = Counter(dc for dc, _ in where_to.values())
    for dc, weight in weights.items():
        assert counts[dc] / len(networks) == pytest.approx(weight / 4, abs=0.05)


def test_a_keyed_weighted_strategy_moves_only_the_failed_datacenters_clients() -> None:
    svc = service(
        strategy=Strategy.WEIGHTED,
        weights={"ams": 2, "iad": 1, "sin": 1},
        pick=Pick(PickPolicy.CONSISTENT_HASH, algorithm=HashAlgorithm.KETAMA),
    )
    networks = client_networks(2_000)

    def places(view: HealthView) -> dict[IPv4Network, str | None]:
        steer = steering(svc, view)
        decision = steer.decide(svc, (), v4=True)
        return {n: steer.for_client(decision, n.network_address)[0].datacenter for n in networks}

    before = places(HealthView())
    after = places(dc_down("iad"))
    moved = {n for n in networks if after[n] != before[n]}
    assert moved == {n for n in networks if before[n] == "iad"}
    assert moved


def test_a_keyed_weighted_strategy_keys_by_the_hashed_datacenters_prefix() -> None:
    # ams hashes by /24, iad rotates (`all`, not keyed): the draw and the hash both use /24;
    # the datacenter that is not keyed must not narrow the key to single hosts.
    svc = service(
        strategy=Strategy.WEIGHTED,
        weights={"ams": 1, "iad": 1, "sin": 0},
        pick=Pick(PickPolicy.CONSISTENT_HASH, max_records=1, table_size=1009),
        picks={"iad": Pick(PickPolicy.ALL)},
    )
    steer = steering(svc)
    decision = steer.decide(svc, (), v4=True)
    assert decision.key_prefixes == (24, 56)
    places: Counter[str | None] = Counter()
    for network in client_networks(500):
        concrete, prefix = steer.for_client(decision, network.network_address)
        assert prefix == 24
        for host in (1, 77, 254):
            again = steer.for_client(decision, network.network_address + host)[0]
            assert (again.datacenter, again.addresses) == (concrete.datacenter, concrete.addresses)
        places[concrete.datacenter] += 1
    assert set(places) == {"ams", "iad"}


# --- scope: independent answers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("svc", "independent"),
    [
        (service(strategy=Strategy.FAILOVER), True),
        (service(strategy=Strategy.WEIGHTED, weights={"ams": 1, "iad": 1, "sin": 1}), True),
        (service(pick=Pick(PickPolicy.ROUND_ROBIN)), False),  # nearest over three: by location
        (service(endpoints={"ams": FOUR}), True),  # one datacenter
        (service(strategy=Strategy.FAILOVER, geo=GeoRules(countries={"DE": ("sin",)})), False),
        (
            service(
                strategy=Strategy.WEIGHTED,
                weights={"ams": 1, "iad": 1, "sin": 1},
                geo=GeoRules(continents={"EU": ("ams",)}),
            ),
            False,
        ),
        (hashed(HashAlgorithm.MAGLEV), False),  # one datacenter, but keyed by the client
        (service(strategy=Strategy.FAILOVER, pick=Pick(PickPolicy.CONSISTENT_HASH, table_size=1009)), False),
    ],
    ids=[
        "failover",
        "weighted",
        "nearest",
        "single-datacenter",
        "failover-with-rule",
        "weighted-with-rule",
        "hash-single-datacenter",
        "hash-failover",
    ],
)
def test_which_answers_are_the_same_for_every_client(svc: Service, independent: bool) -> None:
    steer = steering(svc)
    order = classifier(config_of(svc), spec_of(svc))(BERLIN)
    decision = steer.decide(svc, order, v4=True)
    assert steer.independent(svc, decision) is independent
