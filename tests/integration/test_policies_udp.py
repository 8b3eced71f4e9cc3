"""Steering policies over UDP against real `gslb serve` processes (issue 10's "done when").

A consistent hash keeps every client network on its endpoint, across queries and servers,
and a failed endpoint moves only its own clients; a country rule beats distance; `all`
rotates; a weighted split answers with ECS scope 0 and follows the weights.

MaxMind's test databases place no IPv4 network in Germany, so the servers read a small
database written here (`write_mmdb`, the geo tests' writer): a German /24 at Frankfurt,
nearer to ams than to any other datacenter, and a Dutch /24 at Amsterdam.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.server_fixture import GslbProcess, start_gslb
from tests.unit.geo.conftest import write_mmdb

pytestmark = pytest.mark.integration

GERMAN = "5.9.10.0/24"  # Frankfurt: 300 km from ams, 6,500 from iad
DUTCH = "5.10.20.0/24"  # Amsterdam
HASHED = [f"192.0.2.{i}" for i in range(20, 30)]
AMS, IAD, SIN = "192.0.2.10", "198.51.100.10", "203.0.113.10"
ROTATED = ["192.0.2.40", "192.0.2.41", "192.0.2.42"]
WEIGHTS = {AMS: 60, IAD: 30, SIN: 10}

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip:
  database: {tmp}/steering-test.mmdb
  default_order: [iad, ams, sin]
services:
  hash.gslb.example.com:
    pick: {{policy: consistent_hash, algorithm: maglev, max_records: 1}}
    datacenters:
      ams: [HASHED]
  geo.gslb.example.com:
    geo: {{countries: {{DE: [sin]}}}}
    datacenters: &three
      ams: [192.0.2.10]
      iad: [198.51.100.10]
      sin: [203.0.113.10]
  near.gslb.example.com:
    datacenters: *three
  all.gslb.example.com:
    pick: {{policy: all}}
    datacenters:
      ams: [ROTATED]
  split.gslb.example.com:
    strategy: weighted
    weights: {{ams: 60, iad: 30, sin: 10}}
    datacenters: *three
""".replace("HASHED", ", ".join(HASHED)).replace("ROTATED", ", ".join(ROTATED))


def write_database(folder: Path) -> None:
    write_mmdb(
        folder / "steering-test.mmdb",
        [
            (
                GERMAN,
                {
                    "continent": {"code": "EU"},
                    "country": {"iso_code": "DE"},
                    "location": {"latitude": 50.11, "longitude": 8.68, "accuracy_radius": 20},
                },
            ),
            (
                DUTCH,
                {
                    "continent": {"code": "EU"},
                    "country": {"iso_code": "NL"},
                    "location": {"latitude": 52.37, "longitude": 4.89, "accuracy_radius": 20},
                },
            ),
        ],
    )


def start(folder: Path) -> GslbProcess:
    """A server with CONFIG whose steering maps (rules compiled in) are in use."""
    write_database(folder)
    process = start_gslb(folder, CONFIG)
    wait_until(lambda: "steering map ready" in process.output(), "the steering map is ready", 60)
    return process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    process = start(tmp_path_factory.mktemp("policies"))
    yield process
    process.stop()


def ask(server: GslbProcess, name: str, subnet: str) -> tuple[list[str], int | None]:
    """The A addresses in reply order, and the ECS scope of the reply (None: no ECS)."""
    address, prefix = subnet.split("/")
    query = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
    assert reply.rcode() == 0, reply
    found = [rdata.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rdata in rrset]
    scopes = [o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    return found, scopes[0] if scopes else None


def networks(count: int) -> list[IPv4Network]:
    """`count` public /24s: 20.0.0.0/24, 20.0.1.0/24, ..."""
    return [IPv4Network((int(IPv4Address("20.0.0.0")) + (i << 8), 24)) for i in range(count)]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)


# --- consistent hash ---------------------------------------------------------------------------


def test_consistent_hash_gives_a_network_the_same_answer_every_time(
    server: GslbProcess, tmp_path: Path
) -> None:
    sample = networks(50)
    first: dict[IPv4Network, list[str]] = {}
    for network in sample:
        base = network.network_address
        for i in range(20):
            # the /24 itself, and single hosts inside it: all are keyed by the /24
            subnet = f"{network}" if i % 2 == 0 else f"{base + i * 12}/32"
            answer, scope = ask(server, "hash.gslb.example.com", subnet)
            assert len(answer) == 1 and answer[0] in HASHED, answer
            assert first.setdefault(network, answer) == answer, (network, subnet)
            assert scope is not None and scope >= 24, (subnet, scope)  # never wider than the key
    assert len({a[0] for a in first.values()}) >= 5  # spread over the endpoints
    for i in range(10):  # IPv6 clients are keyed by their /56
        answer, scope = ask(server, "hash.gslb.example.com", f"2a00:1450:40{i:02x}::/56")
        assert ask(server, "hash.gslb.example.com", f"2a00:1450:40{i:02x}:ab::1/128") == (answer, scope)
        assert scope is not None and scope >= 56, scope
    # another server (another process, another hash salt) agrees on every network
    other = start(tmp_path)
    try:
        for network in sample:
            assert ask(other, "hash.gslb.example.com", str(network))[0] == first[network]
    finally:
        other.stop()


