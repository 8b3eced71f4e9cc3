"""Response rate limiting: classes, buckets, slip, exemptions, ECS, with time as a parameter.

Replies come from a real handler (the example config with MaxMind's test GeoIP database), so
the limiter classifies exactly the bytes the server sends; `now` is passed in, never read.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import replace
from ipaddress import ip_network

import dns.flags
import dns.message
import pytest

from gslb.config.loader import load
from gslb.config.model import Config, RateLimit
from gslb.dns.handler import Handler
from gslb.dns.rrl import ALL, ANSWER, ECS, ERROR, NODATA, NXDOMAIN, RateLimiter, slipped
from gslb.health.view import HealthView
from gslb.responder import Parts, build_parts
from gslb.zone.name import from_text
from tests.server_fixture import EXAMPLE_CONFIG, GEOIP_DATA

A, NS, TXT, AAAA, PTR = 1, 2, 16, 28, 12
T0 = 1000.0  # a monotonic time to start from
RESOLVER = "198.18.0.53"


@pytest.fixture(scope="module")
def config() -> Config:
    base = load(EXAMPLE_CONFIG)
    return replace(base, geoip=replace(base.geoip, database=GEOIP_DATA / "GeoIP2-City-Test.mmdb"))


@pytest.fixture(scope="module")
def parts(config: Config) -> Parts:
    return build_parts(config, HealthView())


def query(
    name: str, qtype: int = A, *, qid: int = 1, edns: bool = False, ecs: tuple[int, bytes] | None = None
) -> bytes:
    """A query; `ecs` = (source prefix, address bytes) of an IPv4 client subnet."""
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns or ecs else 0)
    wire += from_text(name) + struct.pack("!HH", qtype, 1)
    if edns or ecs:
        options = b""
        if ecs is not None:
            data = struct.pack("!HBB", 1, ecs[0], 0) + ecs[1]
            options = struct.pack("!HH", 8, len(data)) + data
        wire += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return wire


def answer(handler: Handler, wire: bytes, peer: str = RESOLVER) -> bytes:
    reply = handler.handle(wire, peer)
    assert reply is not None
    return reply


def limiter(parts: Parts, **settings: object) -> RateLimiter:
    return RateLimiter(replace(RateLimit(), **settings), parts.zones)  # type: ignore[arg-type]


def run(
    rrl: RateLimiter,
    reply: bytes,
    count: int,
    *,
    peer: str = RESOLVER,
    start: float = T0,
    rate: float = 1000.0,
) -> Counter[str]:
    """Send `count` copies of `reply` through the limiter at `rate` a second; what came out."""
    out: Counter[str] = Counter()
    for i in range(count):
        sent = rrl.limit(reply, peer, start + i / rate)
        out["dropped" if sent is None else "slipped" if sent is not reply else "full"] += 1
    return out


# -- classes --

SUBJECTS: list[tuple[str, bytes, int, str]] = [
    ("answer", query("www.gslb.example.com."), ANSWER, "www"),
    ("answer-apex-ns", query("gslb.example.com.", NS), ANSWER, "apex"),
    ("nxdomain", query("no-such-name.gslb.example.com."), NXDOMAIN, "zone"),
    ("nxdomain-other-name", query("other.gslb.example.com."), NXDOMAIN, "zone"),
    ("nodata", query("gslb.example.com.", PTR), NODATA, "zone"),
    ("refused", query("example.org."), ERROR, ""),
    ("formerr", query("www.gslb.example.com.")[:-2], ERROR, ""),
    ("notimp", b"\x00\x01\x28\x00" + query("www.gslb.example.com.")[4:], ERROR, ""),
    ("wildcard", query("one.apps.gslb.example.com."), ANSWER, "wild"),
    ("wildcard-deeper", query("two.three.apps.gslb.example.com."), ANSWER, "wild"),
]


@pytest.mark.parametrize(("wire", "cls", "group"), [s[1:] for s in SUBJECTS], ids=[s[0] for s in SUBJECTS])
def test_replies_are_classified_as_bind_does(parts: Parts, wire: bytes, cls: int, group: str) -> None:
    """Answers by name and type; NXDOMAIN and NODATA by zone; errors together; answers from a
    wildcard as the wildcard's (one account for any name under `*.apps`)."""
    rrl = limiter(parts)
    found, subject, _ = rrl.classify(answer(parts.handler, wire))
    assert found == cls
    same_group = [s[1] for s in SUBJECTS if s[3] == group and s[2] == cls]
    for other in same_group:
        assert rrl.classify(answer(parts.handler, other))[1] == subject


