"""Master file reading: every problem with file and line, RDATA equal to dnspython's, escapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb.config.loader import load
from gslb.config.model import ZoneConfig
from gslb.dns.zonefile import _wire, load_zone_file, load_zones
from gslb.errors import ConfigError
from gslb.zone.codes import TYPE_A, TYPE_CNAME, TYPE_MX, TYPE_NS, TYPE_SRV, TYPE_TXT
from gslb.zone.name import from_text, key, labels
from gslb.zone.zone import Outcome, Record, Zones, build_zone
from tests.server_fixture import EXAMPLE_CONFIG, EXAMPLE_ZONE

ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"
ORIGIN = key(from_text("gslb.example.com."))
HEAD = """$ORIGIN gslb.example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 604800 60
@    IN NS  ns1
ns1  IN A   192.0.2.1
"""


def k(text: str) -> bytes:
    return key(from_text(text))


def problems_of(path: Path, origin: bytes = ORIGIN) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_zone_file(path, origin)
    return info.value.problems


# One fixture per problem; each holds one mistake after a valid head (SOA, NS, glue).
FIXTURE_PROBLEMS = [
    ("owner-outside-zone", 6, "notgslb.example.com. is outside the zone gslb.example.com."),
    ("owner-outside-label-boundary", 6, "x\\004gslb.example.com. is outside the zone gslb.example.com."),
    ("origin-outside-zone", 7, "www.example.com. is outside the zone gslb.example.com."),
    ("label-too-long", 6, f"'{'a' * 64}': label of 64 octets (at most 63)"),
    ("name-too-long", 6, f"'{'.'.join(['a' * 63] * 4)}': name of 274 octets (at most 255)"),
    ("bad-escape", 6, "'a\\\\1.x': \\DDD needs three digits up to 255"),
    ("unterminated-quote", 6, "unterminated quoted string"),
    ("trailing-backslash", 6, "a backslash at the end of the line escapes nothing"),
    ("unclosed-parenthesis", 6, "unbalanced parentheses: a '(' here is never closed"),
    ("stray-parenthesis", 6, "unbalanced parentheses: ')' without '('"),
    ("ttl-too-big", 6, "TTL 2147483648 is above 2147483647 seconds (RFC 2181 section 8)"),
    ("ttl-typo", 6, '"1x" is neither a TTL nor a record type'),
    ("ttl-missing", 4, "no TTL on the record and no $TTL before it"),
    ("ttl-directive-bad", 1, "$TTL takes one TTL"),
    ("class-ch", 6, "class CH is not served from zone files (only IN)"),
    ("no-first-owner", 1, "the first record needs an owner name"),
    ("no-type", 6, "the record has no type (and so no data)"),
    ("trailing-data", 6, "unexpected '192.0.2.3' after the A data"),
    ("missing-mx-data", 6, "MX data is missing its preference and exchange name"),
    ("missing-cname-data", 6, "CNAME data is missing its target name"),
    ("bad-ipv4", 6, 'A data "127.0.0.520" is not an IPv4 address'),
    (
        "cname-and-other-data",
        6,
        "alias.gslb.example.com. has a CNAME and other data (line 7; RFC 1034 section 3.6.2)",
    ),
    ("two-cnames", 7, "alias.gslb.example.com. has more than one CNAME (RFC 2181 section 10.1)"),
    ("ns-below-apex", 6, "NS at sub.gslb.example.com.: delegations below the apex are not supported"),
    ("soa-below-apex", 6, "SOA at sub.gslb.example.com. is not at the apex gslb.example.com."),
    ("two-soas", 6, "the zone gslb.example.com. needs exactly one SOA at its apex (a second)"),
]


@pytest.mark.parametrize(
    ("fixture", "line", "message"), FIXTURE_PROBLEMS, ids=[f for f, _, _ in FIXTURE_PROBLEMS]
)
def test_each_problem_names_file_and_line(fixture: str, line: int, message: str) -> None:
    path = ZONES / f"{fixture}.zone"
    assert problems_of(path) == (f"{path}, line {line}: {message}",)


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("no-ns", "the zone gslb.example.com. needs NS records at its apex"),
        ("no-soa", "the zone nosoa.test. needs exactly one SOA at its apex (there is none)"),
    ],
    ids=["no-ns", "no-soa"],
)
def test_zone_wide_problems_name_the_file(fixture: str, message: str) -> None:
    path = ZONES / f"{fixture}.zone"
    origin = k("nosoa.test.") if fixture == "no-soa" else ORIGIN
    assert problems_of(path, origin) == (f"{path}: {message}",)


def test_every_problem_is_reported_at_once() -> None:
    path = ZONES / "broken.zone"
    lines = [p.split(": ", 1)[0] for p in problems_of(path, k("broken.test."))]
    assert lines == [f"{path}, line {n}" for n in (6, 7, 8, 12, 10)]


def test_text_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.zone"
    path.write_bytes(HEAD.encode() + b'x IN TXT "caf\xe9"\n')
    assert problems_of(path) == (
        f"{path}, line 6: not UTF-8 text (byte 0xe9); write other octets in names and strings as "
        "\\DDD escapes",
    )


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.zone"
    assert problems_of(path) == (f"{path}: cannot read: No such file or directory",)


# RDATA: each encoder is strict and says which field is wrong.
RDATA_PROBLEMS = [
    ("A", "A data is missing its IPv4 address"),
    ("A 1.2.3", 'A data "1.2.3" is not an IPv4 address'),
    ("A 01.2.3.4", 'A data "01.2.3.4" is not an IPv4 address'),
    ("A 1.2.3.4.5", 'A data "1.2.3.4.5" is not an IPv4 address'),
    ("A 1.2.3.\u0664", 'A data "1.2.3.\u0664" is not an IPv4 address'),
    ("AAAA 2001:db8::g", 'AAAA data "2001:db8::g" is not an IPv6 address'),
    ("AAAA fe80::1%eth0", 'AAAA data "fe80::1%eth0" is not an IPv6 address'),
    ("AAAA 192.0.2.1", 'AAAA data "192.0.2.1" is not an IPv6 address'),
    ("CNAME a b", "unexpected 'b' after the CNAME data"),
    ('NS "ns1"', 'NS name server: "ns1": a domain name is not a quoted string'),
    ("PTR", "PTR data is missing its target name"),
    ("MX 70000 mail", 'MX preference "70000" is not a number from 0 to 65535'),
    ("MX -1 mail", 'MX preference "-1" is not a number from 0 to 65535'),
    ("MX 10", "MX data is missing its exchange name"),
    ("MX 10 a..b", "MX exchange name: 'a..b': empty label"),
    ("SRV 1 2 70000 sip", 'SRV port "70000" is not a number from 0 to 65535'),
    ("SRV 1 2 3", "SRV data is missing its target name"),
    ("SOA ns1 hm 1 1h 1x 1 1", 'SOA retry "1x" is not a TTL'),
    ("SOA ns1 hm 4294967296 1 1 1 1", 'SOA serial "4294967296" is not a number from 0 to 4294967295'),
    ("SOA ns1 hm 1 1 1 1", "SOA data is missing its minimum"),
    ("SOA ns1", "SOA data is missing its mailbox, serial, refresh, retry, expire and minimum"),
    ("TXT", "TXT data is missing its text (at least one string)"),
    (f'TXT "{"x" * 256}"', f'TXT string of 256 octets (at most 255): "{"x" * 39}...'),
    ('TXT "\\256"', 'TXT string: \\DDD needs three digits up to 255 in "\\256"'),
    ('TXT "\\25"', 'TXT string: \\DDD needs three digits up to 255 in "\\25"'),
    ('HINFO "x86"', "HINFO data is missing its OS"),
    ("HINFO a b c", "unexpected 'c' after the HINFO data"),
    ('CAA 0 is-sue "ca.test"', 'CAA tag "is-sue" is not 1 to 255 ASCII letters and digits'),
    ('CAA 256 issue "ca.test"', 'CAA flags "256" is not a number from 0 to 255'),
    ("CAA 0 issue", "CAA data is missing its value"),
    ("SSHFP 1 1 xyz0", "SSHFP fingerprint 'xyz0' is not hexadecimal octets"),
    ("SSHFP 1 1", "SSHFP data is missing its fingerprint"),
    ("TLSA 3 1 1 abc", "TLSA certificate data 'abc' is not hexadecimal octets"),
    ("TLSA 3 1", "TLSA data is missing its matching type and certificate data"),
    ("DNSKEY 256 3 8 AwEAAa==", "record type DNSKEY is not supported (supported: A, AAAA, CAA, CNAME"),
    ("300 300 A 192.0.2.2", '"300" is a second TTL'),
    ("IN A 192.0.2.2", "the class IN is given twice"),
    ("TXT \\# 3 616263", "the generic form \\# (RFC 3597) is not supported; write TXT data as text"),
]


@pytest.mark.parametrize(("data", "message"), RDATA_PROBLEMS, ids=[d[:24] for d, _ in RDATA_PROBLEMS])
def test_bad_rdata(tmp_path: Path, data: str, message: str) -> None:
    path = tmp_path / "bad.zone"
    path.write_text(f"{HEAD}x IN {data}\n" if not data[0].isdigit() else f"{HEAD}x {data}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}, line 6: {message}"), problem


def test_byte_order_mark_and_class1_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.zone"
    path.write_text("\ufeff" + HEAD + "x CLASS1 A 192.0.2.9\n", encoding="utf-8")
    assert load_zone_file(path, ORIGIN)[-1].rdata == bytes([192, 0, 2, 9])


def test_data_under_a_bad_owner_is_checked_but_not_reported_twice(tmp_path: Path) -> None:
    path = tmp_path / "owner.zone"
    path.write_text(f'{HEAD}other.test. IN A 192.0.2.2\n    IN TXT "fine"\n    IN A 1.2.3\n')
    assert problems_of(path) == (
        f"{path}, line 6: other.test. is outside the zone gslb.example.com.",
        f'{path}, line 8: A data "1.2.3" is not an IPv4 address',
    )


# Escaped names: a label may hold "." and any octet.
def test_escaped_dot_makes_one_label(tmp_path: Path) -> None:
    path = tmp_path / "escapes.zone"
    path.write_text(
        HEAD
        + "a\\.b      IN TXT 192.0.2.10\n"
        + "x\\.y      IN TXT 192.0.2.11\n"
        + '\\065bc    IN TXT "escaped \\"quote\\" \\\\ and \\010"\n'
        + "alias     IN CNAME x\\.y\n"
    )
    records = load_zone_file(path, ORIGIN)
    owners = {r.owner for r in records}
    assert b"\x03a.b" + ORIGIN in owners
    assert labels(k("a\\.b.gslb.example.com.")) == (b"a.b", b"gslb", b"example", b"com")
    assert k("abc.gslb.example.com.") in owners  # \065 is "A", folded to the key
    (txt,) = [r for r in records if r.rtype == TYPE_TXT and r.owner == k("abc.gslb.example.com.")]
    text = b'escaped "quote" \\ and \n'
    assert txt.rdata == bytes((len(text),)) + text
    assert txt.text == '"escaped \\"quote\\" \\\\ and \\010"'
    (alias,) = [r for r in records if r.rtype == TYPE_CNAME]
    assert alias.target == b"\x03x.y" + ORIGIN
    assert alias.text == "x\\.y.gslb.example.com."
    zones = Zones([build_zone(ORIGIN, records)])
    assert [r.text for r in zones.lookup(k("x\\.y.gslb.example.com."), TYPE_TXT).answers] == ['"192.0.2.11"']
    assert [r.text for r in zones.lookup(k("alias.gslb.example.com."), TYPE_TXT).answers] == [
        "x\\.y.gslb.example.com.",
        '"192.0.2.11"',
    ]
    # "x\.y" is one label: it does not make "y" exist
    assert zones.lookup(k("y.gslb.example.com."), TYPE_TXT).outcome is Outcome.NXDOMAIN
    assert zones.lookup(k("b.gslb.example.com."), TYPE_A).outcome is Outcome.NXDOMAIN


@given(st.text(alphabet="aZ09-_*.\\@é", min_size=1, max_size=70))
def test_plain_name_path_matches_from_text(token: str) -> None:
    origin = from_text("Gslb.Example.com.")
    try:
        expected: bytes | str = from_text(token, origin)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: bytes | str = _wire(token, origin)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


# Every supported type, several syntaxes each: our RDATA is dnspython's, byte for byte.
ROUND_TRIP = r"""
$TTL 1h
$ORIGIN gslb.example.com.
@   IN  SOA  ns1.gslb.example.com. host\.master.example.com. (
             2026112701 ; serial
             1h         ; refresh
             10m        ; retry
             1w         ; expire
             60 )       ; minimum
    IN  NS   ns1
    IN  NS   ns.elsewhere.test.
    IN  MX   10 mail
    IN  MX   20 Mail.Example.NET.
    IN  TXT  "v=spf1 -all"
    IN  TXT  unquoted tokens "and ; quoted" "(parens)" ""
    IN  TXT  "escapes: \" \\ \010 \255 \065" "héllo"
    IN  CAA  0 issue "letsencrypt.org"
    IN  CAA  128 tbs "Unknown"
    IN  CAA  0 iodef "mailto:security@example.com"
