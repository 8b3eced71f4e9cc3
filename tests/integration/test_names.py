"""Names are label sequences (DESIGN.md section 6), over real UDP and TCP against `gslb serve`.

The embedded default config (zone gslb.example.com, service www.gslb.example.com) answers
names whose labels hold a ".", a "\\" or non-ASCII octets. `www\\.gslb.example.com` has three
labels, the first "www.gslb": it lies under example.com, not under our zone, so it is REFUSED,
however much its dotted spelling looks like ours. Case folding is ASCII only (RFC 4343): the
octet 0xC9 (É in latin-1) is not 0xE9 (é). Every reply echoes the question byte for byte and
compresses names only towards label starts; the reply is read with dnspython, with dig and by
walking the raw bytes here.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import pytest

from tests.server_fixture import EXAMPLE_CONFIG, EXAMPLE_ZONE, GslbProcess, read_tcp_message, start_gslb

pytestmark = pytest.mark.integration

DIG = shutil.which("dig")
TIMEOUT_S = 2.0
APEX = dns.name.from_text("gslb.example.com.")
IAD = {"198.51.100.10", "198.51.100.11"}  # 127.0.0.1 has no location: the default order starts with iad

over_both = pytest.mark.parametrize("transport", ["udp", "tcp"], ids=["udp", "tcp"])

# --- servers ------------------------------------------------------------------------------------


def embedded_config_text(zone: str = "{zone}") -> str:
    """The embedded default config (gslb/data/gslb.yaml) as a `start_gslb` template: the
    listen address becomes 127.0.0.1:{port} and the zone file `zone`; nothing else changes."""
    text = EXAMPLE_CONFIG.read_text().replace("{", "{{").replace("}", "}}")
    text, listens = re.subn(
        r'^(\s+)listen: \["[^"]*"\]$', r'\1listen: ["127.0.0.1:{port}"]', text, flags=re.M
    )
    text, files = re.subn(r"^(\s+)file: \S+$", rf"\1file: {zone}", text, flags=re.M)
    assert (listens, files) == (1, 1), "gslb/data/gslb.yaml changed shape: update embedded_config_text"
    return text


def start(tmp: Path, config: str) -> GslbProcess:
    """`start_gslb`, minus the ResourceWarning of the log file it leaves open in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return start_gslb(tmp, config)


def stop(server: GslbProcess) -> None:
    assert server.proc.poll() is None, f"gslb exited:\n{server.output()}"
    log = server.output()
    server.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """`gslb serve` with the embedded default config on a free port."""
    server = start(tmp_path_factory.mktemp("names"), embedded_config_text())
    yield server
    stop(server)


# é (0xE9 = \233) and café exist; É (0xC9 = \201) and cafÉ must not match them.
LATIN1_RECORDS = """
\\233     IN TXT "e-acute"
caf\\233  IN TXT "cafe-e-acute"
"""


@pytest.fixture(scope="module")
def latin1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """The embedded config with the example zone plus owners holding the octet 0xE9."""
    tmp = tmp_path_factory.mktemp("latin1")
    zone = tmp / "latin1.zone"
    zone.write_text(EXAMPLE_ZONE.read_text() + LATIN1_RECORDS)
    server = start(tmp, embedded_config_text(str(zone)))
    yield server
    stop(server)


# --- sending ------------------------------------------------------------------------------------


def exchange(server: GslbProcess, wire: bytes, transport: str) -> bytes:
    """Send one DNS message as bytes; the raw reply (a test failure when none comes)."""
    reply: bytes | None
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.connect(server.address)
            sock.send(wire)
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                reply = None
    else:
        with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            reply = read_tcp_message(sock)
    assert reply is not None, f"no reply over {transport}"
    return reply


def query(name: str, rdtype: str = "A", *, edns: bool = True) -> dns.message.QueryMessage:
    """A query for `name` in presentation format (escapes allowed), case kept as written."""
    message = dns.message.make_query(dns.name.from_text(name), rdtype, use_edns=0 if edns else False)
    message.flags = 0  # an authoritative server: no recursion asked
    return message


def question_bytes(wire: bytes) -> bytes:
    """The question section of a message with one uncompressed question."""
    end = 12
    while wire[end]:
        end += 1 + wire[end]
    return wire[12 : end + 1 + 4]