def test_the_case_of_the_name_does_not_make_a_new_account(parts: Parts) -> None:
    rrl = limiter(parts)
    lower = rrl.classify(answer(parts.handler, query("www.gslb.example.com.")))
    mixed = rrl.classify(answer(parts.handler, query("WwW.GsLb.ExAmPlE.cOm.")))
    assert lower == mixed


def test_a_steered_answer_is_about_its_ecs_subnet_and_a_static_one_is_not(parts: Parts) -> None:
    rrl = limiter(parts)
    h = parts.handler

    def subject(name: str, address: bytes, source: int = 24, qtype: int = A) -> bytes:
        return rrl.classify(answer(h, query(name, qtype, ecs=(source, address))))[1]

    assert subject("www.gslb.example.com.", b"\x51\x02\x45") != subject(
        "www.gslb.example.com.", b"\x51\x02\x46"
    )
    # addresses of one /24 are one account (the configured prefix length), whatever they send
    assert subject("www.gslb.example.com.", b"\x51\x02\x45\x07", 32) == subject(
        "www.gslb.example.com.", b"\x51\x02\x45\x09", 32
    )
    assert subject("www.gslb.example.com.", b"\x51\x02\x45", qtype=AAAA) != subject(
        "www.gslb.example.com.", b"\x51\x02\x45"
    )
    # a static name: the same answer for every subnet, one account
    assert subject("gslb.example.com.", b"\x51\x02\x45", qtype=NS) == subject(
        "gslb.example.com.", b"\x59\x02\x45", qtype=NS
    )


# -- buckets --


def test_a_flood_gets_the_rate_then_nothing_until_it_has_been_quiet_for_the_window(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=10, window_s=5, slip=0)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    # 10x the rate for 10 s: the first second's credit, then the balance sits at its floor
    flood = run(rrl, reply, 1000, rate=100.0)
    assert flood["full"] == 10
    assert flood["dropped"] == 990
    # quiet for 2 s: still in debt (floor -50, +10 a second)
    assert rrl.limit(reply, RESOLVER, T0 + 12.0) is None
    # quiet for longer than the window: credit again
    assert rrl.limit(reply, RESOLVER, T0 + 20.0) is reply


def test_a_client_under_the_rate_is_never_limited(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=10)
    reply = answer(parts.handler, query("www.gslb.example.com."))
    assert run(rrl, reply, 95, rate=9.5)["full"] == 95


def test_every_class_has_its_own_rate(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=50, nxdomains_per_second=5, errors_per_second=2, slip=0)
    h = parts.handler
    assert run(rrl, answer(h, query("www.gslb.example.com.")), 100)["full"] == 50
    assert run(rrl, answer(h, query("nope.gslb.example.com.")), 100)["full"] == 5
    assert run(rrl, answer(h, query("example.org.")), 100)["full"] == 2
    assert rrl.totals.by_class[ANSWER] == 50
    assert rrl.totals.by_class[NXDOMAIN] == 95
    assert rrl.totals.by_class[ERROR] == 98


def test_a_rate_of_zero_does_not_limit_its_class(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=0, all_per_second=0)
    assert run(rrl, answer(parts.handler, query("www.gslb.example.com.")), 1000)["full"] == 1000
    assert rrl.table_size() == 0


def test_the_all_responses_account_limits_many_names_each_under_its_own_rate(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=100, all_per_second=30, slip=0)
    h = parts.handler
    replies = [
        answer(h, query(f"{name}.gslb.example.com.")) for name in ("www", "static", "api", "mail", "ns1")
    ]
    sent = sum(rrl.limit(replies[i % 5], RESOLVER, T0 + i / 1000) is not None for i in range(100))
    assert sent == 30
    assert rrl.totals.by_class[ALL] == 70


# -- networks --


