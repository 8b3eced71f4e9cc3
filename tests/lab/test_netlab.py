"""The network-namespace lab's main scenario, as CI runs it (`bin/dev netlab` runs them all).

A real delegation (Knot: a private root and example.com delegating gslb.example.com), unbound
with subnetcache resolving from that root for clients in Europe, America and Asia, two
`gslb serve` nodes in distributed mode announcing two anycast addresses over BGP (ExaBGP's
healthcheck calling `gslb healthcheck`) to a BIRD router that prefers node1. All of it in
`ip netns` namespaces made for this module and removed after it (see lab/netlab/topology.py).

The tests assert behaviour (answers, routes, queries lost or not); the seconds the lab
measures are printed by `bin/dev netlab`, never asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from lab.netlab import scenarios
from lab.netlab.topology import ANYCAST, Lab, Settings

pytestmark = [pytest.mark.integration, pytest.mark.netlab, pytest.mark.timeout(300)]

NEEDED = {  # program: Debian package (bin/dev test installs them)
    "ip": "iproute2",
    "knotd": "knot",
    "bird": "bird2",
    "exabgp": "exabgp",
    "exabgp-healthcheck": "exabgp",
    "unbound": "unbound",
    "redis-server": "redis-server",
    "dig": "bind9-dnsutils",
}
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the netlab needs root (ip netns, port 53)")
    missing = sorted(
        {package for program, package in NEEDED.items() if not shutil.which(program, path=SEARCH)}
    )
    if missing:
        pytest.skip(f"the netlab needs Debian packages {', '.join(missing)} (bin/dev test installs them)")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no network namespaces here (a container without CAP_SYS_ADMIN?)")
    # the pid in the names: a lab of another run on this machine is neither met nor removed;
    # a lame duck well above the checker's fall (2 x 1 s) so that a stop loses nothing
    lab = Lab(tmp_path_factory.mktemp("netlab"), Settings(prefix=f"nlt{os.getpid()}", lame_duck_s=15))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_each_client_resolves_through_the_delegation_to_its_continent(lab: Lab) -> None:
    """From a fresh unbound that knows only the private root: root -> example.com ->
    gslb.example.com's anycast name servers, with each client's /29 sent as ECS."""
    result = scenarios.resolution(lab)

    bad = [row for row in result.rows if not row["ok"]]
    assert not bad, f"wrong answers: {bad}\nlogs: {lab.work / 'logs'}"
    assert result.route == "node1"  # MED 100 beats node2's 200
    assert result.served_by == "node1"  # the anycast address reaches the nearest node


def test_a_crashed_node_is_withdrawn_and_the_other_node_answers(lab: Lab) -> None:
    result = scenarios.node_stop(lab, crash=True)

    assert result.route_after == "node2"
    assert result.checker_down_after_s is not None  # the withdrawal came from ExaBGP's healthcheck
    assert result.direct_by_node2 > 0
    assert result.direct_lost_after_withdrawal == 0  # once withdrawn, every query is answered
    assert result.direct_lost > 0  # until then, the crashed node's share is lost: the stream counts
    assert lab.route() == "node1"  # restarted and announced again


def test_a_stopped_node_answers_in_its_lame_duck_until_its_route_is_withdrawn(lab: Lab) -> None:
    if not lab.lame_duck:
        pytest.skip("this gslb has no server.lame_duck_s")
    result = scenarios.node_stop(lab, crash=False)

    assert lab.health_command_kind == "gslb healthcheck"  # fails at once in the lame duck
    assert result.route_after == "node2"
    assert result.direct_by_node2 > 0
    assert (result.direct_lost, result.via_lost, result.via_failed) == (0, 0, 0)
    assert lab.route() == "node1"


def test_maintenance_withdraws_the_route_with_no_query_lost(lab: Lab) -> None:
    result = scenarios.maintenance(lab)

    assert result.route_during == "node2"
    assert result.checker_disabled_after_s is not None
    assert result.direct_by_node2 > 0
    assert (result.direct_lost, result.via_lost, result.via_failed) == (0, 0, 0)
    assert lab.route() == "node1"  # the file removed: announced again


def test_a_region_drain_moves_the_clients_answer_through_the_resolver(lab: Lab) -> None:
    result = scenarios.drain(lab)

    assert result.before == scenarios.ANSWERS["ams"]
    # drain() waits for both nodes to answer iad, then for the client to get it through
    # unbound (it raises if that never happens), then for ams to come back after the undrain
    assert scenarios.resolve(lab, "eu")[0] == scenarios.ANSWERS["ams"]
    assert scenarios.identity(lab, "resolver", ANYCAST[0]) == "node1"


def test_a_hung_node_loses_its_route_when_the_bgp_hold_timer_expires(lab: Lab) -> None:
    """No withdrawal is sent by a frozen node: the router drops its routes on the hold timer.
    Last: resumed, node1 answers its backlog of queued queries at once, and response rate
    limiting then drops some replies to the resolver for a moment (a debt, see README)."""
    result = scenarios.node_hung(lab)

    assert result.route_after == "node2"
    assert result.direct_by_node2 > 0
    assert result.direct_lost_after_withdrawal == 0
    assert lab.route() == "node1"  # resumed: the session and the announcements come back