def ask(server: GslbProcess, message: dns.message.QueryMessage, transport: str) -> dns.message.Message:
    """Send, then check what every reply must hold: it parses, belongs to the query, echoes its
    question byte for byte and compresses only towards label starts."""
    wire = message.to_wire()
    raw = exchange(server, wire, transport)
    reply = dns.message.from_wire(raw)
    assert reply.id == message.id
    assert reply.flags & dns.flags.QR
    assert struct.unpack_from("!H", raw, 4)[0] == 1
    assert raw[12 : 12 + len(question_bytes(wire))] == question_bytes(wire)
    check_compression(raw)
    check_owners(reply, message.question[0].name)
    return reply


# --- reading the raw reply ----------------------------------------------------------------------

_NAME_FIELDS = {  # RDATA layout of the types whose RDATA holds names: (octets before, names, octets after)
    dns.rdatatype.NS: (0, 1, 0),
    dns.rdatatype.CNAME: (0, 1, 0),
    dns.rdatatype.PTR: (0, 1, 0),
    dns.rdatatype.DNAME: (0, 1, 0),
    dns.rdatatype.SOA: (0, 2, 20),
    dns.rdatatype.MX: (2, 1, 0),
    dns.rdatatype.SRV: (6, 1, 0),
}


def _walk_name(wire: bytes, offset: int, starts: set[int]) -> int:
    """Walk one name at `offset`; every pointer must go backwards to a label start of a name
    already walked. Adds this name's label starts to `starts`; returns the offset after it."""
    mine: list[int] = []
    position = offset
    while True:
        length = wire[position]
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | wire[position + 1]
            assert target < position, f"forward pointer at {position} to {target}"
            assert target in starts, (
                f"pointer at {position} to {target}, not a label start ({sorted(starts)})"
            )
            end = position + 2
            break
        assert length & 0xC0 == 0, f"label type {length:#x} at {position}"
        mine.append(position)
        position += 1 + length
        if length == 0:
            end = position
            break
    assert sum(wire[p] + 1 for p in mine) <= 255
    starts.update(mine)
    return end


def check_compression(wire: bytes) -> None:
    """Walk the whole reply: the question, then each record's owner and the names in its RDATA."""
    counts = struct.unpack_from("!HHHH", wire, 4)
    starts: set[int] = set()
    position = _walk_name(wire, 12, starts) + 4
    for _ in range(sum(counts[1:])):
        position = _walk_name(wire, position, starts)
        rdtype, _rdclass, _ttl, rdlength = struct.unpack_from("!HHIH", wire, position)
        position += 10
        end = position + rdlength
        if rdtype in _NAME_FIELDS:
            before, names, after = _NAME_FIELDS[dns.rdatatype.RdataType(rdtype)]
            position += before
            for _ in range(names):
                position = _walk_name(wire, position, starts)
            assert position + after == end, f"type {rdtype}: RDATA length {rdlength} does not fit its names"
        position = end
    assert position == len(wire), "bytes after the last record"


def check_owners(reply: dns.message.Message, qname: dns.name.Name) -> None:
    """Answer owners are the question name (ASCII case-insensitively) or a CNAME target met
    before; authority owners are the zone apex; additional owners are names the reply points to."""
    allowed = {qname}
    for rrset in reply.answer:
        assert rrset.name in allowed, f"answer owner {rrset.name} for question {qname}"
        allowed |= {r.target for r in rrset if isinstance(r, dns.rdtypes.ANY.CNAME.CNAME)}
    if qname.is_subdomain(APEX):
        assert all(rrset.name == APEX for rrset in reply.authority), reply.authority
    targets = {
        getattr(rdata, field)
        for rrset in (*reply.answer, *reply.authority)
        for rdata in rrset
        for field in ("target", "exchange")
        if hasattr(rdata, field)
    }
    assert all(rrset.name in targets for rrset in reply.additional), reply.additional


def addresses(reply: dns.message.Message) -> set[str]:
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset}


def texts(reply: dns.message.Message) -> set[str]:
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TXT for r in rrset}


def assert_nxdomain(reply: dns.message.Message) -> None:
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AA
    assert not reply.answer
    assert [(rrset.name, rrset.rdtype) for rrset in reply.authority] == [(APEX, dns.rdatatype.SOA)]


# --- labels that hold a dot ---------------------------------------------------------------------

OUTSIDE_WITH_DOT = {
    "www-dot-gslb": r"www\.gslb.example.com.",  # [www.gslb, example, com]: under example.com
    "x-dot-gslb": r"x\.gslb.example.com.",
    "whole-zone-in-one-label": r"www.gslb\.example\.com.",  # [www, gslb.example.com]
    "zone-in-one-label-at-root": r"gslb\.example\.com.",
    "zone-then-dotted-com": r"www.gslb.example\.com.",  # [www, gslb, example.com]
}


