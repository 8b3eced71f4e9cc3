"""What `dig` shows when pointed at a real `gslb serve`: the first tool anyone uses on us.

Runs the real /usr/bin/dig (with `-r`, so no ~/.digrc interferes) and parses its text output:
the HEADER and flags lines, the OPT pseudosection and the record sections.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess, start_gslb

DIG = shutil.which("dig")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(DIG is None, reason="dig is not installed")]

WWW_V4 = {"192.0.2.10", "192.0.2.11", "198.51.100.10", "198.51.100.11", "203.0.113.10", "203.0.113.11"}

over_both = pytest.mark.parametrize("transport", ["+notcp", "+tcp"], ids=["udp", "tcp"])

# --- running and reading dig --------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    name: str
    ttl: int
    rdclass: str
    rdtype: str
    rdata: str


@dataclass
class DigOutput:
    text: str
    opcode: str = ""
    status: str = ""
    flags: frozenset[str] = frozenset()
    counts: dict[str, int] = field(default_factory=dict)
    opt: list[str] = field(default_factory=list)  # lines of the OPT PSEUDOSECTION, without "; "
    sections: dict[str, list[Record]] = field(default_factory=dict)
    transport: str = ""  # "UDP" or "TCP", from the SERVER line

    def records(self, section: str, rdtype: str | None = None) -> list[Record]:
        return [r for r in self.sections.get(section, []) if rdtype is None or r.rdtype == rdtype]


_HEADER = re.compile(r";; ->>HEADER<<- opcode: (\S+), status: (\S+), id: \d+")
_FLAGS = re.compile(r";; flags:([^;]*); QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)")
_SECTION = re.compile(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:")
_SERVER = re.compile(r";; SERVER: .*\((UDP|TCP)\)")


def parse(text: str) -> DigOutput:
    """The last reply dig printed (after a TC retry there may be two)."""
    out = DigOutput(text)
    section: str | None = None
    for line in text.splitlines():
        if match := _HEADER.match(line):
            out.opcode, out.status = match.groups()
            out.sections, out.opt = {}, []
        elif match := _FLAGS.match(line):
            out.flags = frozenset(match.group(1).split())
            out.counts = dict(
                zip(("QUERY", "ANSWER", "AUTHORITY", "ADDITIONAL"), map(int, match.groups()[1:]), strict=True)
            )
        elif line == ";; OPT PSEUDOSECTION:":
            section = "OPT"
        elif match := _SECTION.match(line):
            section = match.group(1)
            out.sections[section] = []
        elif match := _SERVER.match(line):
            out.transport = match.group(1)
        elif not line.strip():
            section = None
        elif section == "OPT" and line.startswith("; "):
            out.opt.append(line[2:])
        elif section in ("ANSWER", "AUTHORITY", "ADDITIONAL") and not line.startswith(";"):
            name, ttl, rdclass, rdtype, *rdata = line.split(None, 4)
            out.sections[section].append(Record(name, int(ttl), rdclass, rdtype, " ".join(rdata)))
    return out


def dig(server: GslbProcess, *args: str) -> DigOutput:
    assert DIG is not None
    command = [DIG, "-r", "@127.0.0.1", "-p", str(server.port), "+tries=1", "+time=2", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    out = parse(done.stdout)
    assert out.status, f"no reply parsed from:\n{done.stdout}"
    return out


def opt_line(out: DigOutput, prefix: str) -> str | None:
    found = [line for line in out.opt if line.startswith(prefix)]
    return found[0] if found else None


# --- servers ------------------------------------------------------------------------------------


def start(tmp: Path, config: str) -> GslbProcess:
    """`start_gslb`, minus the ResourceWarning of the log file it leaves open in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return start_gslb(tmp, config)


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    server = start(tmp_path_factory.mktemp("dig"), BASIC_CONFIG)
    yield server
    assert "Traceback" not in server.output()
    server.stop()


@pytest.fixture(scope="module")
def big_responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """A zone with 40 TXT records of 100 bytes at big.gslb.example.com (about 4.6 kB)."""
    tmp = tmp_path_factory.mktemp("dig-big")
    zone = tmp / "big.zone"
    lines = [
        "$ORIGIN gslb.example.com.",
        "$TTL 300",
        "@ IN SOA ns1 hostmaster.example.com. 1 3600 600 604800 60",
        "  IN NS ns1",
        "ns1 IN A 203.0.113.53",
        *(f'big IN TXT "{index:03d}{"x" * 97}"' for index in range(40)),
    ]
    zone.write_text("\n".join(lines) + "\n")
    server = start(tmp, BASIC_CONFIG.replace("file: {zone}", f"file: {zone}"))
    yield server
    server.stop()


# --- tests --------------------------------------------------------------------------------------


@over_both
def test_service_answer_is_authoritative_without_recursion(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "www.gslb.example.com")

    assert out.status == "NOERROR"
    assert "aa" in out.flags
    assert "ra" not in out.flags
    assert out.transport == ("TCP" if transport == "+tcp" else "UDP")
    answers = out.records("ANSWER", "A")
    assert answers
    assert {r.rdata for r in answers} <= WWW_V4
    assert {r.ttl for r in answers} == {30}
    assert {r.name for r in answers} == {"www.gslb.example.com."}


def test_tcp_is_used_with_plus_tcp(responder: GslbProcess) -> None:
    assert dig(responder, "+tcp", "static.gslb.example.com").transport == "TCP"
    assert dig(responder, "+notcp", "static.gslb.example.com").transport == "UDP"


