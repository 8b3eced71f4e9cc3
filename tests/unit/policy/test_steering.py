"""Orders and Steering: the ECS scope is the steering map block, never wider than true.

Uses the real Locator and compiled maps over MaxMind's GeoIP2-City test database.
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
from gslb.policy.steering import Orders, Steering, scope_network
from gslb.responder import build_parts, maps_for_config
from tests.server_fixture import BASIC_CONFIG, EXAMPLE_CONFIG, GEOIP_DATA

CITY_DB = GEOIP_DATA / "GeoIP2-City-Test.mmdb"
SERVICE = "www.gslb.example.com."


def _load_config() -> Config:
    folder = Path(tempfile.mkdtemp())
    zone = Path(__file__).resolve().parents[3] / "zones" / "gslb.example.com.zone"
    path = folder / "gslb.yaml"
    path.write_text(BASIC_CONFIG.format(port=5353, zone=zone, geoip=GEOIP_DATA, tmp=folder))
    return load(path)


_CONFIG = _load_config()
_MAPS_DIR = Path(tempfile.mkdtemp())


def orders_for(default_order: tuple[str, ...], *, maps: bool = True) -> Orders:
    config = replace(_CONFIG, geoip=GeoConfig(CITY_DB, None, default_order))
    orders = Orders(config, Locator(CITY_DB))
    if maps:
        orders.use_maps(maps_for_config(config, _MAPS_DIR))
    return orders


@pytest.fixture(scope="module")
def ams_first() -> Orders:
    return orders_for(("ams", "iad", "sin"))


@pytest.fixture(scope="module")
def iad_first() -> Orders:
    return orders_for(("iad", "ams", "sin"))


def test_neighbours_with_the_same_order_share_a_block(ams_first: Orders) -> None:
    # London (81.2.69.192/28) and its empty neighbour 81.2.69.208/28 both go to ams when
    # clients with no known location are sent to ams first: the block is wider than /28.
    placement = ams_first.place(_CONFIG.services[SERVICE], ip_address("81.2.69.200"))
    assert placement.from_map
    assert placement.order[0] == "ams"
    assert placement.prefix < 28
    block = scope_network(ip_address("81.2.69.200"), placement.prefix)
    assert isinstance(block, IPv4Network)
    assert block.supernet_of(IPv4Network("81.2.69.192/27"))


def test_different_orders_never_share_a_block(iad_first: Orders) -> None:
    # 81.2.69.142/31 is London (ams); its neighbour 81.2.69.140/31 has no record and goes to
    # the default order's first datacenter (iad): the block stays at /31.
    service = _CONFIG.services[SERVICE]
    london = iad_first.place(service, ip_address("81.2.69.142"))
    assert (london.order[0], london.prefix) == ("ams", 31)
    other = iad_first.place(service, ip_address("81.2.69.140"))
    assert other.order[0] == "iad"
    assert not scope_network(ip_address("81.2.69.140"), other.prefix).overlaps(IPv4Network("81.2.69.142/31"))


def test_without_maps_the_database_network_is_the_scope() -> None:
    orders = orders_for(("ams", "iad", "sin"), maps=False)
    placement = orders.place(_CONFIG.services[SERVICE], ip_address("81.2.69.200"))
    assert (placement.from_map, placement.order[0], placement.prefix) == (False, "ams", 28)


def test_answers_for_everyone_are_independent() -> None:
    service = _CONFIG.services[SERVICE]
    single = replace(service, endpoints=tuple(e for e in service.endpoints if e.datacenter == "ams"))
    cfg = replace(_CONFIG, services={SERVICE: single})
    steering = Steering(cfg, HealthView())
    decision = steering.decide(single, ("ams",), v4=True)
    assert decision.datacenter == "ams"
    assert steering.independent(single, decision)
    assert not Steering(_CONFIG, HealthView()).independent(service, decision)


def _db_networks() -> list[IPv4Network]:
    with maxminddb.open_database(str(CITY_DB)) as reader:
        return [n for n, _ in reader if isinstance(n, IPv4Network)]


NETWORKS = _db_networks()
ORDERS: dict[tuple[str, ...], Orders] = {
    order: orders_for(order) for order in (("ams", "iad", "sin"), ("iad", "ams", "sin"))
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NETWORKS), st.integers(0, 2**32 - 1), st.sampled_from(sorted(ORDERS)))
def test_every_client_inside_a_scope_gets_the_same_order(
    network: IPv4Network, salt: int, default_order: tuple[str, ...]
) -> None:
    orders = ORDERS[default_order]
    direct = orders_for(default_order, maps=False)
    service = _CONFIG.services[SERVICE]
    client = IPv4Address(int(network.network_address) + salt % network.num_addresses)
    placement = orders.place(service, client)
    block = scope_network(client, placement.prefix)
    assert isinstance(block, IPv4Network)
    # every database network overlapping the block, and the block's ends, decide the same
    probes = [block.network_address, block.broadcast_address, client]
    probes += [max(o.network_address, block.network_address) for o in NETWORKS if o.overlaps(block)]
    for probe in probes:
        assert direct.place(service, probe).order == placement.order


def test_the_bundled_2018_database_is_named_as_old(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="gslb.responder"):
        build_parts(load(EXAMPLE_CONFIG), HealthView()).locator.close()
    assert "bundled GeoLite2 City database is from 2018" in caplog.text


def test_the_mixed_class_id_is_the_maps() -> None:
    from gslb.geo import steermap
    from gslb.policy import steering

    assert steering.MIXED == steermap.MIXED
