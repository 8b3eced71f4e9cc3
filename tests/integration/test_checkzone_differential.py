"""gslb's zone loader against BIND's named-checkzone, file by file over tests/data/checkzone.

named-checkzone runs as strict as our loader is: `-i local` (in-zone NS and MX targets need
an address), `-k fail` (check-names: A, AAAA and MX owners and NS, MX, SRV and SOA names
are host names, as named itself insists for primary zones), `-n fail` and `-m fail` (no
address written as an NS or MX name), `-M fail` and `-S fail` (no MX or SRV to a CNAME).

- A file it rejects, we reject, every problem as "FILE, line N: message" (or "FILE: message"
  for a zone-wide one, such as a missing SOA).
- A file it accepts, we load, and our RRsets are those of its canonical dump (`-D`): the
  same owners, types, TTLs and RDATA, both sides read by dnspython and compared in DNSSEC
  canonical form (RFC 4034 section 6.2: names in RDATA compare without case).
- Where we differ on purpose, the file is listed below with the reason, and the test checks
  that the difference still holds (so the list cannot silently go stale).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from gslb.dns.zonefile import load_zone_file
from gslb.errors import ConfigError
from gslb.zone.name import from_text, key
from gslb.zone.zone import Record

NAMED_CHECKZONE = shutil.which("named-checkzone")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        NAMED_CHECKZONE is None,
        reason="named-checkzone is not installed (Debian bind9-utils; `bin/dev test` installs it)",
    ),
]

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "checkzone"
ORIGIN = "example.test."  # unless the file says "; origin: NAME"
OPTIONS = ("-i", "local", "-k", "fail", "-n", "fail", "-m", "fail", "-M", "fail", "-S", "fail")
FILES = sorted([*CORPUS.glob("good/*.zone"), *CORPUS.glob("bad/*.zone")])

# named-checkzone loads these; we refuse them, on purpose.
STRICTER = {
    "stricter-ttl-above-2-31": "BIND serves a TTL of 0 instead (with a warning); we say so: "
    "RFC 2181 section 8 caps TTLs at 2^31 - 1",
    "stricter-no-ttl-directive": "RFC 1035 lets a record inherit the TTL of the record above "
    "it; we want $TTL or an explicit TTL (RFC 2308), so that moving a line cannot change a TTL",
    "stricter-rrset-ttls-differ": "BIND takes the first TTL of an RRset with a warning; two "
    "TTLs in one RRset are a mistake (RFC 2181 section 5.2)",
    "stricter-owner-outside-zone": "BIND ignores out-of-zone data with a warning; a record "
    "that is silently not served is a mistake",
    "stricter-origin-outside-zone": "the same, through $ORIGIN",
    "stricter-delegation": "gslb serves no referrals: delegations below the apex are refused",
    "stricter-unsupported-type": "gslb serves the types it can encode and check (A, AAAA, CAA, "
    "CNAME, HINFO, MX, NS, PTR, SOA, SRV, SSHFP, TLSA, TXT)",
    "stricter-generic-rdata": "RFC 3597 \\# data bypasses every check; write the type as text",
    "stricter-generate": "$GENERATE is BIND's own extension; gslb reads one file, record by record",
    "stricter-include": "the same for $INCLUDE: one zone, one file",
    "stricter-not-utf8-comment": "zone files are UTF-8 text for us; BIND takes any octets "
    "(write them as \\DDD)",
}

# named-checkzone refuses these; we load them, on purpose.
LOOSER = {
    "looser-byte-order-mark": "BIND reads a UTF-8 byte order mark as the first owner name; "
    "we skip it, as every UTF-8 reader does",
}

# BIND names another line than we do
LINE_DIFFERS = {
    "cname-and-other-data": "BIND names whichever of the two comes second; we name the CNAME's "
    "line and the other record's line in the message",
    "unclosed-parenthesis": "BIND names the end of the file; we name the line of the '('",
}

# problems that belong to the whole zone, not to one line
ZONE_WIDE = {"no-soa", "no-ns"}

_RRsets = dict[tuple[bytes, int], tuple[int, list[bytes]]]


def origin_of(path: Path) -> str:
    """The zone a corpus file is for: "; origin: NAME" in it, else ORIGIN."""
    found = re.search(rb"^; origin: (\S+)$", path.read_bytes(), re.MULTILINE)
    return found.group(1).decode() if found else ORIGIN


def named_checkzone(path: Path) -> subprocess.CompletedProcess[str]:
    assert NAMED_CHECKZONE is not None
    return subprocess.run(
        [NAMED_CHECKZONE, *OPTIONS, "-D", "-o", "-", origin_of(path), path.name],
        cwd=path.parent,  # $INCLUDE names are relative to it
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=30,
        check=False,
    )


def ours(path: Path) -> list[Record] | tuple[str, ...]:
    """Our records, or our problems."""
    try:
        return load_zone_file(path, key(from_text(origin_of(path))))
    except ConfigError as exc:
        return exc.problems


def canonical(rtype: int, wire: bytes) -> bytes:
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType(rtype), wire, 0, len(wire))
    return rdata.to_digestable()


def our_rrsets(records: list[Record]) -> _RRsets:
    out: _RRsets = {}
    for record in records:
        ttl, rdatas = out.setdefault((record.owner, record.rtype), (record.ttl, []))
        assert ttl == record.ttl
        rdatas.append(canonical(record.rtype, record.rdata))
    return {k: (ttl, sorted(rdatas)) for k, (ttl, rdatas) in out.items()}


def dumped_rrsets(dump: str, origin: str) -> _RRsets:
    zone = dns.zone.from_text(dump, origin, relativize=False, check_origin=False)
    out: _RRsets = {}
    for name, rdataset in zone.iterate_rdatasets():
        wire = name.to_wire()
        assert wire is not None
        owner = key(wire)
        out[owner, int(rdataset.rdtype)] = (rdataset.ttl, sorted(rd.to_digestable() for rd in rdataset))
    return out


def test_every_difference_is_a_corpus_file() -> None:
    stems = {path.stem for path in FILES}
    assert set(STRICTER) | set(LOOSER) | ZONE_WIDE <= stems
    assert {p.stem for p in CORPUS.glob("bad/stricter-*.zone")} == set(STRICTER)
    assert {p.stem for p in CORPUS.glob("good/looser-*.zone")} == set(LOOSER)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_we_agree_with_named_checkzone(path: Path) -> None:
    bind = named_checkzone(path)
    bind_says = f"named-checkzone said (rc {bind.returncode}):\n{bind.stderr}{bind.stdout}"
    result = ours(path)
    if path.stem in STRICTER:
        assert bind.returncode == 0, bind_says
        assert isinstance(result, tuple), "we load it: remove it from STRICTER"
        return
    if path.stem in LOOSER:
        assert bind.returncode != 0, bind_says
        assert isinstance(result, list), result
        return
    if bind.returncode != 0:
        assert isinstance(result, tuple), f"we load what BIND rejects; {bind_says}"
        where = re.escape(str(path)) + (
            r"(, line [1-9][0-9]*)?: \S" if path.stem in ZONE_WIDE else r", line [1-9][0-9]*: \S"
        )
        for problem in result:
            assert re.match(where, problem), problem
        assert path.parent.name == "bad", "BIND rejects a good file"
        # where BIND names a line, we name the same one (it stops at its first error)
        bind_lines = re.findall(re.escape(path.name) + r":([0-9]+): (?!warning)", bind.stdout + bind.stderr)
        our_lines = {m.group(1) for m in (re.search(r", line ([0-9]+): ", p) for p in result) if m}
        if bind_lines and path.stem not in LINE_DIFFERS:
            assert bind_lines[0] in our_lines, bind_says
        return
    assert isinstance(result, list), f"we reject what BIND loads: {result}"
    assert path.parent.name == "good", "BIND accepts a bad file: list it in STRICTER or fix it"
    assert our_rrsets(result) == dumped_rrsets(bind.stdout, origin_of(path))