def test_accounts_are_per_client_network(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=5, slip=0)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    assert run(rrl, reply, 50, peer="192.0.2.1")["full"] == 5
    assert run(rrl, reply, 50, peer="192.0.2.200")["full"] == 0  # the same /24
    assert run(rrl, reply, 50, peer="192.0.3.1")["full"] == 5  # another one
    assert run(rrl, reply, 50, peer="2001:db8:0:ff::1")["full"] == 5
    assert run(rrl, reply, 50, peer="2001:db8:0:ff:ffff::2")["full"] == 0  # the same /56
    assert run(rrl, reply, 50, peer="2001:db8:0:100::1")["full"] == 5


def test_prefix_lengths_are_configurable(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=5, slip=0, ipv4_prefix_length=32)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    assert run(rrl, reply, 50, peer="192.0.2.1")["full"] == 5
    assert run(rrl, reply, 50, peer="192.0.2.2")["full"] == 5
    assert rrl.network_of("192.0.2.2") == "192.0.2.2/32"


def test_exempt_networks_are_never_limited_and_hold_no_account(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=5, exempt=(ip_network("192.0.2.0/24"),))
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    assert run(rrl, reply, 500, peer="192.0.2.7")["full"] == 500
    assert rrl.table_size() == 0
    assert run(rrl, reply, 50, peer="192.0.3.7")["full"] == 5


# -- slip --


@pytest.mark.parametrize(("slip", "slipped_count"), [(0, 0), (1, 95), (2, 47), (3, 31)])
def test_every_slip_th_limited_reply_is_slipped(parts: Parts, slip: int, slipped_count: int) -> None:
    rrl = limiter(parts, responses_per_second=5, slip=slip)
    out = run(rrl, answer(parts.handler, query("gslb.example.com.", NS)), 100)
    assert out == Counter(full=5, slipped=slipped_count, dropped=95 - slipped_count) - Counter()
    assert (rrl.totals.slipped, rrl.totals.dropped) == (slipped_count, 95 - slipped_count)


SLIP_CASES = [
    ("apex-ns", query("gslb.example.com.", NS)),
    ("apex-ns-edns", query("gslb.example.com.", NS, edns=True)),
    ("steered-ecs", query("www.gslb.example.com.", ecs=(24, b"\x51\x02\x45"))),
    ("nxdomain-edns", query("nope.gslb.example.com.", edns=True)),
    ("refused", query("example.org.")),
    ("formerr", query("www.gslb.example.com.")[:-2]),
]


@pytest.mark.parametrize("wire", [c[1] for c in SLIP_CASES], ids=[c[0] for c in SLIP_CASES])
def test_a_slipped_reply_is_header_and_question_with_tc(parts: Parts, wire: bytes) -> None:
    """No larger than the query + 11 bytes (a bare OPT); resolvers see TC=1 and ask over TCP."""
    reply = answer(parts.handler, wire)
    small = slipped(reply)
    assert len(small) <= len(wire) + 11
    message = dns.message.from_wire(small)
    full = dns.message.from_wire(reply)
    assert message.flags & dns.flags.TC
    assert message.id == full.id
    assert (message.answer, message.authority, message.additional) == ([], [], [])
    assert message.question == full.question
    assert message.rcode() == full.rcode()
    assert (message.edns, message.payload) == (full.edns, full.payload)
    assert not message.options


# -- ECS --


def test_a_resolver_relaying_ecs_for_many_subnets_is_never_limited(parts: Parts) -> None:
    """The issue's case with the defaults: one address, 5,000 q/s for the steered name over
    10,000 client subnets (each asked about twice in 4 s)."""
    rrl = limiter(parts)
    h = parts.handler
    sent = 0
    for i in range(20_000):
        subnet = (i % 10_000).to_bytes(2, "big")
        reply = answer(h, query("www.gslb.example.com.", qid=i % 65536, ecs=(24, b"\x51" + subnet)))
        sent += rrl.limit(reply, RESOLVER, T0 + i / 5000) is reply
    assert sent == 20_000
    assert rrl.totals.limited == 0


def test_a_spoofed_flood_with_one_ecs_subnet_is_limited(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=10, slip=0)
    reply = answer(parts.handler, query("www.gslb.example.com.", ecs=(24, b"\x51\x02\x45")))
    assert run(rrl, reply, 1000, rate=100.0)["full"] == 10


