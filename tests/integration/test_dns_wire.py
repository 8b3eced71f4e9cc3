"""DNS behaviour of DESIGN.md section 5, over real UDP and TCP against a real `gslb serve`.

Every wire behaviour runs over both transports. Queries are built with dnspython where it can
express them and by hand (bytes) where it cannot: malformed messages, odd header bits, raw
EDNS options. One server per module serves the tests that do not change it; its log is checked
at teardown for crashes and for queries answered SERVFAIL because of a bug.
"""

from __future__ import annotations

import socket
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_fixture import BASIC_CONFIG, GslbProcess, read_tcp_message, start_gslb

pytestmark = pytest.mark.integration

# --- header bits and constants -----------------------------------------------------------------

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
Z = 0x0040
AD = 0x0020
CD = 0x0010

ZONE = "gslb.example.com."
WWW = "www.gslb.example.com."
NEGATIVE_TTL = 60  # min(SOA TTL 300, SOA MINIMUM 60) in zones/gslb.example.com.zone
SERVICE_TTL = 30
WWW_V4 = {"192.0.2.10", "192.0.2.11", "198.51.100.10", "198.51.100.11", "203.0.113.10", "203.0.113.11"}
WWW_V6 = {"2001:db8:a::10", "2001:db8:b::10", "2001:db8:c::10"}

TIMEOUT_S = 2.0
SILENCE_S = 0.3  # how long we wait to conclude that no reply is coming

over_both = pytest.mark.parametrize("transport", ["udp", "tcp"], ids=["udp", "tcp"])

# --- sending ------------------------------------------------------------------------------------


def exchange(
    server: GslbProcess, wire: bytes, transport: str, *, timeout_s: float = TIMEOUT_S
) -> bytes | None:
    """Send raw bytes as one DNS message; the raw reply, or None when none came in time."""
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(server.address)
            sock.send(wire)
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None
    with socket.create_connection(server.address, timeout=timeout_s) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        return read_tcp_message(sock)


def ask(server: GslbProcess, query: dns.message.Message, transport: str) -> dns.message.Message:
    """Send a dnspython query, parse the reply and check that it belongs to the query."""
    wire = exchange(server, query.to_wire(), transport)
    assert wire is not None, f"no reply over {transport} to:\n{query}"
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    assert reply.flags & dns.flags.QR
    return reply


def make(
    name: str,
    rdtype: str | int = "A",
    rdclass: str | int = "IN",
    *,
    flags: int = RD,
    edns: int | None = None,
    payload: int = 1232,
    ednsflags: int = 0,
    options: list[dns.edns.Option] | None = None,
) -> dns.message.QueryMessage:
    """A query; `edns=None` sends no OPT record."""
    query = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(rdtype),
        dns.rdataclass.RdataClass.make(rdclass),
        use_edns=edns if edns is not None else False,
        payload=payload,
        ednsflags=ednsflags,
        options=options,
    )
    query.flags = flags
    return query


# --- hand-built messages ------------------------------------------------------------------------


