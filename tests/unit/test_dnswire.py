"""The dns check's hand-packed query and reply parser, checked against dnspython."""

from __future__ import annotations

import contextlib

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.dnswire import (
    answer_matches,
    pack_query,
    parse_reply,
    qtype_code,
    rcode_code,
    rcode_name,
    read_name,
)


def test_query_is_what_dnspython_reads() -> None:
    wire = pack_query("www.Example.com.", qtype_code("AAAA"), 0x1234)
    msg = dns.message.from_wire(wire)
    assert msg.id == 0x1234
    assert msg.flags & dns.flags.QR == 0
    assert str(msg.question[0].name) == "www.Example.com."
    assert msg.question[0].rdtype == 28
    assert msg.edns == -1


def test_root_query() -> None:
    assert dns.message.from_wire(pack_query(".", 2, 1)).question[0].to_text() == ". IN NS"


def reply(*records: str, rcode: int = 0, qname: str = "www.example.com.", tc: bool = False) -> bytes:
    query = dns.message.make_query(qname, "A")
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.Rcode(rcode))
    for text in records:
        name, ttl, rdclass, rdtype, *data = text.split(maxsplit=4)
        response.answer.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, " ".join(data)))
    if tc:
        response.flags |= dns.flags.TC
    return response.to_wire()  # dnspython compresses names: exercises pointers


def test_parse_answers() -> None:
    wire = reply(
        "www.example.com. 30 IN CNAME Web.Example.com.",
        "web.example.com. 30 IN A 192.0.2.1",
        "web.example.com. 30 IN AAAA 2001:db8::1",
        'web.example.com. 30 IN TXT "hello" "world"',
        "web.example.com. 30 IN MX 10 mail.example.com.",
        "web.example.com. 30 IN TYPE999 \\# 3 abcdef",
    )
    parsed = parse_reply(wire)
    assert parsed.rcode == 0
    assert not parsed.truncated
    assert parsed.answers == (
        "web.example.com.",
        "192.0.2.1",
        "2001:db8::1",
        "helloworld",
        "10 mail.example.com.",
        "\\# 3 abcdef",
    )


def test_parse_rcode_and_tc() -> None:
    parsed = parse_reply(reply(rcode=dns.rcode.NXDOMAIN, tc=True))
    assert (parsed.rcode, parsed.truncated, parsed.answers) == (3, True, ())


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x01",
        pack_query("a.example.", 1, 1),  # a query, not a reply
        b"\x00\x01\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc",  # label past the end
        b"\x00\x01\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",  # pointer to itself
        b"\x00\x01\x80\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x09\x01",
    ],
    ids=["short", "query", "label-overrun", "pointer-loop", "rdata-overrun"],
)
def test_malformed_replies_raise_value_error(wire: bytes) -> None:
    with pytest.raises(ValueError):
        parse_reply(wire)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_value_error(wire: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_reply(wire)


def test_names_and_codes() -> None:
    assert qtype_code("a") == 1
    assert qtype_code("TYPE65") == 65
    assert rcode_code("nxdomain") == 3
    assert rcode_code("RCODE9") == 9
    assert rcode_name(5) == "REFUSED"
    assert rcode_name(11) == "RCODE11"
    for bad in ("BOGUS", "TYPE0", "TYPE70000"):
        with pytest.raises(ValueError):
            qtype_code(bad)
    with pytest.raises(ValueError):
        rcode_code("RCODE99")
    with pytest.raises(ValueError):
        pack_query("x" * 64 + ".example.", 1, 1)
    assert read_name(b"\x01A\x00", 0) == ("a.", 3)


@pytest.mark.parametrize(
    ("expected", "answers", "match"),
    [
        ("192.0.2.1", ("192.0.2.1",), True),
        ("2001:DB8:0::1", ("2001:db8::1",), True),
        ("Web.Example.com", ("web.example.com.",), True),
        ("192.0.2.2", ("192.0.2.1",), False),
        ("x", (), False),
    ],
)
def test_answer_matches(expected: str, answers: tuple[str, ...], match: bool) -> None:
    assert answer_matches(expected, answers) is match