@over_both
@pytest.mark.parametrize("name", OUTSIDE_WITH_DOT.values(), ids=OUTSIDE_WITH_DOT.keys())
def test_a_dotted_label_that_spells_our_zone_is_refused(
    embedded: GslbProcess, transport: str, name: str
) -> None:
    reply = ask(embedded, query(name), transport)

    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert not reply.authority  # no referral, no SOA of a zone that is not ours


@over_both
def test_a_dotted_label_in_our_zone_is_nxdomain_with_the_soa(embedded: GslbProcess, transport: str) -> None:
    reply = ask(embedded, query(r"a\.b.gslb.example.com."), transport)

    assert_nxdomain(reply)


@over_both
def test_a_dotted_label_under_the_wildcard_is_synthesised_with_its_own_owner(
    embedded: GslbProcess, transport: str
) -> None:
    name = r"a\.B.apps.gslb.example.com."

    reply = ask(embedded, query(name), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"192.0.2.90"}
    assert reply.answer[0].name.labels == dns.name.from_text(name).labels  # the octets, case and all


DIG_STATUS = {
    "www-dot-gslb": (r"www\.gslb.example.com", "REFUSED"),
    "x-dot-gslb": (r"x\.gslb.example.com", "REFUSED"),
    "a-dot-b-in-zone": (r"a\.b.gslb.example.com", "NXDOMAIN"),
}


@pytest.mark.skipif(DIG is None, reason="dig is not installed")
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"], ids=["udp", "tcp"])
@pytest.mark.parametrize(("name", "status"), DIG_STATUS.values(), ids=DIG_STATUS.keys())
def test_dig_reads_the_reply_to_a_dotted_label(
    embedded: GslbProcess, transport: str, name: str, status: str
) -> None:
    assert DIG is not None
    command = [DIG, "-r", "@127.0.0.1", "-p", str(embedded.port), name, "+norecurse", "+tries=1", "+time=2"]

    done = subprocess.run([*command, transport], capture_output=True, text=True, timeout=15, check=False)

    out = done.stdout + done.stderr
    assert "bad packet" not in out, out  # e.g. ";; Got bad packet: bad label type"
    assert "bad label type" not in out, out
    assert done.returncode == 0, out
    assert f"status: {status}," in out, out
    question = re.search(r"^;; QUESTION SECTION:\n;(\S+)\s", out, re.M)
    assert question is not None, out
    assert question.group(1) == name + "."


# --- case ---------------------------------------------------------------------------------------


@over_both
def test_upper_case_service_name_gets_the_steered_answer(embedded: GslbProcess, transport: str) -> None:
    reply = ask(embedded, query("WWW.GSLB.EXAMPLE.COM."), transport)

    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert addresses(reply) == IAD
    assert reply.answer[0].name.to_text() == "WWW.GSLB.EXAMPLE.COM."  # the client's case


LATIN1 = {
    # name, expected TXT (None: NXDOMAIN)
    "e-acute": (r"\233.gslb.example.com.", '"e-acute"'),
    "E-acute-is-another-octet": (r"\201.gslb.example.com.", None),
    "cafe-ascii-upper": (r"CAF\233.GSLB.example.com.", '"cafe-e-acute"'),
    "cafE-acute": (r"caf\201.gslb.example.com.", None),
    "CAFE-acute": (r"CAF\201.gslb.EXAMPLE.com.", None),
}


@over_both
@pytest.mark.parametrize(("name", "text"), LATIN1.values(), ids=LATIN1.keys())
def test_case_folding_is_ascii_only(latin1: GslbProcess, transport: str, name: str, text: str | None) -> None:
    reply = ask(latin1, query(name, "TXT"), transport)

    if text is None:
        assert_nxdomain(reply)
        return
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply) == {text}
    assert reply.answer[0].name.labels == dns.name.from_text(name).labels


# --- the question and the names in every reply -------------------------------------------------

