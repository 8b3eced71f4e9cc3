"""Steering config: `strategy`, `geo`, `weights`, `pick` (per service and per datacenter).

Every new key loads into the model; every mistake is a problem with its key path, file and
line that says what is wrong.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import NamedTuple

import pytest

from gslb.config.loader import load
from gslb.config.model import HashAlgorithm, Pick, PickPolicy, Service, Strategy
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"
NAME = "www.gslb.example.com"
HEADER = f"""zones: [{{origin: gslb.example.com, file: {ZONE}}}]
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
  fra: {{latitude: 50.11, longitude: 8.68, region: europe}}
geoip: {{default_order: [ams]}}
services:
  {NAME}:
"""
DATACENTERS = """    datacenters:
      ams: [192.0.2.10, 192.0.2.11]
      iad: [198.51.100.10]
      sin: [203.0.113.10]
"""


def write(tmp_path: Path, service: str, datacenters: str = DATACENTERS) -> Path:
    """A config whose one service has these lines (4-space indented keys) and datacenters
    (ams, iad and sin; fra is configured but not the service's)."""
    path = tmp_path / "gslb.yaml"
    path.write_text(HEADER + service + datacenters)
    return path


def service_of(tmp_path: Path, service: str, datacenters: str = DATACENTERS) -> Service:
    return load(write(tmp_path, service, datacenters)).services[NAME + "."]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return list(info.value.problems)


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the first line of `path` containing `needle`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")


# --- what loads -------------------------------------------------------------------------------


def test_a_service_without_steering_keys_gets_the_defaults(tmp_path: Path) -> None:
    service = service_of(tmp_path, "")
    assert service.strategy is Strategy.NEAREST
    assert not service.geo
    assert service.weights == {}
    assert service.pick == Pick()
    assert service.pick.policy is PickPolicy.ALL
    assert service.pick.records is None  # every eligible endpoint
    assert service.picks == {}
    assert all(e.weight == 1 for e in service.endpoints)


def test_every_steering_key_loads(tmp_path: Path) -> None:
    service = service_of(
        tmp_path,
        "    strategy: weighted\n"
        "    weights: {ams: 60, iad: 40, sin: 0}\n"
        "    geo:\n"
        "      subdivisions: {us-ca: [iad], GB-ENG: [ams, iad]}\n"
        "      countries: {DE: [ams, iad], jp: [sin]}\n"
        "      continents: {AS: [sin], SA: [iad, ams]}\n"
        "    pick: {policy: consistent_hash, algorithm: ketama, max_records: 2,"
        " ipv4_prefix_length: 20, ipv6_prefix_length: 48}\n"
        "    check: {type: http, path: /health, load_field: stats.load}\n",
        "    datacenters:\n"
        "      ams: [192.0.2.10, {address: 192.0.2.11, weight: 0}]\n"
        "      iad: {pick: {policy: least_load, max_records: null}, endpoints: [198.51.100.10]}\n"
        "      sin:\n"
        "        pick: {policy: p2c_ewma, ewma_tau_s: 2.5}\n"
        "        endpoints: [203.0.113.10, 203.0.113.11]\n",
    )
    assert service.strategy is Strategy.WEIGHTED
    assert service.weights == {"ams": 60, "iad": 40, "sin": 0}
    assert service.geo.subdivisions == {"US-CA": ("iad",), "GB-ENG": ("ams", "iad")}
    assert service.geo.countries == {"DE": ("ams", "iad"), "JP": ("sin",)}
    assert service.geo.continents == {"AS": ("sin",), "SA": ("iad", "ams")}
    assert service.pick == Pick(
        PickPolicy.CONSISTENT_HASH,
        max_records=2,
        algorithm=HashAlgorithm.KETAMA,
        ipv4_prefix_length=20,
        ipv6_prefix_length=48,
    )
    # a datacenter's pick is key-wise over the service's
    assert service.picks["iad"].policy is PickPolicy.LEAST_LOAD
    assert service.picks["iad"].max_records is None  # null clears the service's 2
    assert service.picks["iad"].algorithm is HashAlgorithm.KETAMA
    assert service.picks["sin"].policy is PickPolicy.P2C_EWMA
    assert service.picks["sin"].max_records == 2
    assert service.picks["sin"].ewma_tau_s == 2.5
    assert "ams" not in service.picks
    assert service.pick_for("ams") is service.pick
    assert service.pick_for("sin") is service.picks["sin"]
    weights = {str(e.address): e.weight for e in service.endpoints}
    assert weights["192.0.2.11"] == 0  # standby
    assert weights["192.0.2.10"] == 1
    taus = {e.datacenter: e.ewma_tau_s for e in service.endpoints}
    assert taus == {"ams": 10.0, "iad": 10.0, "sin": 2.5}


def test_maglev_keys_load(tmp_path: Path) -> None:
    service = service_of(
        tmp_path,
        "    strategy: failover\n    pick: {policy: consistent_hash, algorithm: maglev, table_size: 251}\n",
    )
    assert service.strategy is Strategy.FAILOVER
    assert (service.pick.algorithm, service.pick.table_size) == (HashAlgorithm.MAGLEV, 251)


@pytest.mark.parametrize("policy", list(PickPolicy), ids=lambda p: p.value)
def test_every_policy_loads(tmp_path: Path, policy: PickPolicy) -> None:
    check = "    check: {type: http, load_header: X-Load}\n" if policy is PickPolicy.LEAST_LOAD else ""
    service = service_of(tmp_path, f"    pick: {{policy: {policy.value}, max_records: 3}}\n{check}")
    assert service.pick.policy is policy
    assert service.pick.records == 3


def test_round_robin_gives_one_record_unless_told() -> None:
    assert Pick(PickPolicy.ROUND_ROBIN).records == 1
    assert Pick(PickPolicy.ROUND_ROBIN, max_records=2).records == 2
    assert Pick(PickPolicy.WEIGHTED).records is None


@pytest.mark.parametrize("strategy", list(Strategy), ids=lambda s: s.value)
def test_every_strategy_loads(tmp_path: Path, strategy: Strategy) -> None:
    weights = "    weights: {ams: 1, iad: 1, sin: 1}\n" if strategy is Strategy.WEIGHTED else ""
    service = service_of(tmp_path, f"    strategy: {strategy.value}\n{weights}")
    assert service.strategy is strategy


def test_the_datacenter_order_of_a_failover_service_is_as_listed(tmp_path: Path) -> None:
    service = service_of(
        tmp_path,
        "    strategy: failover\n",
        "    datacenters:\n      sin: [203.0.113.10]\n      ams: [192.0.2.10]\n      iad: [198.51.100.10]\n",
    )
    assert service.datacenters() == ("sin", "ams", "iad")
    assert service.endpoints[0].address == ip_address("203.0.113.10")


# --- what is wrong, and where -----------------------------------------------------------------

KEY = f"services.{NAME}"


class Mistake(NamedTuple):
    service: str  # the service's lines
    datacenters: str | None  # its datacenters (None: the default ones)
    message: str  # what the problem says
    path: str  # the key path it starts with
    needle: str  # text on the line it points at


ERRORS: list[Mistake] = [
    Mistake(
        "    strategy: random\n",
        None,
        '"random" is not one of: nearest, failover, weighted',
        f"{KEY}.strategy",
        "strategy: random",
    ),
    Mistake(
        "    strategy: weighted\n    weights: {ams: 60, iad: 40}\n",
        None,
        'strategy "weighted" needs a weight for every datacenter: missing sin',
        f"{KEY}.weights",
        "weights:",
    ),
    Mistake(
        "    strategy: weighted\n",
        None,
        'strategy "weighted" needs a weight for every datacenter: missing ams, iad, sin',
        KEY,  # the service's mapping, which starts with its first key
        "strategy: weighted",
    ),
    Mistake(
        "    strategy: weighted\n    weights: {ams: 0, iad: 0, sin: 0}\n",
        None,
        'strategy "weighted" needs one datacenter with a weight above 0',
        f"{KEY}.weights",
        "weights:",
    ),
    Mistake(
        "    weights: {ams: 60, iad: 40, sin: 0}\n",
        None,
        '"weights" apply only with strategy "weighted"',
        f"{KEY}.weights",
        "weights:",
    ),
    Mistake(
        "    strategy: failover\n    weights: {ams: 1, iad: 1, sin: 1}\n",
        None,
        '"weights" apply only with strategy "weighted"',
        f"{KEY}.weights",
        "weights:",
    ),
    Mistake(
        "    strategy: weighted\n    weights: {ams: 1, iad: 1, sin: 1, fra: 1}\n",
        None,
        '"fra" is not a datacenter of this service (its datacenters: ams, iad, sin)',
        f"{KEY}.weights.fra",
        "weights:",
    ),
    Mistake(
        "    strategy: weighted\n    weights:\n      ams: 1\n      iad: -1\n      sin: 1\n",
        None,
        "-1 is below 0",
        f"{KEY}.weights.iad",
        "iad: -1",
    ),
    Mistake(
        "    geo:\n      countries: {DEU: [ams]}\n",
        None,
        '"DEU" is not an ISO 3166-1 alpha-2 country code like "DE"',
        f"{KEY}.geo.countries.DEU",
        "DEU",
    ),
    Mistake(
        "    geo:\n      continents: {XX: [sin]}\n",
        None,
        '"XX" is not a continent code (one of: AF, AN, AS, EU, NA, OC, SA)',
        f"{KEY}.geo.continents.XX",
        "XX",
    ),
    Mistake(
        "    geo:\n      subdivisions: {US: [iad]}\n",
        None,
        '"US" is not an ISO 3166-2 subdivision code like "US-CA"',
        f"{KEY}.geo.subdivisions.US",
        "subdivisions",
    ),
    Mistake(
        "    geo:\n      countries:\n        DE: [fra]\n",
        None,
        '"fra" is not a datacenter of this service (its datacenters: ams, iad, sin)',
        f"{KEY}.geo.countries.DE[0]",
        "DE: [fra]",
    ),
    Mistake(
        "    geo:\n      continents:\n        EU: [nowhere]\n",
        None,
        '"nowhere" is not a datacenter of this service (its datacenters: ams, iad, sin)',
        f"{KEY}.geo.continents.EU[0]",
        "EU: [nowhere]",
    ),
    Mistake(
        "    geo:\n      countries:\n        DE: [ams, iad, ams]\n",
        None,
        '"ams" is listed twice',
        f"{KEY}.geo.countries.DE[2]",
        "DE: [ams, iad, ams]",
    ),
    Mistake(
        "    geo:\n      countries:\n        DE: [ams]\n        de: [iad]\n",
        None,
        'countries rule "DE" is given twice',
        f"{KEY}.geo.countries.de",
        "de: [iad]",
    ),
    Mistake(
        "    geo:\n      countries:\n        DE: []\n",
        None,
        "expected at least one datacenter",
        f"{KEY}.geo.countries.DE",
        "DE: []",
    ),
    Mistake(
        "    geo:\n      cities: {Berlin: [ams]}\n",
        None,
        'unknown key "cities"',
        f"{KEY}.geo.cities",
        "cities",
    ),
    Mistake(
        "    pick: {policy: fastest}\n",
        None,
        '"fastest" is not one of: all, round_robin, weighted, consistent_hash, p2c_ewma, least_load',
        f"{KEY}.pick.policy",
        "fastest",
    ),
    Mistake(
        "    pick:\n      policy: round_robin\n      algorithm: ketama\n",
        None,
        '"algorithm" applies only with policy "consistent_hash"',
        f"{KEY}.pick.algorithm",
        "algorithm: ketama",
    ),
    Mistake(
        "    pick:\n      algorithm: maglev\n",  # the default policy is all
        None,
        '"algorithm" applies only with policy "consistent_hash"',
        f"{KEY}.pick.algorithm",
        "algorithm: maglev",
    ),
    Mistake(
        "    pick:\n      policy: weighted\n      ipv4_prefix_length: 16\n",
        None,
        '"ipv4_prefix_length" applies only with policy "consistent_hash"',
        f"{KEY}.pick.ipv4_prefix_length",
        "ipv4_prefix_length",
    ),
    Mistake(
        "    pick:\n      policy: all\n      table_size: 65537\n",
        None,
        '"table_size" applies only with policy "consistent_hash"',
        f"{KEY}.pick.table_size",
        "table_size",
    ),
    Mistake(
        "    pick:\n      policy: consistent_hash\n      ewma_tau_s: 5\n",
        None,
        '"ewma_tau_s" applies only with policy "p2c_ewma"',
        f"{KEY}.pick.ewma_tau_s",
        "ewma_tau_s",
    ),
    Mistake(
        "    pick:\n      policy: consistent_hash\n      algorithm: rendezvous\n",
        None,
        '"rendezvous" is not one of: ketama, maglev',
        f"{KEY}.pick.algorithm",
        "rendezvous",
    ),
    Mistake(
        "    pick:\n      policy: consistent_hash\n      ipv4_prefix_length: 33\n",
        None,
        "33 is above 32",
        f"{KEY}.pick.ipv4_prefix_length",
        "ipv4_prefix_length",
    ),
    Mistake(
        "    pick:\n      max_records: 0\n",
        None,
        "0 is below 1",
        f"{KEY}.pick.max_records",
        "max_records",
    ),
    Mistake(
        "    pick:\n      policy: all\n      sticky: true\n",
        None,
        'unknown key "sticky"',
        f"{KEY}.pick.sticky",
        "sticky",
    ),
    Mistake(
        "    pick:\n      policy: consistent_hash\n      table_size: 65536\n",
        None,
        "table_size 65536 is not a prime (65537 is)",
        f"{KEY}.pick.table_size",
        "table_size: 65536",
    ),
    Mistake(
        "    pick:\n      policy: consistent_hash\n      table_size: 199\n",  # prime, <= 100 x 2
        None,
        "table_size 199 must be above 100 x the endpoints of a datacenter (2)",
        f"{KEY}.pick.table_size",
        "table_size: 199",
    ),
    Mistake(
        "    pick: {policy: consistent_hash}\n",
        "    datacenters:\n"
        "      ams:\n"
        "        pick: {table_size: 101}\n"
        "        endpoints: [192.0.2.10, 192.0.2.11]\n"
        "      iad: [198.51.100.10]\n",
        "table_size 101 must be above 100 x the endpoints of a datacenter (2)",
        f"{KEY}.datacenters.ams.pick.table_size",
        "pick: {table_size: 101}",
    ),
    Mistake(
        "    pick: {policy: least_load}\n    check: {type: tcp, port: 80}\n",
        "    datacenters:\n      ams: [192.0.2.10, 192.0.2.11]\n",
        'policy "least_load" needs a check with "load_field" or "load_header" (type http or https)',
        f"{KEY}.datacenters.ams",
        "ams: [192.0.2.10",
    ),
    Mistake(
        "",
        "    datacenters:\n"
        "      ams:\n"
        "        pick: {policy: least_load}\n"
        "        check: {type: http}\n"
        "        endpoints: [192.0.2.10]\n",
        'policy "least_load" needs a check with "load_field" or "load_header" (type http or https)',
        f"{KEY}.datacenters.ams.pick",
        "pick: {policy: least_load}",
    ),
    Mistake(
        "",
        "    datacenters:\n"
        "      ams:\n"
        "        pick:\n"
        "          policy: round_robin\n"
        "          table_size: 65537\n"
        "        endpoints: [192.0.2.10]\n",
        '"table_size" applies only with policy "consistent_hash"',
        f"{KEY}.datacenters.ams.pick.table_size",
        "table_size: 65537",
    ),
    Mistake(
        "",
        "    datacenters:\n      ams:\n        - {address: 192.0.2.10, weight: -2}\n",
        "-2 is below 0",
        f"{KEY}.datacenters.ams[0].weight",
        "weight: -2",
    ),
]


@pytest.mark.parametrize(
    "mistake",
    ERRORS,
    ids=[
        "unknown-strategy",
        "weights-missing-one",
        "weighted-without-weights",
        "weights-all-zero",
        "weights-without-weighted",
        "weights-with-failover",
        "weights-unknown-datacenter",
        "weight-negative",
        "country-three-letters",
        "continent-unknown",
        "subdivision-without-part",
        "rule-other-datacenter",
        "rule-unknown-datacenter",
        "rule-listed-twice",
        "rule-given-twice",
        "rule-empty",
        "geo-unknown-key",
        "unknown-policy",
        "algorithm-with-round-robin",
        "algorithm-with-default-all",
        "prefix-with-weighted",
        "table-size-with-all",
        "tau-with-hash",
        "unknown-algorithm",
        "prefix-too-long",
        "max-records-zero",
        "pick-unknown-key",
        "table-size-not-prime",
        "table-size-too-small",
        "table-size-too-small-in-datacenter",
        "least-load-tcp-check",
        "least-load-in-datacenter",
        "datacenter-pick-key-for-other-policy",
        "endpoint-weight-negative",
    ],
)
def test_a_steering_mistake_is_a_problem_with_its_place(tmp_path: Path, mistake: Mistake) -> None:
    datacenters = DATACENTERS if mistake.datacenters is None else mistake.datacenters
    config = write(tmp_path, mistake.service, datacenters)
    problems = problems_of(config)
    found = [p for p in problems if mistake.message in p]
    assert len(found) == 1, problems
    assert found[0].startswith(f"{mistake.path}: "), found[0]
    assert f"gslb.yaml, line {line_of(config, mistake.needle)}, column " in found[0], found[0]
    assert len(problems) == 1, problems  # nothing else is blamed for it


def test_every_steering_mistake_is_reported_at_once(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "    strategy: weighted\n"
        "    weights: {ams: 1, iad: 1}\n"
        "    geo:\n"
        "      countries: {DEU: [ams], FR: [fra]}\n"
        "      continents: {XX: [sin]}\n"
        "    pick: {policy: round_robin, algorithm: maglev}\n",
    )
    problems = "\n".join(problems_of(config))
    for fragment in (
        "missing sin",
        '"DEU" is not an ISO 3166-1',
        '"fra" is not a datacenter of this service',
        '"XX" is not a continent code',
        '"algorithm" applies only with policy "consistent_hash"',
    ):
        assert fragment in problems, problems


def test_a_maglev_table_is_sized_for_the_datacenters_that_use_it(tmp_path: Path) -> None:
    # 1009 is prime and above 100 x the 3 endpoints of ams; iad rotates its 11 (no table)
    iad = ", ".join(f"198.51.100.{i}" for i in range(1, 12))
    service = service_of(
        tmp_path,
        "    pick: {policy: consistent_hash, table_size: 1009}\n",
        "    datacenters:\n"
        "      ams: [192.0.2.10, 192.0.2.11, 192.0.2.12]\n"
        f"      iad: {{pick: {{policy: all}}, endpoints: [{iad}]}}\n",
    )
    assert service.pick.table_size == 1009
    assert service.picks["iad"].policy is PickPolicy.ALL