def test_a_flood_cycling_ecs_subnets_meets_the_limit_of_their_sum(parts: Parts) -> None:
    """What the per-subnet accounts let through is capped by their sum per (network, name,
    type): `ecs_per_second`, or the all-responses account when it is lower."""
    rrl = limiter(parts, responses_per_second=10, ecs_per_second=1000, slip=0)
    h = parts.handler
    sent = 0
    for i in range(10_000):  # 10,000 q/s for 1 s, a new subnet each time
        reply = answer(h, query("www.gslb.example.com.", ecs=(24, b"\x51" + i.to_bytes(2, "big"))))
        sent += rrl.limit(reply, RESOLVER, T0 + i / 10_000) is reply
    assert sent == 1000
    assert rrl.totals.by_class[ECS] == 9000
    # other names of that resolver, and the subnets it asks about slowly, are not affected
    assert rrl.limit(answer(h, query("gslb.example.com.", NS)), RESOLVER, T0 + 0.5) is not None
    all_capped = limiter(parts, responses_per_second=10, ecs_per_second=0, all_per_second=500, slip=0)
    sent = 0
    for i in range(10_000):
        reply = answer(h, query("www.gslb.example.com.", ecs=(24, b"\x51" + i.to_bytes(2, "big"))))
        sent += all_capped.limit(reply, RESOLVER, T0 + i / 10_000) is reply
    assert sent == 500


# -- modes, table, reports --


def test_log_only_counts_and_sends_everything(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=5, log_only=True)
    out = run(rrl, answer(parts.handler, query("gslb.example.com.", NS)), 100)
    assert out["full"] == 100
    assert rrl.totals.logged == 95
    line = rrl.summary(10.0)
    assert line is not None and "95" in line and "log_only" in line


def test_the_table_stays_bounded_under_spoofed_random_sources(parts: Parts) -> None:
    rrl = limiter(parts, table_size=1000)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    for i in range(50_000):
        rrl.limit(reply, f"10.{i >> 8 & 255}.{i & 255}.1", T0 + i / 10_000)
        assert rrl.table_size() <= 1500 + 375  # young + old + what is left of the retired half
    assert rrl.table_size() >= 500


def test_an_active_account_survives_eviction(parts: Parts) -> None:
    """Entries are evicted a little at a time, oldest generation first: a flood that keeps
    its account busy stays limited while spoofed sources churn the table."""
    rrl = limiter(parts, table_size=1000, responses_per_second=5, slip=0)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    passed = 0
    for i in range(20_000):
        now = T0 + i / 10_000
        rrl.limit(reply, f"10.{i >> 8 & 255}.{i & 255}.1", now)
        passed += rrl.limit(reply, RESOLVER, now) is reply
    assert passed == 5  # the first second's credit; then +5 a second against a debt of -75


def test_one_summary_line_per_interval_naming_the_top_networks(parts: Parts) -> None:
    rrl = limiter(parts, responses_per_second=5)
    assert rrl.summary(10.0) is None
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    run(rrl, reply, 100, peer="192.0.2.1")
    run(rrl, reply, 20, peer="192.0.3.1")
    line = rrl.summary(10.0)
    assert line is not None
    assert "110 UDP replies limited" in line
    assert "192.0.2.0/24 95, 192.0.3.0/24 15" in line
    assert "answer 110" in line
    assert rrl.summary(10.0) is None  # counted once
    assert rrl.totals.limited == 110  # the totals for /metrics keep counting


def test_a_reload_with_the_same_settings_keeps_the_accounts(parts: Parts) -> None:
    settings = replace(RateLimit(), responses_per_second=5, slip=0)
    old = RateLimiter(settings, parts.zones)
    reply = answer(parts.handler, query("gslb.example.com.", NS))
    run(old, reply, 100)
    new = RateLimiter(settings, parts.zones)
    new.carry_over(old)
    assert new.limit(reply, RESOLVER, T0 + 0.5) is None
    assert new.totals.dropped == 96
    changed = RateLimiter(replace(settings, responses_per_second=6), parts.zones)
    changed.carry_over(old)
    assert changed.limit(reply, RESOLVER, T0 + 0.5) is reply
