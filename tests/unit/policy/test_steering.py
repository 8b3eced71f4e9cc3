"""ECS scope: widened over neighbours with the same answer, never over a different one.

Uses the real Locator over MaxMind's GeoIP2-City test database (tests/data/geoip).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.config.model import Config, GeoConfig
from gslb.geo.locator import Locator
from gslb.health.view import HealthView
from gslb.policy.steering import Steering
from tests.server_fixture import BASIC_CONFIG, GEOIP_DATA

CITY_DB = GEOIP_DATA / "GeoIP2-City-Test.mmdb"
SERVICE = "www.gslb.example.com."


def _load_config() -> Config:
    folder = Path(tempfile.mkdtemp())
    zone = Path(__file__).resolve().parents[3] / "zones" / "gslb.example.com.zone"
    path = folder / "gslb.yaml"
    path.write_text(BASIC_CONFIG.format(port=5353, zone=zone, geoip=GEOIP_DATA, tmp=folder))
    return load(path)


_CONFIG = _load_config()


@pytest.fixture(scope="module")
def config() -> Config:
    return _CONFIG


@pytest.fixture(scope="module")
def locator() -> Locator:
    return Locator(CITY_DB)


def steering(config: Config, locator: Locator, default_order: tuple[str, ...]) -> Steering:
    config = replace(config, geoip=GeoConfig(CITY_DB, None, default_order))
    return Steering(config, locator, HealthView())


def widened(s: Steering, address: str, *, v4: bool = True) -> tuple[str | None, IPv4Network, int]:
    service = s.config.services[SERVICE]
    first = s.steer(service, ip_address(address), v4=v4)
    assert not first.final
    assert first.scope == first.network.prefixlen  # before widening: the GeoIP network itself
    assert s.widen_pending(budget_s=10.0) == 0  # asked once: not worth a tree walk yet
    s.steer(service, ip_address(address), v4=v4)  # asked again: queued for widening
    assert s.widen_pending(budget_s=10.0) == 1
    final = s.steer(service, ip_address(address), v4=v4)
    assert final.final
    assert isinstance(final.network, IPv4Network)
    return final.decision.datacenter, final.network, final.scope


def test_neighbours_with_the_same_answer_yield_the_supernet(config: Config, locator: Locator) -> None:
    # London (81.2.69.192/28) and its empty neighbour 81.2.69.208/28 both go to ams when
    # clients with no known location are sent to ams first.
    s = steering(config, locator, ("ams", "iad", "sin"))
    dc, network, scope = widened(s, "81.2.69.200")
    assert dc == "ams"
    assert locator.locate(ip_address("81.2.69.200")).network.prefixlen == 28
    assert scope < 28
    assert network.supernet_of(IPv4Network("81.2.69.192/27"))


def test_different_answers_never_share_a_scope(config: Config, locator: Locator) -> None:
    # 81.2.69.142/31 is London (ams); its neighbour 81.2.69.140/31 has no record and goes to
    # the default order's first datacenter (iad): the scope must stay at /31.
    s = steering(config, locator, ("iad", "ams", "sin"))
    dc, network, scope = widened(s, "81.2.69.142")
    assert (dc, scope, network) == ("ams", 31, IPv4Network("81.2.69.142/31"))
    other, other_network, _ = widened(s, "81.2.69.140")
    assert other == "iad"
    assert not other_network.overlaps(network)


def test_a_network_inside_a_widened_one_takes_its_scope_at_once(config: Config, locator: Locator) -> None:
    s = steering(config, locator, ("ams", "iad", "sin"))
    _, network, scope = widened(s, "81.2.69.200")
    inside = s.steer(s.config.services[SERVICE], ip_address("81.2.69.210"), v4=True)
    assert inside.final
    assert (inside.network, inside.scope) == (network, scope)


def test_answers_for_everyone_have_scope_zero(config: Config, locator: Locator) -> None:
    service = config.services[SERVICE]
    single = replace(service, endpoints=tuple(e for e in service.endpoints if e.datacenter == "ams"))
    cfg = replace(config, services={SERVICE: single})
    s = Steering(cfg, locator, HealthView())
    steered = s.steer(single, ip_address("175.16.199.1"), v4=True)
    assert (steered.final, steered.scope, steered.decision.datacenter) == (True, 0, "ams")


def _db_networks() -> list[IPv4Network]:
    with maxminddb.open_database(str(CITY_DB)) as reader:
        return [n for n, _ in reader if isinstance(n, IPv4Network)]


NETWORKS = _db_networks()


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(NETWORKS), st.integers(0, 2**32 - 1), st.sampled_from([("ams", "iad"), ("iad", "ams")])
)
def test_every_client_inside_a_scope_gets_the_same_answer(
    network: IPv4Network, salt: int, order: tuple[str, ...]
) -> None:
    config = _CONFIG
    s = steering(config, Locator(CITY_DB), order)
    service = s.config.services[SERVICE]
    client = IPv4Address(int(network.network_address) + salt % network.num_addresses)
    s.steer(service, client, v4=True)
    s.steer(service, client, v4=True)
    s.widen_pending(budget_s=10.0)
    final = s.steer(service, client, v4=True)
    # every database network overlapping the scope, and its gaps, decide the same
    for other in NETWORKS:
        if other.overlaps(final.network):
            probe = max(other.network_address, final.network.network_address)
            assert s.steer(service, probe, v4=True).decision.datacenter == final.decision.datacenter
    for probe in (final.network.network_address, final.network.broadcast_address):
        assert s.steer(service, probe, v4=True).decision.datacenter == final.decision.datacenter