MIXED = {
    # name, type, rcode
    "service": ("wWw.GsLb.ExAmPlE.cOm.", "A", dns.rcode.NOERROR),
    "service-aaaa": ("WwW.gSlB.eXaMpLe.CoM.", "AAAA", dns.rcode.NOERROR),
    "service-nodata": ("wWw.GsLb.ExAmPlE.cOm.", "TXT", dns.rcode.NOERROR),
    "static": ("sTaTiC.gSlB.eXaMpLe.CoM.", "A", dns.rcode.NOERROR),
    "apex-mx": ("GsLb.ExAmPlE.CoM.", "MX", dns.rcode.NOERROR),
    "apex-ns": ("gSlB.eXaMpLe.cOm.", "NS", dns.rcode.NOERROR),
    "apex-soa": ("GSLB.example.COM.", "SOA", dns.rcode.NOERROR),
    "apex-any": ("gSlB.ExAmPlE.cOm.", "ANY", dns.rcode.NOERROR),
    "srv": ("_SiP._TcP.gSlB.eXaMpLe.CoM.", "SRV", dns.rcode.NOERROR),
    "cname-in-zone": ("ApI.GsLb.ExAmPlE.CoM.", "A", dns.rcode.NOERROR),
    "cname-out-of-zone": ("dOcS.gslb.EXAMPLE.com.", "A", dns.rcode.NOERROR),
    "wildcard": ("FoO.aPpS.gSlB.eXaMpLe.CoM.", "TXT", dns.rcode.NOERROR),
    "ptr": ("80.2.0.192.iN-aDdR.aRpA.gSlB.eXaMpLe.CoM.", "PTR", dns.rcode.NOERROR),
    "empty-non-terminal": ("ApPs.GsLb.ExAmPlE.cOm.", "A", dns.rcode.NOERROR),
    "nxdomain": ("NoPe.GsLb.ExAmPlE.cOm.", "A", dns.rcode.NXDOMAIN),
    "zone-twice": ("gslb.example.com.GsLb.ExAmPlE.cOm.", "A", dns.rcode.NXDOMAIN),
    "dotted-zone-label-in-zone": (r"GsLb\.ExAmPlE\.CoM.gslb.example.com.", "SOA", dns.rcode.NXDOMAIN),
    "dotted-in-zone": (r"A\.b.GsLb.ExAmPlE.cOm.", "A", dns.rcode.NXDOMAIN),
    "dotted-under-wildcard": (r"a\.B.aPpS.gslb.example.com.", "A", dns.rcode.NOERROR),
    "backslash-in-zone": (r"a\\B.gSlB.example.com.", "A", dns.rcode.NXDOMAIN),
    "nul-octet-in-zone": (r"\000\000.gslb.eXample.com.", "A", dns.rcode.NXDOMAIN),
    "refused": ("ExAmPlE.oRg.", "A", dns.rcode.REFUSED),
    "refused-parent": ("ExAmPlE.cOm.", "A", dns.rcode.REFUSED),
    "refused-near-miss": ("xGsLb.ExAmPlE.cOm.", "A", dns.rcode.REFUSED),
    "refused-dotted": (r"wWw\.GsLb.ExAmPlE.cOm.", "A", dns.rcode.REFUSED),
    "refused-dotted-x": (r"X\.gSlB.eXaMpLe.CoM.", "A", dns.rcode.REFUSED),
}


@over_both
@pytest.mark.parametrize(("name", "rdtype", "rcode"), MIXED.values(), ids=MIXED.keys())
def test_question_is_echoed_and_names_compress_to_label_starts(
    embedded: GslbProcess, transport: str, name: str, rdtype: str, rcode: dns.rcode.Rcode
) -> None:
    """`ask` holds the checks: question bytes, compression pointers, owners."""
    reply = ask(embedded, query(name, rdtype), transport)

    assert reply.rcode() == rcode
    if rcode == dns.rcode.NXDOMAIN:
        assert_nxdomain(reply)
    if rcode == dns.rcode.NOERROR and reply.answer:
        assert reply.answer[0].name == dns.name.from_text(name)


@over_both
@pytest.mark.parametrize("edns", [True, False], ids=["edns", "no-edns"])
def test_a_255_octet_name_is_echoed(embedded: GslbProcess, transport: str, edns: bool) -> None:
    """Three 63-octet labels and one of 44, dots and a backslash among them, then the zone:
    255 octets in all."""
    labels = [b"\\." + b"a" * 61, b"B" * 63, b"c." * 31 + b"C", b"d" * 41 + b".gs"]
    name = dns.name.Name([*labels, *APEX.labels])
    assert sum(1 + len(label) for label in name.labels) == 255

    reply = ask(embedded, query(name.to_text(), "TXT", edns=edns), transport)

    assert_nxdomain(reply)
