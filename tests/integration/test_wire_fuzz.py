"""The mutation fuzzer against a real `gslb serve` over UDP and TCP (a short bench/wire_fuzz.py).

Every reply is judged as in process; afterwards the server must still run, answer a valid query
over both transports, and have logged no traceback and no ERROR line.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

from tests.dnsfuzz import WIRE_CONFIG, answers_valid_query, log_problems, make_query, wire_fuzz
from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("GSLB_FUZZ_SEED", "20261130"))


def test_fuzzed_udp_and_tcp_leave_the_server_up_and_quiet(gslb_factory: Callable[..., GslbProcess]) -> None:
    assert WIRE_CONFIG != BASIC_CONFIG
    gslb = gslb_factory(WIRE_CONFIG)
    tally = wire_fuzz(gslb.address, 4_000, seed=SEED, tcp_share=0.4, tcp_workers=2, bad_framing_share=0.2)

    assert tally.failures == 0, tally.report()
    assert tally.notes["TCP sessions"] > 0 and tally.notes["TCP connections cut for bad framing"] > 0
    assert gslb.proc.poll() is None, gslb.output()
    assert answers_valid_query(gslb.address, tcp=False)
    assert answers_valid_query(gslb.address, tcp=True)
    assert log_problems(gslb.output()) == []


SERVFAIL_CONFIG = WIRE_CONFIG.replace(
    "    ttl: 30\n",
    "    ttl: 30\n    when_all_down: servfail\n"
    "    check: {{type: tcp, port: 9, address: 127.0.0.1,"
    " interval_s: 0.1, timeout_s: 0.1, rise: 1, fall: 1}}\n",
)


def test_the_wire_fuzzer_counts_servfail(gslb_factory: Callable[..., GslbProcess]) -> None:
    """A test of the test: a server whose steered name answers SERVFAIL (every endpoint is
    checked on a closed port, and the service says `when_all_down: servfail`) must make the
    wire fuzzer report failures, over UDP and TCP."""
    assert SERVFAIL_CONFIG != WIRE_CONFIG
    server = gslb_factory(SERVFAIL_CONFIG)
    query = make_query(0x77, "www.gslb.example.com", 1).wire
    wait_for(lambda: servfail_over_udp(server, query), server)

    tally = wire_fuzz(server.address, 3_000, seed=SEED, tcp_share=0.5, tcp_workers=2)

    for transport in ("UDP", "TCP"):
        assert tally.problems[f"{transport} SERVFAIL (the handler maps a bug to SERVFAIL)"] > 0, (
            tally.report()
        )


def servfail_over_udp(server: GslbProcess, query: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.connect(server.address)
        sock.send(query)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            return False
    return reply[:2] == query[:2] and reply[3] & 0x0F == 2


def wait_for(condition: Callable[[], bool], server: GslbProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