ns1 60 IN A  192.0.2.53
    IN 60 AAAA 2001:db8:53::1
    60  AAAA ::ffff:192.0.2.53
UPPER IN A 192.0.2.1
mail 1h30m IN A 192.0.2.25
null IN  MX  0 .
_sip._tcp IN SRV 10 60 5060 sip
_off._tcp IN SRV 0 0 0 .
host IN  HINFO "INTEL" "Linux 6"
     IN  HINFO unquoted tokens
     IN  SSHFP 1 1 dd465c09cfa51fb45020cc83316fff21b9ec74ac
     IN  SSHFP 4 2 ( 5a8e2a7c1e3f8b6d4c2a0e9f7b5d3c1a
                     0f2e4d6b8a9c7e5f3d1b2a4c6e8f0a1b )
_443._tcp.www IN TLSA 3 1 1 2bb5f7cbb1a9d1cf0d1d2e8d43f53a76aa6b2ed4d9e8ffc0c4f0a6a2b8d3c1e0
alias IN CNAME www
ext   IN CNAME docs.example.net.
a\.b  IN TXT   "an escaped dot (a host name could not have it)"
sp\032ace IN PTR x\.y.example.org.
$ORIGIN 2.0.192.in-addr.arpa.gslb.example.com.
10    IN PTR static.gslb.example.com.
11    IN PTR host
$ORIGIN gslb.example.com.
wild  IN A 192.0.2.90
*.apps IN TXT "wildcard"
"""


def _ours(records: list[Record]) -> dict[tuple[bytes, int], tuple[int, list[bytes]]]:
    out: dict[tuple[bytes, int], tuple[int, list[bytes]]] = {}
    for r in records:
        ttl, rdatas = out.setdefault((r.owner, r.rtype), (r.ttl, []))
        assert ttl == r.ttl
        rdatas.append(r.rdata)
    return {k: (ttl, sorted(rdatas)) for k, (ttl, rdatas) in out.items()}


def test_rdata_is_what_dnspython_makes(tmp_path: Path) -> None:
    path = tmp_path / "all.zone"
    path.write_text(ROUND_TRIP, encoding="utf-8")
    records = load_zone_file(path, ORIGIN)
    theirs = {}
    for name, rdataset in dns.zone.from_text(
        ROUND_TRIP, "gslb.example.com.", relativize=False
    ).iterate_rdatasets():
        owner = name.to_wire()
        assert owner is not None
        theirs[key(owner), int(rdataset.rdtype)] = (rdataset.ttl, sorted(rd.to_wire() for rd in rdataset))
    assert _ours(records) == theirs
    assert len(theirs) == 23  # every RRset above reached both parsers


def test_text_is_a_presentation_form_of_the_rdata(tmp_path: Path) -> None:
    path = tmp_path / "all.zone"
    path.write_text(ROUND_TRIP, encoding="utf-8")
    for record in load_zone_file(path, ORIGIN):
        again = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.RdataType(record.rtype), record.text)
        assert again.to_wire() == record.rdata, record.text


def test_targets_are_keys_of_the_names_in_rdata(tmp_path: Path) -> None:
    path = tmp_path / "all.zone"
    path.write_text(ROUND_TRIP, encoding="utf-8")
    targets = {(r.owner, r.rtype, r.target) for r in load_zone_file(path, ORIGIN) if r.target is not None}
    assert (ORIGIN, TYPE_MX, k("mail.example.net.")) in targets
    assert (ORIGIN, TYPE_NS, k("ns1.gslb.example.com.")) in targets
    assert (k("null.gslb.example.com."), TYPE_MX, b"\x00") in targets
    assert (k("_sip._tcp.gslb.example.com."), TYPE_SRV, k("sip.gslb.example.com.")) in targets
    assert (k("alias.gslb.example.com."), TYPE_CNAME, k("www.gslb.example.com.")) in targets
    assert all(t in (TYPE_NS, TYPE_CNAME, TYPE_MX, TYPE_SRV) for _, t, _ in targets)


def test_duplicate_records_are_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "dup.zone"
    path.write_text(HEAD + "x IN A 192.0.2.7\nX 60 IN A 192.0.2.7\n")
    assert [r.ttl for r in load_zone_file(path, ORIGIN) if r.owner == k("x.gslb.example.com.")] == [300]


def test_a_large_generated_zone_loads(tmp_path: Path) -> None:
    lines = [HEAD]
    for i in range(20_000 - 3):
        kind = i % 5
        if kind == 0:
            lines.append(f"h{i} 60 IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")
        elif kind == 1:
            lines.append(f"h{i} IN AAAA 2001:db8::{i:x}\n")
        elif kind == 2:
            lines.append(f'h{i} IN TXT "v=spf1 include:_spf{i}.example.com -all" "two"\n')
        elif kind == 3:
            lines.append(f"h{i} IN MX 10 mail{i}.example.net.\n")
        else:
            lines.append(f"h{i} IN CNAME h{i - 4}\n")
    path = tmp_path / "large.zone"
    path.write_text("".join(lines))
    records = load_zone_file(path, ORIGIN)
    assert len(records) == 20_000
    zones = Zones([build_zone(ORIGIN, records)])
    answer = zones.lookup(k("h19994.gslb.example.com."), TYPE_A)
    assert [r.text for r in answer.answers] == ["h19990.gslb.example.com.", "10.0.78.22"]


# load_zones: services and several zones, every problem in one error.
def test_a_service_name_may_not_have_static_addresses(tmp_path: Path) -> None:
    config = load(EXAMPLE_CONFIG)
    path = tmp_path / "example.zone"
    path.write_text(EXAMPLE_ZONE.read_text() + "www IN AAAA 2001:db8::99\n")
    line = len(path.read_text().splitlines())
    broken = dataclasses.replace(config, zones=(dataclasses.replace(config.zones[0], file=path),))
    with pytest.raises(ConfigError) as info:
        load_zones(broken)
    assert info.value.problems == (
        f"{path}, line {line}: www.gslb.example.com. is a service (see {config.source}); "
        "remove its static A/AAAA/CNAME records",
    )


def test_problems_of_every_zone_come_together() -> None:
    config = load(EXAMPLE_CONFIG)
    zones = (
        ZoneConfig("gslb.example.com.", ZONES / "bad-ipv4.zone"),
        ZoneConfig("broken.test.", ZONES / "broken.zone"),
    )
    with pytest.raises(ConfigError) as info:
        load_zones(dataclasses.replace(config, zones=zones))
    assert len(info.value.problems) == 1 + 5
    assert info.value.source == str(config.source)


def test_services_are_keyed_by_name() -> None:
    zones = load_zones(load(EXAMPLE_CONFIG))
    (zone,) = zones.all()
    assert set(zone.services) == {k("www.gslb.example.com.")}


def test_a_service_counts_as_an_address_for_targets(tmp_path: Path) -> None:
    """An MX to a service: the zone file has no A record for it, the service answers A."""
    config = load(EXAMPLE_CONFIG)
    path = tmp_path / "example.zone"
    path.write_text(EXAMPLE_ZONE.read_text() + "mx2 IN MX 10 www\n")
    broken = dataclasses.replace(config, zones=(dataclasses.replace(config.zones[0], file=path),))
    assert load_zones(broken)
    line = len(path.read_text().splitlines())
    assert problems_of(path) == (
        f"{path}, line {line}: MX exchange name www.gslb.example.com. is in the zone but has no A or AAAA "
        "record",
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (HEAD + "x IN TXT a\x0cb\n", 6, "control character U+000C"),
        (HEAD + "x IN TXT (a\n b\x00 )\n", 7, "control character U+0000"),
        (HEAD.replace("\n", "\r\n") + "x IN TXT a\rb\n", 6, "control character U+000D"),
    ],
    ids=["form-feed", "nul-inside-parentheses", "lone-carriage-return"],
)
def test_control_characters_are_refused_on_their_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "control.zone"
    path.write_bytes(text.encode())
    problems = problems_of(path)
    assert problems[0].startswith(f"{path}, line {line}: {message}"), problems
