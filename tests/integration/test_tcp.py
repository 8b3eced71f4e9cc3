"""DNS over TCP per RFC 7766 against a real `gslb serve`: pipelining, timeouts, connection caps.

The server here has short, distinct timeouts (idle 1.2 s, read 0.2 s) so that the tests can
tell which one closed a connection, and small caps (6 connections, 4 per client). Clients are
told apart by their source address: 127.0.0.1, 127.0.0.2 and 127.0.0.3 all reach the server
over the loopback interface.
"""

from __future__ import annotations

import contextlib
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess, read_tcp_message, start_gslb

pytestmark = pytest.mark.integration

IDLE_TIMEOUT_S = 1.2
READ_TIMEOUT_S = 0.2
MAX_CONNECTIONS = 6
MAX_PER_CLIENT = 4

TCP_CONFIG = BASIC_CONFIG.replace(
    "tcp: {{idle_timeout_s: 1.0, read_timeout_s: 0.5, max_connections: 8, max_connections_per_client: 8}}",
    f"tcp: {{{{idle_timeout_s: {IDLE_TIMEOUT_S}, read_timeout_s: {READ_TIMEOUT_S}, "
    f"max_connections: {MAX_CONNECTIONS}, max_connections_per_client: {MAX_PER_CLIENT}}}}}",
)

# --- helpers ------------------------------------------------------------------------------------


def start(tmp: Path, config: str) -> GslbProcess:
    """`start_gslb`, minus the ResourceWarning of the log file it leaves open in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return start_gslb(tmp, config)


def query(name: str, rdtype: str = "A", qid: int = 0x1234) -> bytes:
    message = dns.message.make_query(name, rdtype, id=qid)
    return message.to_wire()


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def connect(server: GslbProcess, source: str = "127.0.0.1", timeout_s: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.bind((source, 0))
    sock.connect(server.address)
    return sock


def answers(sock: socket.socket, qid: int = 0x4242) -> bool:
    """Whether the server answers a query on this connection (False: it closed it)."""
    try:
        sock.sendall(framed(query("static.gslb.example.com", qid=qid)))
    except (BrokenPipeError, ConnectionResetError):
        return False
    reply = read_tcp_message(sock)
    if reply is None:
        return False
    assert reply[:2] == qid.to_bytes(2, "big")
    return True


def seconds_until_closed(sock: socket.socket, limit_s: float) -> float:
    """Block until the server closes the connection (without sending anything); the time it took."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        data = b""
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit_s}s")
    assert data == b"", f"unexpected data {data!r}"
    return time.monotonic() - start


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed the connection by now (without waiting)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout set, recv would wait for data despite MSG_DONTWAIT
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(timeout)


