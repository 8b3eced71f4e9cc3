"""Node readiness: the decision behind /readyz and `gslb healthcheck`, its JSON, the SOA self-query,
and the two config keys (`server.lame_duck_s`, `server.max_state_age_s`)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from gslb.config.loader import load
from gslb.config.model import Listen
from gslb.dnswire import pack_query
from gslb.errors import ConfigError
from gslb.healthcheck import NotReady, judge_soa_reply, query_soa
from gslb.nodehealth import DRAINING, STARTING, NodeFacts, decide, seconds
from tests.server_fixture import EXAMPLE_CONFIG

ZONE = EXAMPLE_CONFIG.parent / "gslb.example.com.zone"
APEX = "gslb.example.com."
READY = NodeFacts(listening=True, draining=False, zones_configured=2, zones_loaded=2, embedded=False)

# --- decide -------------------------------------------------------------------------------------

CASES = [
    ("ready", READY, None, None),
    ("embedded-ignores-age", replace(READY, embedded=True, state_age_s=99.0, synced=False), 10.0, None),
    ("draining", replace(READY, draining=True), None, DRAINING),
    ("draining-wins-over-starting", replace(READY, draining=True, listening=False), None, DRAINING),
    ("starting", replace(READY, listening=False), None, STARTING),
    ("zones", replace(READY, zones_loaded=1), None, "zones not loaded (1 of 2)"),
    (
        "no-state",
        replace(READY, synced=False, state_age_s=None),
        None,
        "no health state yet (state store not read since start, no snapshot loaded)",
    ),
    ("snapshot-loaded", replace(READY, synced=False, snapshot_loaded=True, state_age_s=50.0), None, None),
    ("old-no-limit", replace(READY, state_age_s=3600.0, connected=False), None, None),
    ("within-limit", replace(READY, state_age_s=10.0), 10.0, None),
    ("stale", replace(READY, state_age_s=42.7, connected=False), 10.0, "health state 42 s old (limit 10 s)"),
    (
        "stale-snapshot",
        replace(READY, synced=False, snapshot_loaded=True, state_age_s=2.46),
        0.5,
        "health state 2.5 s old (limit 0.5 s)",
    ),
]


@pytest.mark.parametrize(("facts", "limit", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(facts: NodeFacts, limit: float | None, reason: str | None) -> None:
    verdict = decide(facts, max_state_age_s=limit)

    assert (verdict.ready, verdict.reason) == (reason is None, reason)
    assert verdict.line == ("ready" if reason is None else f"not ready: {reason}")


@pytest.mark.parametrize(
    ("value", "text"), [(0.04, "0 s"), (1.0, "1 s"), (2.46, "2.5 s"), (9.96, "10 s"), (42.9, "42 s")]
)
def test_seconds_are_short(value: float, text: str) -> None:
    assert seconds(value) == text


# --- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "facts",
    [READY, replace(READY, embedded=True), replace(READY, synced=False, state_age_s=None, connected=False)],
    ids=["distributed", "embedded", "never-synced"],
)
def test_facts_survive_json(facts: NodeFacts) -> None:
    verdict = decide(facts, max_state_age_s=5.0)
    doc = verdict.to_json()

    assert NodeFacts.from_json(doc["conditions"]) == facts
    assert doc["conditions"]["state"]["max_age_s"] == 5.0
    assert (doc["ready"], doc["reason"]) == (verdict.ready, verdict.reason)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.pop("listening"),
        lambda d: d["state"].update(mode="clustered"),
        lambda d: d["zones"].update(loaded="2"),
        lambda d: d["state"].update(age_s="old"),
        lambda d: d.update(draining=None),
    ],
    ids=["missing", "bad-mode", "string-count", "string-age", "null-flag"],
)
def test_malformed_facts_are_a_value_error(mangle: Callable[[dict[str, object]], object]) -> None:
    doc = READY.to_json()
    mangle(doc)
    with pytest.raises(ValueError):
        NodeFacts.from_json(doc)


# --- the SOA reply ------------------------------------------------------------------------------


def soa_reply(
    query_wire: bytes, *, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, aa: bool = True, soa: bool = True
) -> bytes:
    query = dns.message.from_wire(query_wire)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    if aa:
        reply.flags |= dns.flags.AA
    if soa:
        reply.answer.append(
            dns.rrset.from_text(APEX, 60, "IN", "SOA", "ns1.gslb.example.com. host.example.com. 1 2 3 4 5")
        )
    else:
        reply.answer.append(dns.rrset.from_text(APEX, 60, "IN", "NS", "ns1.gslb.example.com."))
    return reply.to_wire()  # dnspython compresses the names: the parser follows the pointers


QUERY = pack_query(APEX, 6, 0x1234)

REPLIES = [
    ("good", soa_reply(QUERY), ""),
    ("refused", soa_reply(QUERY, rcode=dns.rcode.REFUSED, soa=False), "REFUSED"),
    ("servfail", soa_reply(QUERY, rcode=dns.rcode.SERVFAIL, soa=False), "SERVFAIL"),
    ("not-authoritative", soa_reply(QUERY, aa=False), "AA not set"),
    ("no-soa", soa_reply(QUERY, soa=False), "no SOA in the answer"),
    ("other-id", soa_reply(pack_query(APEX, 6, 0x4321)), None),
    ("other-question", soa_reply(pack_query("example.org.", 6, 0x1234)), None),
    ("a-query-not-a-reply", QUERY, None),
]


@pytest.mark.parametrize(("wire", "verdict"), [r[1:] for r in REPLIES], ids=[r[0] for r in REPLIES])
def test_soa_replies_are_judged(wire: bytes, verdict: str | None) -> None:
    assert judge_soa_reply(wire, 0x1234, APEX) == verdict


def test_the_apex_is_compared_without_case() -> None:
    assert judge_soa_reply(soa_reply(pack_query("GSLB.Example.COM.", 6, 7)), 7, APEX) == ""


@pytest.mark.parametrize(
    "wire",
    [QUERY[:5], soa_reply(QUERY)[:-3], QUERY[:12] + b"\xc0\x0c"],
    ids=["short-header", "truncated-record", "pointer-loop"],
)
def test_malformed_replies_are_a_value_error(wire: bytes) -> None:
    wire = wire[:2] + bytes([wire[2] | 0x80]) + wire[3:] if len(wire) >= 12 else wire  # QR=1
    with pytest.raises(ValueError):
        judge_soa_reply(wire, 0x1234, APEX)


# --- the query over a real socket ---------------------------------------------------------------


@pytest.fixture
def udp_server() -> Iterator[Callable[[Callable[[bytes], list[bytes]]], Listen]]:
    """A UDP socket on 127.0.0.1 that answers each query with what `answer(query)` returns."""
    socks: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(answer: Callable[[bytes], list[bytes]]) -> Listen:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)

        def serve() -> None:
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                return
            for reply in answer(data):
                sock.sendto(reply, peer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return Listen("127.0.0.1", sock.getsockname()[1])

    yield start
    for sock in socks:
        sock.close()
    for thread in threads:
        thread.join(5)


def test_a_stray_datagram_is_skipped_until_the_reply(udp_server: Callable[..., Listen]) -> None:
    def answer(query: bytes) -> list[bytes]:
        stray = bytearray(soa_reply(query, rcode=dns.rcode.REFUSED))
        stray[0] ^= 0xFF  # another id: a late reply to someone else's query
        return [bytes(stray), soa_reply(query)]

    query_soa(udp_server(answer), APEX, 5.0)  # no NotReady


def test_a_refused_zone_says_so(udp_server: Callable[..., Listen]) -> None:
    server = udp_server(lambda q: [soa_reply(q, rcode=dns.rcode.REFUSED, soa=False)])
    with pytest.raises(NotReady) as info:
        query_soa(server, APEX, 5.0)
    assert str(info.value) == f"zone {APEX} not answered authoritatively by 127.0.0.1:{server.port} (REFUSED)"


def test_a_silent_server_times_out(udp_server: Callable[..., Listen]) -> None:
    server = udp_server(lambda q: [])
    with pytest.raises(NotReady) as info:
        query_soa(server, APEX, 0.2)
    assert str(info.value) == f"zone {APEX} not answered by 127.0.0.1:{server.port} (timeout 0.2 s)"


def test_nothing_listening_is_connection_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotReady) as info:
        query_soa(Listen("127.0.0.1", port), APEX, 5.0)
    assert str(info.value) == (
        f"zone {APEX} not answered by 127.0.0.1:{port} (connection refused: nothing listening)"
    )


# --- config -------------------------------------------------------------------------------------


def config_with(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(f"server:\n{server}zones: [{{origin: gslb.example.com, file: {ZONE}}}]\n")
    return path


METRICS = '  metrics_listen: "127.0.0.1:9153"\n'


def test_lame_duck_is_five_seconds_with_a_metrics_listener(tmp_path: Path) -> None:
    config = load(config_with(tmp_path, METRICS))
    assert (config.server.lame_duck_s, config.server.max_state_age_s) == (5.0, None)


def test_lame_duck_is_off_without_a_metrics_listener(tmp_path: Path) -> None:
    assert load(config_with(tmp_path, "  workers: 1\n")).server.lame_duck_s == 0.0


def test_both_keys_load(tmp_path: Path) -> None:
    config = load(config_with(tmp_path, METRICS + "  lame_duck_s: 0\n  max_state_age_s: 10\n"))
    assert (config.server.lame_duck_s, config.server.max_state_age_s) == (0.0, 10.0)


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        (
            "  lame_duck_s: 5\n",
            "server.lame_duck_s: needs server.metrics_listen (only its /readyz can say that the node "
            "is draining)",
        ),
        (METRICS + "  lame_duck_s: -1\n", "server.lame_duck_s: -1 is below 0"),
        (METRICS + "  max_state_age_s: 0\n", "server.max_state_age_s: 0 is below 0.1"),
        (METRICS + "  max_state_age_s: soon\n", "server.max_state_age_s: expected float, got 'soon'"),
    ],
    ids=["lame-duck-without-metrics", "negative-lame-duck", "zero-age", "text-age"],
)
def test_bad_values_are_errors_with_their_place(tmp_path: Path, server: str, problem: str) -> None:
    path = config_with(tmp_path, server)
    line = 1 + server.count("\n")  # the key is the last line of the server block
    with pytest.raises(ConfigError) as info:
        load(path)
    assert [p for p in info.value.problems if p.startswith(problem) and f"line {line}," in p], (
        info.value.problems
    )