def drain_endpoint(server: GslbProcess, folder: Path, endpoint_id: str) -> None:
    token = (folder / "state" / "gslb" / "api-token").read_text().strip()
    request = urllib.request.Request(
        f"{server.api_url}/v1/endpoints/{endpoint_id}/drain",
        data=json.dumps({"reason": "policies test"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_a_failed_endpoint_moves_only_its_own_clients(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess]
) -> None:
    write_database(tmp_path)
    server = gslb_factory(CONFIG)
    wait_until(lambda: "steering map ready" in server.output(), "the steering map is ready", 60)
    sample = networks(1_000)
    before: dict[IPv4Network, str] = {}
    for network in sample:
        answer, scope = ask(server, "hash.gslb.example.com", str(network))
        assert len(answer) == 1
        assert scope is not None and scope >= 24
        before[network] = answer[0]
    owners = Counter(before.values())
    assert set(owners) == set(HASHED)  # every endpoint has clients
    failed = owners.most_common()[len(owners) // 2][0]  # an endpoint of middling share
    own = [n for n in sample if before[n] == failed]
    drain_endpoint(server, tmp_path, f"hash.gslb.example.com/ams/{failed}")
    wait_until(
        lambda: ask(server, "hash.gslb.example.com", str(own[0]))[0] != [failed],
        f"{failed} leaves the answers",
    )
    after: dict[IPv4Network, str] = {}
    for network in sample:
        answer, scope = ask(server, "hash.gslb.example.com", str(network))
        assert len(answer) == 1
        assert scope is not None and scope >= 24
        after[network] = answer[0]
    moved = {n for n in sample if after[n] != before[n]}
    assert moved == set(own), (len(moved), len(own))
    assert failed not in after.values()
    assert len(Counter(after[n] for n in own)) > 1  # its clients spread over the others


# --- geo rule ----------------------------------------------------------------------------------


def test_a_country_rule_beats_the_nearer_datacenter(server: GslbProcess) -> None:
    # without the rule, the German /24 goes to ams, the nearest
    assert ask(server, "near.gslb.example.com", GERMAN)[0] == [AMS]
    # with `DE: [sin]`, to sin
    answer, scope = ask(server, "geo.gslb.example.com", GERMAN)
    assert answer == [SIN]
    assert scope == 24  # the rule's block: its neighbours have no location (default order)
    assert ask(server, "geo.gslb.example.com", "5.9.10.77/32")[0] == [SIN]
    # a Dutch client next door has no rule: the nearest, ams
    assert ask(server, "geo.gslb.example.com", DUTCH) == ([AMS], 24)
    # and a client with no location gets the default order
    assert ask(server, "geo.gslb.example.com", "20.1.2.0/24")[0] == [IAD]


# --- all ---------------------------------------------------------------------------------------


def test_all_rotates_the_order_and_keeps_every_address(server: GslbProcess) -> None:
    orders = []
    for _ in range(12):
        answer, _ = ask(server, "all.gslb.example.com", "20.0.0.0/24")
        assert sorted(answer) == ROTATED
        orders.append(tuple(answer))
    rotations = {tuple(ROTATED[(i + k) % 3] for k in range(3)) for i in range(3)}
    assert set(orders) == rotations  # every rotation, in a dozen identical queries


# --- weighted strategy -------------------------------------------------------------------------


def test_a_weighted_split_has_scope_zero_and_follows_the_weights(server: GslbProcess) -> None:
    draws = 2_000
    counts: Counter[str] = Counter()
    subnets = [str(n) for n in networks(10)] + [GERMAN]
    for i in range(draws):
        answer, scope = ask(server, "split.gslb.example.com", subnets[i % len(subnets)])
        assert scope == 0  # the same split for every client
        assert len(answer) == 1 and answer[0] in WEIGHTS, answer
        counts[answer[0]] += 1
    total = sum(WEIGHTS.values())
    for address, weight in WEIGHTS.items():
        share = weight / total
        bound = 6 * math.sqrt(share * (1 - share) / draws)  # six standard deviations
        assert abs(counts[address] / draws - share) <= bound, (address, counts)