def udp_answers(server: GslbProcess, timeout_s: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(server.address)
        sock.send(query("static.gslb.example.com", qid=0x5151))
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return False
    return reply[:2] == b"\x51\x51"


@contextlib.contextmanager
def held_connections(server: GslbProcess, sources: list[str]) -> Iterator[list[socket.socket]]:
    """Open one answered connection per source address; close them all on exit."""
    socks: list[socket.socket] = []
    try:
        for source in sources:
            sock = connect(server, source)
            socks.append(sock)
            assert answers(sock), f"connection {len(socks)} from {source} was not served"
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_until_served(server: GslbProcess, source: str, timeout_s: float = 3.0) -> None:
    """Until a new connection from `source` is served (the server saw earlier ones close)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with connect(server, source) as sock:
            if answers(sock):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"connections from {source} are still refused after {timeout_s}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    assert TCP_CONFIG != BASIC_CONFIG, "the tcp line of BASIC_CONFIG changed: update TCP_CONFIG"
    server = start(tmp_path_factory.mktemp("tcp"), TCP_CONFIG)
    yield server
    assert server.proc.poll() is None, server.output()
    assert "Traceback" not in server.output()
    server.stop()


@pytest.fixture
def tcp_server(responder: GslbProcess) -> GslbProcess:
    """The shared server, once no connection of an earlier test still counts against the caps."""
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        wait_until_served(responder, source)
    return responder


# --- pipelining ---------------------------------------------------------------------------------

PIPELINE = [
    ("www.gslb.example.com", "A", dns.rcode.NOERROR),
    ("static.gslb.example.com", "AAAA", dns.rcode.NOERROR),
    ("nope.gslb.example.com", "A", dns.rcode.NXDOMAIN),
    ("example.org", "A", dns.rcode.REFUSED),
    ("gslb.example.com", "NS", dns.rcode.NOERROR),
    ("api.gslb.example.com", "A", dns.rcode.NOERROR),
    ("foo.apps.gslb.example.com", "TXT", dns.rcode.NOERROR),
    ("gslb.example.com", "AXFR", dns.rcode.REFUSED),
]


def test_pipelined_queries_on_one_connection_are_all_answered_with_their_ids(tcp_server: GslbProcess) -> None:
    sent = {0x100 + index: (name, rdtype, rcode) for index, (name, rdtype, rcode) in enumerate(PIPELINE)}
    burst = b"".join(framed(query(name, rdtype, qid)) for qid, (name, rdtype, _) in sent.items())

    replies: dict[int, dns.message.Message] = {}
    with connect(tcp_server) as sock:
        sock.sendall(burst)  # all in one segment
        for _ in sent:
            wire = read_tcp_message(sock)
            assert wire is not None
            reply = dns.message.from_wire(wire)
            replies[reply.id] = reply

    assert replies.keys() == sent.keys()
    for qid, (name, rdtype, rcode) in sent.items():
        reply = replies[qid]
        assert reply.question[0].name.to_text() == name + "."
        assert reply.question[0].rdtype == dns.rdatatype.from_text(rdtype)
        assert reply.rcode() == rcode


def test_pipelined_queries_split_at_odd_places_are_answered(tcp_server: GslbProcess) -> None:
    burst = b"".join(framed(query("static.gslb.example.com", qid=qid)) for qid in (1, 2, 3))

    with connect(tcp_server) as sock:
        for cut in (1, 30, 45, 70):  # inside a length prefix, inside a message, across messages
            sock.sendall(burst[:cut])
            burst = burst[cut:]
            time.sleep(0.02)
        sock.sendall(burst)
        ids = set()
        for _ in range(3):
            wire = read_tcp_message(sock)
            assert wire is not None
            ids.add(int.from_bytes(wire[:2], "big"))

    assert ids == {1, 2, 3}


def test_one_connection_serves_queries_one_after_another(tcp_server: GslbProcess) -> None:
    with connect(tcp_server) as sock:
        for qid in range(10, 20):
            assert answers(sock, qid)


def test_a_dropped_message_does_not_end_the_connection(tcp_server: GslbProcess) -> None:
    response_shaped = bytearray(query("static.gslb.example.com", qid=7))
    response_shaped[2] |= 0x80  # QR=1: not a query, no reply

    with connect(tcp_server) as sock:
        sock.sendall(
            framed(bytes(response_shaped))
            + framed(b"\x00\x01")
            + framed(query("www.gslb.example.com", qid=8))
        )
        wire = read_tcp_message(sock)

    assert wire is not None
    assert wire[:2] == b"\x00\x08"


# --- timeouts -----------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_the_idle_timeout(tcp_server: GslbProcess) -> None:
    with connect(tcp_server) as sock:
        assert answers(sock)
        waited = seconds_until_closed(sock, limit_s=IDLE_TIMEOUT_S + 10)

    assert waited >= IDLE_TIMEOUT_S - 0.3  # not before the timeout (closing at all is the signal)


def test_connection_that_never_sends_is_closed_after_the_idle_timeout(tcp_server: GslbProcess) -> None:
    with connect(tcp_server) as sock:
        waited = seconds_until_closed(sock, limit_s=IDLE_TIMEOUT_S + 10)

    assert waited >= IDLE_TIMEOUT_S - 0.3  # not before the timeout (closing at all is the signal)


def test_idle_timer_restarts_with_each_query(tcp_server: GslbProcess) -> None:
    """A connection that keeps asking outlives a younger one that stays idle: the younger one
    closing is the signal that a whole idle timeout has passed since the older one connected."""
    with connect(tcp_server) as busy, connect(tcp_server) as idle:
        qid = 0
        while not closed_now(idle):
            assert answers(busy, qid), "closed although the client kept asking"
            qid += 1
            time.sleep(IDLE_TIMEOUT_S / 4)  # pacing: a query every quarter of the idle timeout
        assert answers(busy, qid), "closed with the idle connection although the client kept asking"


@pytest.mark.parametrize("sent", ["length-only", "half-message"], ids=["length-only", "half-message"])
def test_slow_sender_is_cut_off_after_the_read_timeout(tcp_server: GslbProcess, sent: str) -> None:
    message = framed(query("www.gslb.example.com"))
    partial = message[:2] if sent == "length-only" else message[: len(message) // 2]

    # the read timeout, not the idle timeout: cut while an older idle connection is still open
    with connect(tcp_server) as idle, connect(tcp_server) as sock:
        sock.sendall(partial)
        seconds_until_closed(sock, limit_s=IDLE_TIMEOUT_S + 10)
        assert not closed_now(idle), "cut only when the idle timeout struck"


def test_trickling_sender_is_cut_off_although_every_byte_is_prompt(tcp_server: GslbProcess) -> None:
    """The read timeout bounds the whole message, not the gap between two bytes."""
    message = framed(query("a-rather-long-name-to-trickle.gslb.example.com"))
    trickle_s = 0.05
    assert len(message) * trickle_s > 4 * READ_TIMEOUT_S

    reply: bytes | None = b""
    cut = False
    with connect(tcp_server) as sock:
        for index in range(len(message)):
            try:
                sock.send(message[index : index + 1])
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(trickle_s)
            if closed_now(sock):
                cut = True
                break
        sock.settimeout(2.0)
        reply = read_tcp_message(sock)

    assert reply is None
    assert cut, "the server let the whole message trickle in"


# --- connection caps ----------------------------------------------------------------------------


def test_total_connection_cap(tcp_server: GslbProcess) -> None:
    """At the cap a new connection is served in place of the one idle the longest (RFC 7766
    §6.2.3). The order, and the refusal when no connection is idle: test_tcp_fairness.py."""
    sources = ["127.0.0.1"] * MAX_PER_CLIENT + ["127.0.0.2"] * (MAX_CONNECTIONS - MAX_PER_CLIENT)

    with held_connections(tcp_server, sources) as held:
        with connect(tcp_server, "127.0.0.3") as extra:
            assert answers(extra), "a connection at max_connections was not served"
        assert udp_answers(tcp_server)
        assert not answers(held[0]), "the connection idle the longest was kept open"


def test_per_client_connection_cap(tcp_server: GslbProcess) -> None:
    with held_connections(tcp_server, ["127.0.0.1"] * MAX_PER_CLIENT) as held:
        with connect(tcp_server, "127.0.0.1") as extra:
            assert not answers(extra), "a connection beyond max_connections_per_client was served"
        with connect(tcp_server, "127.0.0.2") as other_client:
            assert answers(other_client)
        held.pop().close()
        wait_until_served(tcp_server, "127.0.0.1")


def test_held_connections_still_answer_while_the_cap_is_reached(tcp_server: GslbProcess) -> None:
    sources = ["127.0.0.1"] * MAX_PER_CLIENT + ["127.0.0.2"] * (MAX_CONNECTIONS - MAX_PER_CLIENT)

    with held_connections(tcp_server, sources) as held:
        for qid, sock in enumerate(held):
            assert answers(sock, qid)


# --- UDP is not held up by TCP ------------------------------------------------------------------


def test_udp_answers_while_tcp_connections_are_stalled(tcp_server: GslbProcess) -> None:
    sources = ["127.0.0.1"] * MAX_PER_CLIENT + ["127.0.0.2"] * (MAX_CONNECTIONS - MAX_PER_CLIENT)
    half = framed(query("www.gslb.example.com"))[:9]

    with held_connections(tcp_server, sources) as held:
        for sock in held[::2]:
            sock.sendall(half)  # stalled inside a message
        assert udp_answers(tcp_server), "UDP went unanswered while TCP connections were stalled"
        # answered before the stalled connections were cut at the read timeout, not after
        assert not any(closed_now(sock) for sock in held[::2]), "UDP waited for the TCP read timeout"
        for _ in range(19):
            assert udp_answers(tcp_server), "UDP went unanswered while TCP connections were stalled"


def test_udp_answers_while_a_tcp_client_does_not_read_its_replies(tcp_server: GslbProcess) -> None:
    flood = framed(query("gslb.example.com", "ANY")) * 5000

    with connect(tcp_server) as sock:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sent = 0
            while sent < len(flood):
                sent += sock.send(flood[sent : sent + 65536])
        for _ in range(20):
            assert udp_answers(tcp_server), "UDP went unanswered while a TCP client stopped reading"
