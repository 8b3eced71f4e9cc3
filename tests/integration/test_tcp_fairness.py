"""Fair DNS over TCP against a real `gslb serve`: caps per client network, the connection idle
the longest closed first at the total cap, and a fresh client served while idle and slow
connections hold the cap (issue 9 scaled down: 200 connections in total, 20 per /24).

Clients are told apart by their source address: any 127/8 address reaches the server over
the loopback interface, so 127.0.N.x are different /24 client networks. The timeouts are long
(idle 60 s, read 30 s) so that nothing here is closed by a timer: every connection the server
closes, it closes to make room or refuses for a cap. Tests wait for positive signals (a reply,
a closed socket, a metric) in bounded loops.
"""

from __future__ import annotations

import socket
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess, read_tcp_message, start_gslb

pytestmark = pytest.mark.integration

MAX_CONNECTIONS = 200
PER_NETWORK = 20

FAIR_CONFIG = BASIC_CONFIG.replace(
    "tcp: {{idle_timeout_s: 1.0, read_timeout_s: 0.5, max_connections: 8, max_connections_per_client: 8}}",
    f"tcp: {{{{idle_timeout_s: 60, read_timeout_s: 30, max_connections: {MAX_CONNECTIONS}, "
    f"max_connections_per_client: {PER_NETWORK}, max_connections_per_network: {PER_NETWORK}}}}}",
)


# --- helpers ------------------------------------------------------------------------------------


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


QUERY = dns.message.make_query("static.gslb.example.com", "A", id=0x4242).to_wire()


def connect(server: GslbProcess, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.bind((source, 0))
    sock.connect(server.address)
    return sock


def answers(sock: socket.socket, qid: int = 0x4242) -> bool:
    """Whether the server answers a query on this connection (False: it closed it)."""
    try:
        sock.sendall(framed(qid.to_bytes(2, "big") + QUERY[2:]))
    except (BrokenPipeError, ConnectionResetError):
        return False
    reply = read_tcp_message(sock)
    if reply is None:
        return False
    assert reply[:2] == qid.to_bytes(2, "big")
    return True


def closed_by_server(sock: socket.socket, timeout_s: float = 10.0) -> bool:
    """Whether the server closes this (silent) connection within `timeout_s`."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def metrics(server: GslbProcess) -> dict[str, float]:
    """The server's /metrics samples, by name with labels (`gslb_tcp_refused_total{reason="network"}`)."""
    with urllib.request.urlopen(server.api_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gslb_tcp_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def wait_for_metric(server: GslbProcess, name: str, value: float, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := metrics(server).get(name)) != value:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} is {seen}, not {value}, after {timeout_s} s")
        time.sleep(0.05)


def idle_connections(server: GslbProcess, networks: range, per_network: int) -> list[socket.socket]:
    """Connections from 127.0.N.1-5 for each N, each answered once and then left idle."""
    socks: list[socket.socket] = []
    for n in networks:
        for index in range(per_network):
            sock = connect(server, f"127.0.{n}.{1 + index % 5}")
            socks.append(sock)
            assert answers(sock), f"idle connection {index} from 127.0.{n}/24 was not served"
    return socks


def slow_connections(server: GslbProcess, network: int, count: int) -> list[socket.socket]:
    """Connections from 127.0.`network`.x that sent half a query and then nothing (slowloris)."""
    half = framed(QUERY)[:9]
    socks: list[socket.socket] = []
    for index in range(count):
        sock = connect(server, f"127.0.{network}.{1 + index}")
        sock.sendall(half)
        socks.append(sock)
    return socks


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GslbProcess]:
    assert FAIR_CONFIG != BASIC_CONFIG, "the tcp line of BASIC_CONFIG changed: update FAIR_CONFIG"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the log file start_gslb leaves open here
        process = start_gslb(tmp_path, FAIR_CONFIG)
    try:
        yield process
        assert process.proc.poll() is None, process.output()
        assert "Traceback" not in process.output()
    finally:
        process.stop()


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    """Sockets a test holds open; closed at teardown."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


# --- tests --------------------------------------------------------------------------------------


def test_a_client_network_is_capped_while_other_networks_are_served(
    server: GslbProcess, held: list[socket.socket]
) -> None:
    held += idle_connections(server, range(30, 31), PER_NETWORK)

    with connect(server, "127.0.30.99") as extra:
        assert not answers(extra), "a connection beyond max_connections_per_network was served"
    with connect(server, "127.0.31.1") as other_network:
        assert answers(other_network)
    assert metrics(server)['gslb_tcp_refused_total{reason="network"}'] == 1

    held.pop().close()
    wait_for_metric(server, 'gslb_tcp_connections{state="idle"}', PER_NETWORK - 1)
    with connect(server, "127.0.30.99") as again:
        assert answers(again)


def test_at_the_cap_the_connection_idle_the_longest_is_closed_first(
    server: GslbProcess, held: list[socket.socket]
) -> None:
    held += idle_connections(server, range(40, 40 + MAX_CONNECTIONS // PER_NETWORK), PER_NETWORK)
    first, second, third = held[:3]
    assert answers(first)  # the first connected is now the last to have gone idle

    held.append(connect(server, "127.0.60.1"))
    assert answers(held[-1])
    assert closed_by_server(second), "the connection idle the longest was not closed"
    held.append(connect(server, "127.0.60.2"))
    assert answers(held[-1])
    assert closed_by_server(third)

    assert answers(first)
    assert metrics(server)["gslb_tcp_idle_closed_total"] == 2


def test_at_the_cap_with_every_connection_in_a_message_a_new_one_is_refused(
    server: GslbProcess, held: list[socket.socket]
) -> None:
    for network in range(70, 70 + MAX_CONNECTIONS // PER_NETWORK):
        held += slow_connections(server, network, PER_NETWORK)
    wait_for_metric(server, 'gslb_tcp_connections{state="busy"}', MAX_CONNECTIONS)

    with connect(server, "127.0.90.1") as extra:
        assert not answers(extra), "a connection beyond max_connections was served"
    assert metrics(server)['gslb_tcp_refused_total{reason="total"}'] == 1

    held.pop().close()
    wait_for_metric(server, 'gslb_tcp_connections{state="busy"}', MAX_CONNECTIONS - 1)
    with connect(server, "127.0.90.1") as again:
        assert answers(again)


def test_a_fresh_client_is_served_while_idle_and_slow_connections_hold_the_cap(
    server: GslbProcess, held: list[socket.socket]
) -> None:
    """Issue 9's attack scaled down: more idle connections than the cap from 12 networks, plus
    slow senders; a client from another network asks 100 times, each on a new connection."""
    held += slow_connections(server, 99, 10)
    wait_for_metric(server, 'gslb_tcp_connections{state="busy"}', 10)
    held += idle_connections(server, range(100, 112), PER_NETWORK)  # 240 > 200 - 10
    assert metrics(server)['gslb_tcp_connections{state="idle"}'] == MAX_CONNECTIONS - 10

    answered = 0
    for qid in range(100):
        with connect(server, "127.0.120.1") as fresh:
            answered += answers(fresh, qid)

    assert answered >= 99
    samples = metrics(server)
    assert samples["gslb_tcp_idle_closed_total"] >= 240 - (MAX_CONNECTIONS - 10)
    assert samples['gslb_tcp_refused_total{reason="total"}'] == 0