def name_wire(name: str) -> bytes:
    labels = [label.encode() for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def header(
    *, qid: int = 0x4A4A, flags: int = RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name: str = WWW, qtype: int = 1, qclass: int = 1) -> bytes:
    return name_wire(name) + struct.pack("!HH", qtype, qclass)


def record(owner: bytes, rtype: int = 1, rclass: int = 1, ttl: int = 0, rdata: bytes = b"") -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def opt_record(
    *,
    payload: int = 1232,
    version: int = 0,
    flags: int = 0,
    options: bytes = b"",
    owner: bytes = b"\x00",
    rdlength: int | None = None,
) -> bytes:
    ttl = (version << 16) | flags
    length = len(options) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", 41, payload, ttl, length) + options


def ecs(family: int, source: int, scope: int, address: bytes) -> bytes:
    return option(8, struct.pack("!HBB", family, source, scope) + address)


def query_wire(
    name: str = WWW, qtype: int = 1, qclass: int = 1, *, qid: int = 0x4A4A, flags: int = RD, opt: bytes = b""
) -> bytes:
    return header(qid=qid, flags=flags, ar=1 if opt else 0) + question(name, qtype, qclass) + opt


def reply_flags(wire: bytes) -> int:
    return int.from_bytes(wire[2:4], "big")


def reply_counts(wire: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    return qd, an, ns, ar


def rcode_of(wire: bytes) -> int:
    return reply_flags(wire) & 0xF


def texts(reply: dns.message.Message, rdtype: str) -> set[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return {rdata.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rdata in rrset}


def assert_negative(reply: dns.message.Message, rcode: dns.rcode.Rcode, ttl: int = NEGATIVE_TTL) -> None:
    """RFC 2308: the zone SOA alone in authority, with TTL min(SOA TTL, SOA MINIMUM)."""
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AA
    assert len(reply.authority) == 1
    soa = reply.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text(ZONE)
    assert soa.ttl == ttl


def assert_alive(server: GslbProcess, transport: str) -> None:
    """The server still answers a normal query (after something nasty)."""
    reply = ask(server, make("static.gslb.example.com", "A"), transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply, "A") == {"192.0.2.80"}


def server_ecs(reply: dns.message.Message) -> dns.edns.ECSOption | None:
    found = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    assert len(found) <= 1
    return found[0] if found else None


def server_nsid(reply: dns.message.Message) -> bytes | None:
    found = [o for o in reply.options if o.otype == dns.edns.OptionType.NSID]
    assert len(found) <= 1
    if not found:
        return None
    nsid = found[0]
    return nsid.nsid if isinstance(nsid, dns.edns.NSIDOption) else nsid.to_wire()


def assert_healthy_log(server: GslbProcess) -> None:
    assert server.proc.poll() is None, f"gslb exited:\n{server.output()}"
    log = server.output()
    assert "Traceback" not in log, log
    assert "bug while answering" not in log, log


# --- servers ------------------------------------------------------------------------------------


def start(tmp: Path, config: str) -> GslbProcess:
    """`start_gslb`, minus the ResourceWarning of the log file it leaves open in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return start_gslb(tmp, config)


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """One server with the basic test config, shared by the module (the tests only read)."""
    server = start(tmp_path_factory.mktemp("wire"), BASIC_CONFIG)
    yield server
    assert_healthy_log(server)
    server.stop()


def _big_zone(path: Path) -> Path:
    """Names with 4, 8 and 40 TXT records of 100 bytes; SOA TTL 45 < MINIMUM 3600."""
    lines = [
        f"$ORIGIN {ZONE}",
        "$TTL 300",
        "@ 45 IN SOA ns1 hostmaster.example.com. 1 3600 600 604800 3600",
        "  IN NS ns1",
        "ns1 IN A 203.0.113.53",
    ]
    for count in (4, 8, 40):
        lines += [f't{count} IN TXT "{index:03d}{"x" * 96}"' for index in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def big_responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """A server whose zone has answers of about 500, 950 and 4600 bytes (t4, t8, t40)."""
    tmp = tmp_path_factory.mktemp("big")
    zone = _big_zone(tmp / "big.zone")
    server = start(tmp, BASIC_CONFIG.replace("file: {zone}", f"file: {zone}"))
    yield server
    assert_healthy_log(server)
    server.stop()


@pytest.fixture(scope="module")
def anonymous_responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """A server with no `server.identity`: no NSID, no CHAOS answers."""
    config = "\n".join(line for line in BASIC_CONFIG.splitlines() if "identity:" not in line)
    server = start(tmp_path_factory.mktemp("anonymous"), config)
    yield server
    assert_healthy_log(server)
    server.stop()


# --- header flags -------------------------------------------------------------------------------


@over_both
def test_authoritative_answer_has_aa_and_no_ra(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make(WWW, "A"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA
    addresses = texts(reply, "A")
    assert addresses
    assert addresses <= WWW_V4
    assert all(rrset.ttl == SERVICE_TTL for rrset in reply.answer)


@over_both
@pytest.mark.parametrize("rd", [0, RD], ids=["rd0", "rd1"])
def test_rd_is_copied(responder: GslbProcess, transport: str, rd: int) -> None:
    reply = exchange(responder, query_wire("static.gslb.example.com", flags=rd), transport)

    assert reply is not None
    assert reply_flags(reply) & RD == rd
    assert not reply_flags(reply) & RA


@over_both
@pytest.mark.parametrize("cd", [0, CD], ids=["cd0", "cd1"])
def test_cd_is_copied(responder: GslbProcess, transport: str, cd: int) -> None:
    reply = exchange(responder, query_wire("static.gslb.example.com", flags=RD | cd), transport)

    assert reply is not None
    assert reply_flags(reply) & CD == cd


@over_both
def test_z_and_ad_are_never_echoed(responder: GslbProcess, transport: str) -> None:
    reply = exchange(responder, query_wire("static.gslb.example.com", flags=RD | Z | AD), transport)

    assert reply is not None
    flags = reply_flags(reply)
    assert flags & QR
    assert flags & AA
    assert not flags & Z
    assert not flags & AD
    assert rcode_of(reply) == dns.rcode.NOERROR


@over_both
def test_ra_is_clear_even_when_the_query_sets_it(responder: GslbProcess, transport: str) -> None:
    reply = exchange(responder, query_wire("static.gslb.example.com", flags=RD | RA), transport)

    assert reply is not None
    assert not reply_flags(reply) & RA


# --- answers from the zone ----------------------------------------------------------------------

STATIC_ANSWERS = {
    "static-A": ("static.gslb.example.com", "A", {"192.0.2.80"}),
    "static-AAAA": ("static.gslb.example.com", "AAAA", {"2001:db8::80"}),
    "apex-MX": (ZONE, "MX", {"10 mail.gslb.example.com."}),
    "apex-TXT": (ZONE, "TXT", {'"v=spf1 -all"'}),
    "apex-CAA": (ZONE, "CAA", {'0 issue "letsencrypt.org"'}),
    "ptr": ("80.2.0.192.in-addr.arpa.gslb.example.com", "PTR", {"static.gslb.example.com."}),
}


@over_both
@pytest.mark.parametrize(("name", "rdtype", "expected"), STATIC_ANSWERS.values(), ids=STATIC_ANSWERS.keys())
def test_static_records_are_served(
    responder: GslbProcess, transport: str, name: str, rdtype: str, expected: set[str]
) -> None:
    reply = ask(responder, make(name, rdtype), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply, rdtype) == expected
    assert all(rrset.ttl == 300 for rrset in reply.answer)
    assert not reply.authority


@over_both
def test_service_aaaa_is_steered(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make(WWW, "AAAA"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    addresses = texts(reply, "AAAA")
    assert addresses
    assert addresses <= WWW_V6


# --- negative answers ---------------------------------------------------------------------------

NXDOMAIN_CASES = {
    "unknown-name": ("nope.gslb.example.com", "A"),
    "unknown-name-txt": ("nope.gslb.example.com", "TXT"),
    "below-a-leaf": ("a.b.static.gslb.example.com", "A"),
    "below-the-service": ("x.www.gslb.example.com", "A"),
}


@over_both
@pytest.mark.parametrize(("name", "rdtype"), NXDOMAIN_CASES.values(), ids=NXDOMAIN_CASES.keys())
def test_nxdomain_carries_the_soa_with_the_negative_ttl(
    responder: GslbProcess, transport: str, name: str, rdtype: str
) -> None:
    reply = ask(responder, make(name, rdtype), transport)

    assert_negative(reply, dns.rcode.NXDOMAIN)
    assert not reply.answer


NODATA_CASES = {
    "other-type": ("static.gslb.example.com", "MX"),
    "empty-non-terminal": ("apps.gslb.example.com", "A"),
    "empty-non-terminal-in-addr": ("2.0.192.in-addr.arpa.gslb.example.com", "PTR"),
    "unknown-type": ("static.gslb.example.com", "TYPE65280"),
    "unknown-type-at-apex": (ZONE, "TYPE1234"),
    "service-txt": (WWW, "TXT"),
    "service-unknown-type": (WWW, "TYPE65280"),
    "wildcard-other-type": ("foo.apps.gslb.example.com", "MX"),
}


@over_both
@pytest.mark.parametrize(("name", "rdtype"), NODATA_CASES.values(), ids=NODATA_CASES.keys())
def test_nodata_carries_the_soa_with_the_negative_ttl(
    responder: GslbProcess, transport: str, name: str, rdtype: str
) -> None:
    reply = ask(responder, make(name, rdtype), transport)

    assert_negative(reply, dns.rcode.NOERROR)
    assert not reply.answer


@over_both
@pytest.mark.parametrize("rdtype", ["A", "TXT"], ids=["nxdomain", "nodata"])
def test_negative_ttl_is_the_soa_ttl_when_that_is_lower(
    big_responder: GslbProcess, transport: str, rdtype: str
) -> None:
    name = "nope.gslb.example.com" if rdtype == "A" else "ns1.gslb.example.com"
    rcode = dns.rcode.NXDOMAIN if rdtype == "A" else dns.rcode.NOERROR

    reply = ask(big_responder, make(name, rdtype), transport)

    assert_negative(reply, rcode, ttl=45)


# --- wildcards, CNAMEs, glue --------------------------------------------------------------------


@over_both
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("foo.apps.gslb.example.com", "A", "192.0.2.90"),
        ("a.b.apps.gslb.example.com", "A", "192.0.2.90"),
        ("foo.apps.gslb.example.com", "TXT", '"wildcard"'),
    ],
    ids=["A", "two-labels-below", "TXT"],
)
def test_wildcard_answer_takes_the_query_name_as_owner(
    responder: GslbProcess, transport: str, name: str, rdtype: str, expected: str
) -> None:
    reply = ask(responder, make(name, rdtype), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert len(reply.answer) == 1
    assert reply.answer[0].name == dns.name.from_text(name)
    assert texts(reply, rdtype) == {expected}


@over_both
def test_cname_is_chased_inside_our_zone_to_the_service(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("api.gslb.example.com", "A"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    cname, addresses = reply.answer
    assert cname.rdtype == dns.rdatatype.CNAME
    assert cname.name == dns.name.from_text("api.gslb.example.com")
    assert [r.to_text() for r in cname] == [WWW]
    assert addresses.rdtype == dns.rdatatype.A
    assert addresses.name == dns.name.from_text(WWW)
    assert addresses.ttl == SERVICE_TTL
    assert {r.to_text() for r in addresses} <= WWW_V4


@over_both
def test_cname_chain_ending_in_nodata_carries_the_soa(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("api.gslb.example.com", "MX"), transport)

    assert_negative(reply, dns.rcode.NOERROR)
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.CNAME]


@over_both
def test_cname_leaving_our_zones_is_not_followed(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("docs.gslb.example.com", "A"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert len(reply.answer) == 1
    assert reply.answer[0].rdtype == dns.rdatatype.CNAME
    assert texts(reply, "CNAME") == {"docs.example.net."}
    assert not reply.authority


@over_both
def test_cname_query_returns_the_cname_itself(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("api.gslb.example.com", "CNAME"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply, "CNAME") == {WWW}
    assert len(reply.answer) == 1


def _additional(reply: dns.message.Message) -> set[tuple[str, str]]:
    return {
        (rrset.name.to_text(), rdata.to_text())
        for rrset in reply.additional
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    }


GLUE_CASES = {
    "apex-NS": (
        (ZONE, "NS"),
        {"ns1.gslb.example.com.", "ns2.gslb.example.com."},
        {
            ("ns1.gslb.example.com.", "203.0.113.53"),
            ("ns1.gslb.example.com.", "2001:db8:53::1"),
            ("ns2.gslb.example.com.", "198.51.100.53"),
            ("ns2.gslb.example.com.", "2001:db8:53::2"),
        },
    ),
    "SRV": (
        ("_sip._tcp.gslb.example.com", "SRV"),
        {"10 60 5060 sip.gslb.example.com."},
        {("sip.gslb.example.com.", "192.0.2.60")},
    ),
    "MX": ((ZONE, "MX"), {"10 mail.gslb.example.com."}, {("mail.gslb.example.com.", "192.0.2.25")}),
}


@over_both
@pytest.mark.parametrize(("asked", "answer", "glue"), GLUE_CASES.values(), ids=GLUE_CASES.keys())
def test_targets_in_our_zone_come_with_their_addresses(
    responder: GslbProcess,
    transport: str,
    asked: tuple[str, str],
    answer: set[str],
    glue: set[tuple[str, str]],
) -> None:
    name, rdtype = asked
    reply = ask(responder, make(name, rdtype), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply, rdtype) == answer
    assert _additional(reply) == glue


# --- not ours -----------------------------------------------------------------------------------

OUTSIDE_NAMES = {
    "other-domain": "example.org",
    "parent-zone": "example.com",
    "sibling": "www.example.com",
    "suffix-lookalike": "xgslb.example.com",
    "zone-name-as-label": "gslb.example.com.evil.net",
    "tld": "com",
    "root": ".",
}


@over_both
@pytest.mark.parametrize("name", OUTSIDE_NAMES.values(), ids=OUTSIDE_NAMES.keys())
def test_names_outside_our_zones_are_refused_without_referral(
    responder: GslbProcess, transport: str, name: str
) -> None:
    reply = ask(responder, make(name, "A"), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert not reply.authority
    assert not [rrset for rrset in reply.additional if rrset.rdtype != dns.rdatatype.OPT]


@over_both
@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"], ids=["AXFR", "IXFR"])
def test_zone_transfers_are_refused(responder: GslbProcess, transport: str, rdtype: str) -> None:
    reply = ask(responder, make(ZONE, rdtype, flags=0), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


@over_both
def test_ixfr_with_the_client_soa_in_authority_is_refused(responder: GslbProcess, transport: str) -> None:
    """RFC 1995 section 3: an IXFR query carries the client's SOA in its authority section."""
    query = make(ZONE, "IXFR", flags=0)
    query.authority.append(
        dns.rrset.from_text(ZONE, 0, "IN", "SOA", "ns1.gslb.example.com. hostmaster.example.com. 1 0 0 0 0")
    )

    reply = ask(responder, query, transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


# --- opcodes ------------------------------------------------------------------------------------

OPCODES = {"IQUERY": 1, "STATUS": 2, "unassigned-3": 3, "NOTIFY": 4, "UPDATE": 5, "DSO": 6, "15": 15}


@over_both
@pytest.mark.parametrize("opcode", OPCODES.values(), ids=OPCODES.keys())
def test_unknown_opcode_is_notimp_with_only_qr_and_opcode(
    responder: GslbProcess, transport: str, opcode: int
) -> None:
    every_other_bit = AA | TC | RD | RA | Z | AD | CD
    wire = query_wire(ZONE, 6, qid=0xBEEF, flags=(opcode << 11) | every_other_bit)

    reply = exchange(responder, wire, transport)

    assert reply is not None
    assert reply == header(qid=0xBEEF, flags=QR | (opcode << 11) | dns.rcode.NOTIMP, qd=0)


# --- classes ------------------------------------------------------------------------------------


@over_both
def test_class_any_is_served_like_in(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("static.gslb.example.com", "A", "ANY"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert reply.question[0].rdclass == dns.rdataclass.ANY
    assert texts(reply, "A") == {"192.0.2.80"}
    assert reply.answer[0].rdclass == dns.rdataclass.IN


CHAOS_NAMES = {"id.server": "test-node", "hostname.bind": "test-host", "version.bind": "gslb-test"}


@over_both
@pytest.mark.parametrize(("name", "text"), CHAOS_NAMES.items(), ids=CHAOS_NAMES.keys())
def test_chaos_identity_is_answered_when_configured(
    responder: GslbProcess, transport: str, name: str, text: str
) -> None:
    reply = ask(responder, make(name, "TXT", "CH"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer) == 1
    rrset = reply.answer[0]
    assert rrset.rdclass == dns.rdataclass.CH
    assert rrset.name == dns.name.from_text(name)
    assert texts(reply, "TXT") == {f'"{text}"'}


@over_both
@pytest.mark.parametrize("name", ["authors.bind", "foo.example", WWW], ids=["authors.bind", "other", "www"])
def test_chaos_names_not_configured_are_refused(responder: GslbProcess, transport: str, name: str) -> None:
    reply = ask(responder, make(name, "TXT", "CH"), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


@over_both
@pytest.mark.parametrize("name", CHAOS_NAMES.keys(), ids=CHAOS_NAMES.keys())
def test_chaos_identity_is_refused_without_an_identity(
    anonymous_responder: GslbProcess, transport: str, name: str
) -> None:
    reply = ask(anonymous_responder, make(name, "TXT", "CH"), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


OTHER_CLASSES = {"CSNET": 2, "HS": 4, "NONE": 254, "private": 65280}


@over_both
@pytest.mark.parametrize("rdclass", OTHER_CLASSES.values(), ids=OTHER_CLASSES.keys())
def test_other_classes_are_refused(responder: GslbProcess, transport: str, rdclass: int) -> None:
    reply = ask(responder, make(WWW, "A", rdclass), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert not reply.flags & dns.flags.AA


# --- query types --------------------------------------------------------------------------------

META_TYPES = {"0": 0, "128": 128, "TKEY": 249, "TSIG": 250, "MAILB": 253, "MAILA": 254, "200": 200}


@over_both
@pytest.mark.parametrize("qtype", META_TYPES.values(), ids=META_TYPES.keys())
def test_qtype_zero_and_meta_types_are_notimp(responder: GslbProcess, transport: str, qtype: int) -> None:
    reply = exchange(responder, query_wire("static.gslb.example.com", qtype), transport)

    assert reply is not None
    assert rcode_of(reply) == dns.rcode.NOTIMP
    assert reply_counts(reply)[1:3] == (0, 0)


def assert_minimal_any(reply: dns.message.Message) -> None:
    """RFC 8482 section 4: one RRset of those that exist, or a single synthesised HINFO."""
    assert len(reply.answer) == 1
    if reply.answer[0].rdtype == dns.rdatatype.HINFO:
        assert len(reply.answer[0]) == 1


ANY_CASES = {
    "apex": (ZONE, {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.TXT}),
    "service": (WWW, {dns.rdatatype.A, dns.rdatatype.AAAA}),
    "static": ("static.gslb.example.com", {dns.rdatatype.A, dns.rdatatype.AAAA}),
}


@over_both
@pytest.mark.parametrize(("name", "full"), ANY_CASES.values(), ids=ANY_CASES.keys())
def test_any_is_minimal_over_udp_and_full_over_tcp(
    responder: GslbProcess, transport: str, name: str, full: set[dns.rdatatype.RdataType]
) -> None:
    reply = ask(responder, make(name, "ANY"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    if transport == "udp":
        assert_minimal_any(reply)
    else:
        assert full <= {rrset.rdtype for rrset in reply.answer}


# --- EDNS ---------------------------------------------------------------------------------------

EDNS_QUESTIONS = {
    "answer": ("static.gslb.example.com", "A", "IN"),
    "nxdomain": ("nope.gslb.example.com", "A", "IN"),
    "nodata": ("static.gslb.example.com", "MX", "IN"),
    "refused": ("example.org", "A", "IN"),
    "chaos": ("id.server", "TXT", "CH"),
    "steered": (WWW, "A", "IN"),
}


@over_both
@pytest.mark.parametrize("with_edns", [False, True], ids=["no-edns", "edns"])
@pytest.mark.parametrize("asked", EDNS_QUESTIONS.values(), ids=EDNS_QUESTIONS.keys())
def test_opt_in_the_reply_iff_the_query_had_one(
    responder: GslbProcess, transport: str, with_edns: bool, asked: tuple[str, str, str]
) -> None:
    name, rdtype, rdclass = asked
    reply = ask(responder, make(name, rdtype, rdclass, edns=0 if with_edns else None), transport)

    assert reply.edns == (0 if with_edns else -1)


@over_both
@pytest.mark.parametrize("version", [1, 255], ids=["v1", "v255"])
def test_edns_version_above_zero_is_badvers_with_version_zero(
    responder: GslbProcess, transport: str, version: int
) -> None:
    reply = ask(responder, make("static.gslb.example.com", "A", edns=version), transport)

    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert not reply.answer


@over_both
def test_our_udp_payload_size_is_advertised(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("static.gslb.example.com", "A", edns=0, payload=4096), transport)

    assert reply.payload == 1232


@over_both
def test_unknown_edns_options_are_not_echoed(responder: GslbProcess, transport: str) -> None:
    options: list[dns.edns.Option] = [
        dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"private"),
        dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 8),  # padding
        dns.edns.GenericOption(
            dns.edns.OptionType.COOKIE, b"\x01" * 8
        ),  # a client cookie: we do not do cookies
    ]
    reply = ask(responder, make("static.gslb.example.com", "A", edns=0, options=options), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.edns == 0
    assert not reply.options


@over_both
@pytest.mark.parametrize("do", [0, dns.flags.DO], ids=["do0", "do1"])
def test_do_is_copied_and_unknown_edns_flags_are_not(responder: GslbProcess, transport: str, do: int) -> None:
    unknown = 0x7FFF
    reply = ask(responder, make("static.gslb.example.com", "A", edns=0, ednsflags=do | unknown), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.ednsflags == do


@over_both
@pytest.mark.parametrize("do", [0, dns.flags.DO], ids=["do0", "do1"])
def test_do_is_copied_on_negative_answers(responder: GslbProcess, transport: str, do: int) -> None:
    reply = ask(responder, make("nope.gslb.example.com", "A", edns=0, ednsflags=do), transport)

    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.ednsflags & dns.flags.DO == do


# client payload (None: no EDNS) -> the effective UDP limit
UDP_SIZES = {
    "t4-no-edns": ("t4", None, False),
    "t8-no-edns": ("t8", None, True),
    "t4-client-200-means-512": ("t4", 200, False),
    "t8-client-512": ("t8", 512, True),
    "t8-client-600": ("t8", 600, True),
    "t8-client-1232": ("t8", 1232, False),
    "t8-client-4096": ("t8", 4096, False),
    "t40-client-4096-capped-at-1232": ("t40", 4096, True),
    "t40-client-65535": ("t40", 65535, True),
}


def _limit(payload: int | None) -> int:
    return 512 if payload is None else max(512, min(payload, 1232))


@pytest.mark.parametrize(("label", "payload", "truncated"), UDP_SIZES.values(), ids=UDP_SIZES.keys())
def test_udp_answer_size_limit(
    big_responder: GslbProcess, label: str, payload: int | None, truncated: bool
) -> None:
    name = f"{label}.gslb.example.com"
    query = make(name, "TXT", edns=None if payload is None else 0, payload=payload or 512)

    wire = exchange(big_responder, query.to_wire(), "udp")

    assert wire is not None
    assert len(wire) <= _limit(payload)
    reply = dns.message.from_wire(wire)
    assert bool(reply.flags & dns.flags.TC) == truncated
    assert reply.question == query.question
    assert reply.edns == (-1 if payload is None else 0)
    if truncated:
        assert reply_counts(wire)[0] == 1
    else:
        assert len(reply.answer[0]) == int(label[1:])
        assert len(wire) > 200


@pytest.mark.parametrize("payload", [None, 1232], ids=["no-edns", "edns"])
def test_tcp_carries_the_full_large_answer(big_responder: GslbProcess, payload: int | None) -> None:
    query = make("t40.gslb.example.com", "TXT", edns=None if payload is None else 0, payload=payload or 512)

    reply = ask(big_responder, query, "tcp")

    assert not reply.flags & dns.flags.TC
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer[0]) == 40


# --- NSID (RFC 5001) ----------------------------------------------------------------------------


@over_both
def test_nsid_is_sent_when_asked(responder: GslbProcess, transport: str) -> None:
    query = make("static.gslb.example.com", "A", edns=0, options=[dns.edns.NSIDOption(b"")])

    reply = ask(responder, query, transport)

    assert server_nsid(reply) == b"test-node"


@over_both
def test_nsid_is_not_sent_unasked(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("static.gslb.example.com", "A", edns=0), transport)

    assert server_nsid(reply) is None


@over_both
def test_nsid_is_not_sent_without_an_identity(anonymous_responder: GslbProcess, transport: str) -> None:
    query = make("static.gslb.example.com", "A", edns=0, options=[dns.edns.NSIDOption(b"")])

    reply = ask(anonymous_responder, query, transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert server_nsid(reply) is None


# --- ECS (RFC 7871) -----------------------------------------------------------------------------

VALID_ECS = {
    "v4-24": ("198.51.100.0", 24, 32),
    "v4-32": ("81.2.69.142", 32, 32),
    "v4-20": ("81.2.64.0", 20, 32),
    "v4-0": ("0.0.0.0", 0, 32),
    "v6-56": ("2001:218::", 56, 128),
    "v6-0": ("::", 0, 128),
}


@over_both
@pytest.mark.parametrize(("address", "source", "width"), VALID_ECS.values(), ids=VALID_ECS.keys())
def test_valid_ecs_is_echoed_with_a_scope(
    responder: GslbProcess, transport: str, address: str, source: int, width: int
) -> None:
    query = make(WWW, "A", edns=0, options=[dns.edns.ECSOption(address, source)])

    reply = ask(responder, query, transport)

    assert reply.rcode() == dns.rcode.NOERROR
    echoed = server_ecs(reply)
    assert echoed is not None
    assert echoed.family == (1 if width == 32 else 2)
    assert echoed.srclen == source
    assert echoed.address == address
    assert 0 <= echoed.scopelen <= width
    if source == 0:
        assert echoed.scopelen == 0


@over_both
def test_ecs_scope_is_zero_for_answers_that_do_not_depend_on_location(
    responder: GslbProcess, transport: str
) -> None:
    query = make("static.gslb.example.com", "A", edns=0, options=[dns.edns.ECSOption("81.2.69.142", 32)])

    reply = ask(responder, query, transport)

    echoed = server_ecs(reply)
    assert echoed is not None
    assert (echoed.srclen, echoed.address, echoed.scopelen) == (32, "81.2.69.142", 0)


@over_both
def test_no_ecs_in_the_reply_without_ecs_in_the_query(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make(WWW, "A", edns=0), transport)

    assert server_ecs(reply) is None


MALFORMED_ECS = {
    "unknown-family-3": ecs(3, 0, 0, b""),
    "v4-source-33": ecs(1, 33, 0, bytes(5)),
    "v6-source-129": ecs(2, 129, 0, bytes(17)),
    "scope-in-query": ecs(1, 24, 24, bytes((198, 51, 100))),
    "address-too-long": ecs(1, 24, 0, bytes((198, 51, 100, 0))),
    "address-too-short": ecs(1, 24, 0, bytes((198, 51))),
    "v6-address-too-long": ecs(2, 32, 0, bytes(16)),
    "bits-past-prefix": ecs(1, 20, 0, bytes((81, 2, 69))),  # 69 = 0x45: low 4 bits set
    "v4-source-0-with-address": ecs(1, 0, 0, bytes((81,))),
    "shorter-than-4": option(8, b"\x00\x01\x18"),
    "two-ecs": ecs(1, 24, 0, bytes((198, 51, 100))) + ecs(1, 24, 0, bytes((198, 51, 100))),
}


@over_both
@pytest.mark.parametrize("options", MALFORMED_ECS.values(), ids=MALFORMED_ECS.keys())
def test_malformed_ecs_is_formerr(responder: GslbProcess, transport: str, options: bytes) -> None:
    wire = query_wire(WWW, opt=opt_record(options=options))

    reply = exchange(responder, wire, transport)

    assert reply is not None
    assert reply[:2] == wire[:2]
    assert reply_flags(reply) & QR
    assert rcode_of(reply) == dns.rcode.FORMERR
    assert_alive(responder, transport)


# --- malformed messages -------------------------------------------------------------------------

_Q = question()
_AR_AT = 12 + len(_Q)  # offset of the first additional record after one question

MALFORMED = {
    "qdcount-0": header(qd=0),
    "qdcount-0-with-question": header(qd=0) + _Q,
    "qdcount-2": header(qd=2) + _Q + question("static.gslb.example.com"),
    "ancount-1": header(an=1) + _Q + record(b"\xc0\x0c", rdata=bytes(4)),
    "nscount-1": header(ns=1) + _Q + record(b"\xc0\x0c", rdata=bytes(4)),
    "label-64": header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
    "label-type-0x80": header() + b"\x81" + b"a" * 1 + b"\x00\x00\x01\x00\x01",
    "name-257-bytes": header() + b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00\x00\x01\x00\x01",
    "pointer-in-qname-to-itself": header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer-in-qname-backwards": header() + b"\x03www\xc0\x00\x00\x01\x00\x01",
    "pointer-in-qname-forward": header() + b"\x03www\xc0\x13\x00\x01\x00\x01" + b"\x01a\x00",
    "qname-without-root": header() + b"\x03www",
    "truncated-question": header() + name_wire(WWW) + b"\x00\x01",
    "arcount-without-record": header(ar=1) + _Q,
    "additional-owner-pointer-to-itself": header(ar=1) + _Q + record(pointer(_AR_AT)),
    "additional-owner-pointer-loop": header(ar=1) + _Q + record(b"\x01a" + pointer(_AR_AT)),
    "additional-owner-forward-pointer": header(ar=2) + _Q + record(pointer(_AR_AT + 12)) + record(b"\x00"),
    "additional-owner-pointer-past-end": header(ar=1) + _Q + record(b"\xc3\xff"),
    "duplicate-opt": header(ar=2) + _Q + opt_record() + opt_record(),
    "opt-owner-not-root": header(ar=1) + _Q + opt_record(owner=b"\x01a\x00"),
    "opt-owner-pointer-to-qname": header(ar=1) + _Q + opt_record(owner=b"\xc0\x0c"),
    "option-overruns-opt": header(ar=1) + _Q + opt_record(options=struct.pack("!HH", 65001, 10) + b"ab"),
    "option-header-cut": header(ar=1) + _Q + opt_record(options=b"\x00\x03"),
    "opt-rdlength-past-end": header(ar=1) + _Q + opt_record(options=b"\x00\x03\x00\x00", rdlength=20),
    "trailing-garbage": header() + _Q + b"\xde\xad\xbe\xef",
    "trailing-garbage-after-opt": header(ar=1) + _Q + opt_record() + b"\x00",
}


@over_both
@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_query_is_formerr_or_dropped(responder: GslbProcess, transport: str, wire: bytes) -> None:
    reply = exchange(responder, wire, transport, timeout_s=1.0)

    if reply is not None:
        assert reply[:2] == wire[:2]
        assert reply_flags(reply) & QR
        assert rcode_of(reply) == dns.rcode.FORMERR
    assert_alive(responder, transport)


NO_REPLY = {
    "empty": b"",
    "one-byte": b"\x4a",
    "eleven-bytes": header()[:11],
    "qr-set": query_wire(flags=QR | RD),
    "qr-set-response-shaped": query_wire(flags=QR | AA),
}


@over_both
@pytest.mark.parametrize("wire", NO_REPLY.values(), ids=NO_REPLY.keys())
def test_short_header_and_responses_get_no_reply(responder: GslbProcess, transport: str, wire: bytes) -> None:
    if transport == "udp":
        assert exchange(responder, wire, "udp", timeout_s=SILENCE_S) is None
        assert_alive(responder, "udp")
        return
    # over TCP the connection stays usable for the next message
    with socket.create_connection(responder.address, timeout=SILENCE_S) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        assert read_tcp_message(sock) is None
        sock.settimeout(TIMEOUT_S)
        good = query_wire("static.gslb.example.com", qid=0x0101)
        sock.sendall(len(good).to_bytes(2, "big") + good)
        reply = read_tcp_message(sock)
    assert reply is not None
    assert reply[:2] == b"\x01\x01"
    assert rcode_of(reply) == dns.rcode.NOERROR


_VALID = query_wire(WWW, opt=opt_record(options=ecs(1, 24, 0, bytes((81, 2, 69))) + option(3, b"")))


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    """A valid query with a few bytes changed, cut short or extended."""
    wire = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        wire[draw(st.integers(2, len(wire) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(wire)))
    return bytes(wire[:cut]) + draw(st.binary(max_size=8))


@given(wire=_mutations())
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_mutated_query_gets_a_reply_or_a_drop(responder: GslbProcess, wire: bytes) -> None:
    """Over UDP: send the mutation, then a good query; the good one is always answered."""
    good = query_wire("static.gslb.example.com", qid=0xD00D)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.connect(responder.address)
        sock.send(wire)
        sock.send(good)
        while True:
            reply = sock.recv(65535)
            assert len(reply) >= 12
            assert reply_flags(reply) & QR
            if reply[:2] == b"\xd0\x0d":
                break
            assert reply[:2] == wire[:2]
            assert rcode_of(reply) != dns.rcode.SERVFAIL


# --- case -----------------------------------------------------------------------------------------

MIXED_CASE = {
    "service": ("wWw.GsLb.ExAmPlE.cOm", 1, dns.rcode.NOERROR),
    "static": ("STATIC.gslb.EXAMPLE.com", 1, dns.rcode.NOERROR),
    "wildcard": ("FoO.aPpS.gSlB.eXaMpLe.CoM", 1, dns.rcode.NOERROR),
    "cname": ("API.GSLB.EXAMPLE.COM", 1, dns.rcode.NOERROR),
    "nxdomain": ("NoPe.GsLb.ExAmPlE.cOm", 1, dns.rcode.NXDOMAIN),
    "refused": ("ExAmPlE.oRg", 1, dns.rcode.REFUSED),
}


@over_both
@pytest.mark.parametrize(("name", "qtype", "rcode"), MIXED_CASE.values(), ids=MIXED_CASE.keys())
def test_question_keeps_the_case_the_client_sent(
    responder: GslbProcess, transport: str, name: str, qtype: int, rcode: int
) -> None:
    sent = question(name, qtype)

    wire = exchange(responder, header() + sent, transport)

    assert wire is not None
    assert wire[12 : 12 + len(sent)] == sent
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == rcode
    if rcode == dns.rcode.NOERROR:
        assert reply.answer
        assert reply.answer[0].name == dns.name.from_text(name)  # case-insensitive


@over_both
def test_chaos_names_match_in_any_case(responder: GslbProcess, transport: str) -> None:
    reply = ask(responder, make("ID.Server", "TXT", "CH"), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply, "TXT") == {'"test-node"'}