@over_both
def test_nonexistent_name_is_nxdomain_with_the_soa(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "nope.gslb.example.com")

    assert out.status == "NXDOMAIN"
    assert "aa" in out.flags
    assert not out.records("ANSWER")
    (soa,) = out.records("AUTHORITY")
    assert (soa.name, soa.rdtype, soa.ttl) == ("gslb.example.com.", "SOA", 60)


@over_both
def test_nodata_shows_the_soa(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "apps.gslb.example.com", "A")

    assert out.status == "NOERROR"
    assert out.counts["ANSWER"] == 0
    assert [r.rdtype for r in out.records("AUTHORITY")] == ["SOA"]


@over_both
def test_other_domain_is_refused(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "example.org")

    assert out.status == "REFUSED"
    assert "aa" not in out.flags
    assert out.counts["ANSWER"] == out.counts["AUTHORITY"] == 0


@over_both
def test_edns_version_1_is_badvers(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "+edns=1", "+noednsneg", "static.gslb.example.com")

    assert out.status == "BADVERS"
    edns = opt_line(out, "EDNS:")
    assert edns is not None
    assert edns.startswith("EDNS: version: 0,")


@pytest.mark.parametrize("opcode", ["15", "notify", "update"], ids=["15", "notify", "update"])
def test_unknown_opcode_is_notimp(responder: GslbProcess, opcode: str) -> None:
    out = dig(responder, f"+opcode={opcode}", "gslb.example.com", "SOA")

    assert out.status == "NOTIMP"
    assert out.opcode == {"15": "RESERVED15"}.get(opcode, opcode.upper())
    assert out.flags == {"qr"}
    assert out.counts == {"QUERY": 0, "ANSWER": 0, "AUTHORITY": 0, "ADDITIONAL": 0}


@over_both
def test_nsid_is_shown(responder: GslbProcess, transport: str) -> None:
    out = dig(responder, transport, "+nsid", "static.gslb.example.com")

    nsid = opt_line(out, "NSID:")
    assert nsid is not None
    assert nsid.endswith('("test-node")')


def test_no_nsid_unasked(responder: GslbProcess) -> None:
    out = dig(responder, "static.gslb.example.com")

    assert opt_line(out, "NSID:") is None


@over_both
@pytest.mark.parametrize(
    ("subnet", "shown"),
    [("81.2.69.0/24", "81.2.69.0/24/"), ("2001:218::/48", "2001:218::/48/")],
    ids=["v4", "v6"],
)
def test_client_subnet_is_echoed(responder: GslbProcess, transport: str, subnet: str, shown: str) -> None:
    out = dig(responder, transport, f"+subnet={subnet}", "www.gslb.example.com")

    assert out.status == "NOERROR"
    ecs = opt_line(out, "CLIENT-SUBNET:")
    assert ecs is not None
    assert ecs.split()[1].startswith(shown)
    assert int(ecs.rsplit("/", 1)[1]) >= 0


@over_both
@pytest.mark.parametrize(
    ("name", "text"),
    [("id.server", '"test-node"'), ("hostname.bind", '"test-host"'), ("version.bind", '"gslb-test"')],
    ids=["id.server", "hostname.bind", "version.bind"],
)
def test_chaos_identity(responder: GslbProcess, transport: str, name: str, text: str) -> None:
    out = dig(responder, transport, "CH", "TXT", name)

    assert out.status == "NOERROR"
    (answer,) = out.records("ANSWER")
    assert (answer.rdclass, answer.rdtype, answer.rdata) == ("CH", "TXT", text)


def test_any_over_udp_is_minimal_and_over_tcp_is_full(responder: GslbProcess) -> None:
    udp = dig(responder, "+notcp", "gslb.example.com", "ANY")
    tcp = dig(responder, "+tcp", "gslb.example.com", "ANY")

    udp_types = [r.rdtype for r in udp.records("ANSWER")]
    assert udp_types == ["HINFO"] or len(set(udp_types)) == 1
    assert {"SOA", "NS", "MX", "TXT", "CAA"} <= {r.rdtype for r in tcp.records("ANSWER")}


def test_header_bits_dig_can_set(responder: GslbProcess) -> None:
    out = dig(responder, "+norec", "+cdflag", "+adflag", "+dnssec", "static.gslb.example.com")

    assert out.flags == {"qr", "aa", "cd"}  # RD not set so not copied, CD copied, AD not echoed
    edns = opt_line(out, "EDNS:")
    assert edns is not None
    assert "flags: do;" in edns
    assert "udp: 1232" in edns


def test_large_answer_is_truncated_over_udp_and_dig_retries_over_tcp(big_responder: GslbProcess) -> None:
    truncated = dig(big_responder, "+ignore", "+notcp", "big.gslb.example.com", "TXT")
    retried = dig(big_responder, "+notcp", "big.gslb.example.com", "TXT")

    assert "tc" in truncated.flags
    assert truncated.counts["QUERY"] == 1
    assert "Truncated, retrying in TCP mode" in retried.text
    assert retried.transport == "TCP"
    assert len(retried.records("ANSWER", "TXT")) == 40


@pytest.mark.parametrize("bufsize", ["+noedns", "+bufsize=512"], ids=["no-edns", "bufsize-512"])
def test_udp_replies_fit_the_client_buffer(big_responder: GslbProcess, bufsize: str) -> None:
    out = dig(big_responder, "+ignore", "+notcp", bufsize, "big.gslb.example.com", "TXT")

    assert "tc" in out.flags
    size = re.search(r";; MSG SIZE\s+rcvd: (\d+)", out.text)
    assert size is not None
    assert int(size.group(1)) <= 512
