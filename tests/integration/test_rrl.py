"""Response rate limiting in a real `gslb serve`, over loopback sources in different /24s.

Loopback is exempt by default (no reply to it can be reflected); these servers set `exempt`
to one /24 of it, so 127.0.0.1 and 127.0.1.1 are two limited client networks and 127.0.3.1 an
exempt one. No wall-clock assertion: bounds are computed from the time the flood took, and
waits are bounded loops for a positive signal.
"""

from __future__ import annotations

import math
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration

LIMIT = 20  # responses_per_second in RRL_CONFIG
RRL_CONFIG = BASIC_CONFIG.replace(
    "server:\n",
    "server:\n  rrl: {{responses_per_second: 20, window_s: 5, slip: 2, exempt: [127.0.3.0/24],"
    " log_interval_s: 0.2}}\n",
    1,
)
DEFAULTS_CONFIG = BASIC_CONFIG.replace("server:\n", "server:\n  rrl: {{exempt: []}}\n", 1)


def flood(
    server: GslbProcess, source: str, wire: bytes, count: int, burst: int = 50
) -> tuple[Counter[str], float]:
    """Send `count` copies of `wire` (IDs 0..count-1) from `source`, `burst` at a time, reading
    whatever comes back; (replies by kind, seconds it took). Kinds: full, slipped; sizes of
    slipped replies above the query + 11 bytes are counted as "oversized"."""
    out: Counter[str] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((source, 0))
        sock.connect(server.address)
        started = time.monotonic()
        for first in range(0, count, burst):
            for qid in range(first, min(first + burst, count)):
                sock.send(qid.to_bytes(2, "big") + wire[2:])
            _drain(sock, out, len(wire), timeout_s=0.05)
        _drain(sock, out, len(wire), timeout_s=0.5)
        return out, time.monotonic() - started


def _drain(sock: socket.socket, out: Counter[str], query_size: int, *, timeout_s: float) -> None:
    sock.settimeout(timeout_s)
    while True:
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return
        message = dns.message.from_wire(reply)
        if message.flags & dns.flags.TC:
            out["slipped"] += 1
            out["oversized"] += len(reply) > query_size + 11
            assert message.answer == [] and len(message.question) == 1
        else:
            assert message.answer, message
            out["full"] += 1


def ask_udp(server: GslbProcess, source: str, name: str, qtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=False)
    return dns.query.udp(query, "127.0.0.1", port=server.port, source=source, timeout=2)


def metrics(server: GslbProcess) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"{server.api_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("gslb_rrl")
    }


def wait_for(condition: Callable[[], bool], server: GslbProcess, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def test_a_flood_from_one_network_is_limited_and_slipped_while_others_are_served(
    gslb_factory: Callable[..., GslbProcess],
) -> None:
    """The issue's reflector: apex NS (34-byte query, 206-byte answer) far above the limit."""
    server = gslb_factory(RRL_CONFIG)
    wire = dns.message.make_query("gslb.example.com", "NS", use_edns=False).to_wire()

    out, seconds = flood(server, "127.0.0.1", wire, 2_000)

    assert out["full"] <= LIMIT * (math.ceil(seconds) + 1), (out, seconds)
    assert out["full"] >= 1
    assert out["slipped"] >= 100  # slip 2: about half of the ~1,980 limited replies
    assert out["oversized"] == 0
    # another client network, TCP from the flooded one, and an exempt network: all answered
    assert ask_udp(server, "127.0.1.1", "gslb.example.com", "NS").answer
    tcp = dns.query.tcp(
        dns.message.make_query("gslb.example.com", "NS"), "127.0.0.1", port=server.port, timeout=2
    )
    assert tcp.answer and not tcp.flags & dns.flags.TC
    exempt = [ask_udp(server, "127.0.3.1", "gslb.example.com", "NS") for _ in range(5 * LIMIT)]
    assert all(m.answer and not m.flags & dns.flags.TC for m in exempt)
    # counted in /metrics, and one summary line naming the flooded network
    counted = metrics(server)
    assert counted[("gslb_rrl_responses_total", "action=slipped")] >= out["slipped"]
    assert counted[("gslb_rrl_responses_total", "action=dropped")] >= 1
    assert counted[("gslb_rrl_limited_total", "class=answer")] >= out["slipped"]
    wait_for(lambda: "top networks: 127.0.0.0/24" in server.output(), server)
    lines = server.output().count("response rate limiting")
    assert 1 <= lines <= out["slipped"] // 20  # one per interval (0.2 s here), never one per packet


def test_a_resolver_relaying_ecs_for_many_subnets_gets_every_answer(
    gslb_factory: Callable[..., GslbProcess],
) -> None:
    """The default limits, one source: the steered name over 10,000 client subnets at about
    5,000 q/s (50 queries per 10 ms), every query answered in full."""
    server = gslb_factory(DEFAULTS_CONFIG)
    answered: Counter[str] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(server.address)
        sock.settimeout(2.0)
        for first in range(0, 10_000, 50):
            started = time.monotonic()
            for n in range(first, first + 50):
                subnet = f"81.{n >> 8}.{n & 255}.0"
                query = dns.message.make_query(
                    "www.gslb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)]
                )
                query.id = n % 65536
                sock.send(query.to_wire())
            for _ in range(50):
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except TimeoutError:
                    break
                full = reply.rcode() == dns.rcode.NOERROR and reply.answer and not reply.flags & dns.flags.TC
                answered["full" if full else "other"] += 1
            time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))  # pacing, not an assertion
    assert answered == Counter(full=10_000), answered
    assert metrics(server)[("gslb_rrl_responses_total", "action=dropped")] == 0
