"""Read RFC 1035 master files into `gslb.zone.Record`s, with file:line on every problem.

Adapter layer: the presentation format lives here, next to the wire codec; standard library,
`gslb.config.model`, `gslb.errors` and `gslb.zone` only (no dnslib, no dnspython). We split
the file into logical records ourselves (comments, quotes, parentheses, $ORIGIN, $TTL, blank
owners) and encode each supported type's RDATA with a small strict encoder, so that each
problem names its line (where its record starts) and loading is fast: a 100,000-record zone
of A/AAAA/TXT/MX/CNAME reads at ~60,000 records/s against ~5,000/s with dnslib's ZoneParser
(measured on a 2-core dev VM; the named-checkzone checks below cost ~20 % of that). Names
follow `gslb.zone.name` (escapes, label and name limits) and owners are kept as keys; names
inside RDATA keep their case and are never compressed: a record's bytes must be valid
wherever they are placed in a message.

A file we load, BIND's `named-checkzone -i local -k fail -n fail -m fail -M fail -S fail`
loads with the same records (tests/integration/test_checkzone_differential.py): host names
where named's check-names wants them, in-zone NS and MX targets with an address, no NS, MX
or SRV target that is a CNAME or reads as an address. We are stricter where a file would
otherwise not mean what it says (TTLs above 2^31 - 1, two TTLs in one RRset, records
outside the zone, a missing $TTL, text that is not UTF-8) and where gslb serves less
(delegations, other classes and types, $INCLUDE, $GENERATE); the test lists each case.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from gslb.config.model import Config
from gslb.errors import ConfigError
from gslb.zone import name as dnsname
from gslb.zone.codes import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CAA,
    TYPE_CNAME,
    TYPE_HINFO,
    TYPE_MX,
    TYPE_NS,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
    TYPE_SSHFP,
    TYPE_TLSA,
    TYPE_TXT,
)
from gslb.zone.zone import Record, Zone, Zones, build_zone

MAX_TTL = 2**31 - 1  # RFC 2181 section 8
MAX_RDATA = 65535

# (rdata, presentation text, key of the target name for NS/CNAME/MX/SRV)
_Encoded = tuple[bytes, str, bytes | None]
# encoder(data tokens, current origin wire, current origin text)
_Encoder = Callable[[list[str], bytes, str], _Encoded]

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_RE = re.compile(r"(?:[0-9]+[smhdwSMHDW])+", re.ASCII)
_TTL_PART = re.compile(r"([0-9]+)([smhdwSMHDW])", re.ASCII)
_IPV4 = re.compile(r"\.".join([r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"] * 4), re.ASCII)
_CLASSES = frozenset({"CH", "HS", "CS", "NONE", "ANY"})
_CLASS_N = re.compile(r"CLASS[0-9]+", re.ASCII)
# Whole tokens: a quoted string, a run of plain or escaped characters, a parenthesis, the
# start of a comment; the last branch catches what is left (an unterminated quote, a lone
# backslash). Only space and tab separate tokens, as in BIND: a no-break space is an octet
# of the name it sits in, not a separator.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(?:[^ \t"();\\]|\\.)+|[()]|;|[^ \t]')
_SPECIAL = re.compile(r'["();\\]')
# names whose presentation text `to_text` would print as written (no escapes needed)
_PLAIN_NAME = re.compile(r"[-A-Za-z0-9_*.]+", re.ASCII)
_LENGTH = [bytes((n,)) for n in range(256)]
# NUL and the C0 controls other than tab and the line end "\n" (a "\r" before it is gone)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
# RFC 952/1123 host name labels on keys (folded to lower case): BIND's check-names, which
# named applies to primary zones by default ("check-names primary fail")
_HOST_LABEL = re.compile(rb"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_HOST_RULE = "(each label of letters, digits and inner hyphens, RFC 1123)"
_REVERSE = (b"\x07in-addr\x04arpa\x00", b"\x03ip6\x04arpa\x00")


def load_zone_file(path: Path, origin: bytes) -> list[Record]:
    """Parse one master file whose default origin is the name `origin`; every problem at once."""
    records, _ = _load(path, dnsname.key(origin), frozenset())
    return records


def load_zones(config: Config) -> Zones:
    """Every configured zone with the services that live in it; all problems reported together."""
    problems: list[str] = []
    zones: list[Zone] = []
    for zone_config in config.zones:
        try:
            origin = dnsname.key(dnsname.from_text(zone_config.origin))
            services = {
                dnsname.key(dnsname.from_text(s.name)): s
                for s in config.services.values()
                if dnsname.key(dnsname.from_text(s.zone)) == origin
            }
        except ValueError as exc:
            problems.append(f"{config.source}: {exc}")
            continue
        try:
            records, lines = _load(zone_config.file, origin, frozenset(services))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        clashes = len(problems)
        for record, line in zip(records, lines, strict=True):
            service = services.get(record.owner)
            if service is not None and record.rtype in (TYPE_A, TYPE_AAAA, TYPE_CNAME):
                problems.append(
                    f"{zone_config.file}, line {line}: {service.name} is a service (see {config.source}); "
                    "remove its static A/AAAA/CNAME records"
                )
        if len(problems) > clashes:
            continue
        try:
            zones.append(build_zone(origin, records, services))
        except ValueError as exc:  # a service outside its zone: the config loader should catch it
            problems.append(f"{config.source}: {exc}")
    if problems:
        raise ConfigError(str(config.source), problems)
    return Zones(zones)


def _load(path: Path, origin: bytes, services: frozenset[bytes]) -> tuple[list[Record], list[int]]:
    """Records and the line each came from; raises one ConfigError with every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    data = data.removeprefix(codecs.BOM_UTF8)  # a byte order mark is not an owner name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # BIND takes such octets as they are; we want text, so that names and strings mean
        # what they show (an editor saving latin-1 is a mistake more often than a choice)
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            str(path),
            [
                f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                "write other octets in names and strings as \\DDD escapes"
            ],
        ) from None
    problems: list[str] = []
    failed: set[int] = set()  # types of records dropped for a problem: not reported missing too
    records, lines = _parse(text, origin, path, problems, failed)
    problems.extend(_check_zone(path, origin, records, lines, failed))
    if not problems:  # else a record dropped for its problem may be the address a target needs
        problems.extend(_check_targets(path, origin, records, lines, services))
    if problems:
        raise ConfigError(str(path), problems)
    return records, lines


def _parse(
    text: str, zone: bytes, path: Path, problems: list[str], failed: set[int]
) -> tuple[list[Record], list[int]]:
    records: list[Record] = []
    lines: list[int] = []
    seen: set[tuple[bytes, int, bytes]] = set()
    rrset_ttls: dict[tuple[bytes, int], tuple[int, int]] = {}  # (owner, type) -> (TTL, line)
    origin, origin_text = zone, dnsname.to_text(zone)
    origin_inside = True  # the current $ORIGIN lies in the zone
    default_ttl: int | None = None
    owner: bytes | None = None  # key of the last owner; None before the first or after a bad one
    owner_reported = False  # the last owner was bad and said so: its blank-owner followers stay quiet
    for number, tokens, blank_owner in _logical_records(text, path, problems):
        found = None
        try:
            head = tokens[0]
            if head[0] == "$":
                origin, origin_text, default_ttl = _directive(tokens, origin, origin_text, default_ttl)
                origin_inside = dnsname.is_within(dnsname.key(origin), zone)
                continue
            index = 0
            if blank_owner:
                if owner is None and not owner_reported:
                    raise ValueError("the first record needs an owner name")
            else:
                owner, owner_reported = None, True
                owner_key = dnsname.key(_wire(head, origin))
                # a relative owner lies under the origin: only check when that may be outside
                if (head[-1] == "." or not origin_inside) and not dnsname.is_within(owner_key, zone):
                    raise ValueError(
                        f"{dnsname.to_text(owner_key)} is outside the zone {dnsname.to_text(zone)}"
                    )
                owner, owner_reported = owner_key, False
                index = 1
            ttl: int | None = None
            in_class = False
            count = len(tokens)
            while index < count:
                token = tokens[index]
                index += 1
                upper = token.upper()
                found = _ENCODERS.get(upper)
                if found is not None:
                    break
                if upper in ("IN", "CLASS1") and not in_class:
                    in_class = True
                    continue
                if upper in _CLASSES or _CLASS_N.fullmatch(upper):
                    raise ValueError(f"class {token} is not served from zone files (only IN)")
                value = _ttl(token)
                if value is not None and ttl is None:
                    ttl = value
                    continue
                raise ValueError(_not_a_type(token, value))
            else:
                raise ValueError("the record has no type (and so no data)")
            if ttl is None:
                ttl = default_ttl
                if ttl is None:
                    raise ValueError("no TTL on the record and no $TTL before it")
            rtype, encoder = found
            if index < count and tokens[index] == "\\#":
                raise ValueError(
                    f"the generic form \\# (RFC 3597) is not supported; write {upper} data as text"
                )
            rdata, rtext, target = encoder(tokens[index:], origin, origin_text)
            if owner is not None and rtype in _CHECKED_OWNERS:
                _check_names(owner, rtype, rdata, upper)
            if len(rdata) > MAX_RDATA:
                raise ValueError(f"{upper} data of {len(rdata)} octets (at most {MAX_RDATA})")
        except ValueError as exc:
            problems.append(f"{path}, line {number}: {exc}")
            if found is not None:
                failed.add(found[0])
            continue
        if owner is None:  # data under a bad owner: checked above, not kept
            continue
        ident = (owner, rtype, rdata)
        if ident in seen:  # RFC 2181 section 5: an RRset holds no duplicates
            continue
        seen.add(ident)
        ttl_line = rrset_ttls.setdefault((owner, rtype), (ttl, number))
        if ttl_line[0] != ttl:  # BIND warns and takes the first; a mistake either way
            problems.append(
                f"{path}, line {number}: TTL {ttl} differs from the TTL {ttl_line[0]} of the same "
                f"{upper} RRset on line {ttl_line[1]} (RFC 2181 section 5.2: one TTL per RRset)"
            )
            continue
        records.append(Record(owner, rtype, ttl, rdata, rtext, target))
        lines.append(number)
    return records, lines


def _logical_records(text: str, path: Path, problems: list[str]) -> Iterator[tuple[int, list[str], bool]]:
    """Yield (first line number, tokens, owner omitted) per logical record.

    Quoted strings keep their quotes (so "@" quoted is not the origin); escapes stay as
    written for the field's own parser. A line with a bad quote or a stray ")" is reported
    here and its record dropped.
    """
    tokens: list[str] = []
    start = 0
    depth = 0
    blank_owner = False
    broken = False
    if "\r" in text:
        text = text.replace("\r\n", "\n")  # a lone "\r" is left for the control check
    checked = _CONTROL.search(text) is not None  # one scan of the whole text; lines only if needed
    # lines end at "\n" only (str.splitlines() also splits at form feeds and U+2028)
    for number, line in enumerate(text.split("\n"), 1):
        control = _CONTROL.search(line) if checked else None
        if control is not None:
            problems.append(
                f"{path}, line {number}: control character U+{ord(control.group()):04X} "
                "(write it as \\DDD inside a string; is this a text file?)"
            )
            if depth == 0:
                continue
            broken = True
        if depth == 0:
            start = number
            blank_owner = line[:1] in (" ", "\t")
            tokens = []
            broken = False
        if line.isascii() and _SPECIAL.search(line) is None:  # controls are gone: " " and "\t" split
            tokens.extend(line.split())
        else:
            for token in _TOKEN.findall(line):
                first = token[0]
                if first == ";":
                    break
                if first == "(":
                    depth += 1
                elif first == ")":
                    if depth == 0:
                        problems.append(f"{path}, line {number}: unbalanced parentheses: ')' without '('")
                        broken = True
                        break
                    depth -= 1
                elif token == '"':
                    problems.append(f"{path}, line {number}: unterminated quoted string")
                    broken = True
                    break
                elif token == "\\":
                    problems.append(
                        f"{path}, line {number}: a backslash at the end of the line escapes nothing"
                    )
                    broken = True
                    break
                else:
                    tokens.append(token)
        if depth == 0 and tokens and not broken:
            yield start, tokens, blank_owner
    if depth:
        problems.append(f"{path}, line {start}: unbalanced parentheses: a '(' here is never closed")


def _directive(
    tokens: list[str], origin: bytes, origin_text: str, default_ttl: int | None
) -> tuple[bytes, str, int | None]:
    """$ORIGIN and $TTL change the reading state; anything else is an error."""
    word = tokens[0].upper()
    if word == "$ORIGIN":
        if len(tokens) != 2:
            raise ValueError("$ORIGIN takes one domain name")
        origin = _wire(tokens[1], origin)
        return origin, dnsname.to_text(origin), default_ttl
    if word == "$TTL":
        if len(tokens) != 2:
            raise ValueError("$TTL takes one TTL")
        value = _ttl(tokens[1])
        if value is None:
            raise ValueError(f'$TTL "{tokens[1]}" is not a TTL (seconds, or units as in 1h30m)')
        return origin, origin_text, value
    if word in ("$INCLUDE", "$GENERATE"):
        raise ValueError(f"{tokens[0]} is not supported: gslb reads one file per zone, record by record")
    raise ValueError(f"{tokens[0]} is not a directive (there are $ORIGIN and $TTL)")


def _not_a_type(token: str, ttl: int | None) -> str:
    if token.upper() == "IN":
        return "the class IN is given twice"
    if ttl is not None:
        return f'"{token}" is a second TTL'
    if token[:1].isdigit():
        return f'"{token}" is neither a TTL nor a record type'
    return f"record type {token} is not supported (supported: {', '.join(sorted(_ENCODERS))})"


def _ttl(token: str) -> int | None:
    """Decimal seconds or BIND units (1h30m); None if it is not TTL syntax, ValueError if too big."""
    if token.isdigit() and token.isascii():
        value = int(token) if len(token) <= 12 else MAX_TTL + 1
    elif _TTL_RE.fullmatch(token):
        value = sum(
            (int(n) if len(n) <= 12 else MAX_TTL + 1) * _TTL_UNITS[u.lower()]
            for n, u in _TTL_PART.findall(token)
        )
    else:
        return None
    if value > MAX_TTL:
        raise ValueError(f"TTL {token} is above {MAX_TTL} seconds (RFC 2181 section 8)")
    return value


def _wire(token: str, origin: bytes) -> bytes:
    """A domain name in presentation form -> wire form (case kept), relative to `origin`.

    The same result as `gslb.zone.name.from_text`, which takes every name with an escape and
    says what is wrong with a bad one; plain names take this path, two to five times faster
    (owner and target names are most of the work of loading a zone).
    """
    if token[0] == '"':
        raise ValueError(f"{token}: a domain name is not a quoted string")
    if "\\" in token or token in {"@", "."}:
        return dnsname.from_text(token, origin)
    raw = token.encode("utf-8", "surrogateescape")
    tail = origin
    if raw[-1] == 0x2E:  # "."
        raw = raw[:-1]
        tail = dnsname.ROOT
    if b"." not in raw:  # the common owner: one label under the origin
        wire = _LENGTH[len(raw)] + raw + tail if len(raw) <= dnsname.MAX_LABEL else b""
    else:
        wire = b""
        for part in raw.split(b"."):
            if not 0 < len(part) <= dnsname.MAX_LABEL:
                wire = b""
                break
            wire += _LENGTH[len(part)] + part
        wire += tail if wire else b""
    if not wire or len(wire) > dnsname.MAX_NAME:
        return dnsname.from_text(token, origin)  # raises, naming the bad label or the length
    return wire


def _is_host(key: bytes, *, wildcard: bool = False) -> bool:
    """An RFC 952/1123 host name (BIND's dns_name_ishostname); the root counts as one."""
    length = key[0]
    if length == 0:
        return True
    first = key[1 : 1 + length]
    if wildcard and first == b"*":
        return _is_host_parent(key[2:])
    if not (first.isalnum() or _HOST_LABEL.fullmatch(first)):  # isalnum(): ASCII, the common case
        return False
    return _is_host_parent(key[1 + length :])


# owners share their parents (most often the origin): checking one label per name is enough
_is_host_parent = functools.lru_cache(maxsize=4096)(_is_host)


def _is_mailbox(key: bytes) -> bool:
    """An SOA mailbox (BIND's dns_name_ismailbox): any printable first label, then a host."""
    parts = dnsname.labels(key)
    if not parts:
        return True
    first = parts[0]
    return all(0x20 < octet < 0x7F for octet in first) and _is_host(key[len(first) + 1 :])


# A, AAAA and MX owners must be host names (BIND's checkowner; a wildcard label may lead)
_HOST_OWNERS = frozenset({TYPE_A, TYPE_AAAA, TYPE_MX})
_CHECKED_OWNERS = _HOST_OWNERS | {TYPE_PTR}


def _check_names(owner: bytes, rtype: int, rdata: bytes, upper: str) -> None:
    """BIND's check-names on the owner, and on a PTR target in a reverse zone."""
    if rtype in _HOST_OWNERS and not _is_host(owner, wildcard=True):
        raise ValueError(f"{dnsname.to_text(owner)} cannot own {upper} records: not a host name {_HOST_RULE}")
    reverse = rtype == TYPE_PTR and any(dnsname.is_within(owner, zone) for zone in _REVERSE)
    if reverse and not _is_host(dnsname.key(rdata)):
        raise ValueError(
            f"PTR target name {dnsname.to_text(rdata)} in a reverse zone is not a host name {_HOST_RULE}"
        )


def _looks_like_address(token: str) -> bool:
    """NS 192.0.2.1 is a name under the origin, but certainly a mistake (named -n/-m fail)."""
    text = token.removesuffix(".")
    if text[-1:].isdigit() and _IPV4.fullmatch(text):
        return True
    if ":" not in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _name(
    token: str, origin: bytes, origin_text: str, what: str, *, host: bool = False, server: bool = False
) -> tuple[bytes, str]:
    """A name inside RDATA: its wire form and its absolute presentation text. `host` asks for
    a host name (BIND's check-names on NS, MX, SRV targets and the SOA's server); `server`
    refuses what reads as an address (named-checkzone -n fail and -m fail on NS and MX)."""
    if server and _looks_like_address(token):
        raise ValueError(f'{what} "{token}" is an address; write the host name of the server')
    try:
        wire = _wire(token, origin)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if host and not _is_host(dnsname.key(wire)):
        raise ValueError(f"{what} {dnsname.to_text(wire)} is not a host name {_HOST_RULE}")
    if _PLAIN_NAME.fullmatch(token) is not None:  # valid (see above), so only dots between labels
        if token.endswith("."):
            return wire, token
        return wire, f"{token}.{origin_text}" if origin_text != "." else f"{token}."
    return wire, dnsname.to_text(wire)


def _fields(rtype: str, data: list[str], names: tuple[str, ...]) -> None:
    """Exactly one token per field: say what is missing, or what trails."""
    wanted = len(names)
    if len(data) < wanted:
        missing = names[len(data) :]
        listed = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        raise ValueError(f"{rtype} data is missing its {listed}")
    if len(data) > wanted:
        raise ValueError(f"unexpected {' '.join(data[wanted:])!r} after the {rtype} data")


def _uint(token: str, bits: int, what: str) -> int:
    limit = (1 << bits) - 1
    if not (token.isdigit() and token.isascii()) or len(token) > 12 or int(token) > limit:
        raise ValueError(f'{what} "{token}" is not a number from 0 to {limit}')
    return int(token)


def _character_string(token: str, what: str, limit: int | None = 255) -> tuple[bytes, str]:
    """A <character-string> (RFC 1035 section 5.1), quoted or not -> (octets, quoted text)."""
    body = token[1:-1] if token[0] == '"' else token
    raw = _unescape(body, what) if "\\" in body else body.encode("utf-8", "surrogateescape")
    if limit is not None and len(raw) > limit:
        raise ValueError(f"{what} of {len(raw)} octets (at most {limit}): {token[:40]}...")
    if body.isascii() and body.isprintable() and "\\" not in body:
        return raw, f'"{body}"'
    return raw, _quote(raw)


def _unescape(body: str, what: str) -> bytes:
    raw = body.encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(raw):
        octet = raw[index]
        if octet != 0x5C:  # backslash
            out.append(octet)
            index += 1
            continue
        digits = raw[index + 1 : index + 4]
        if digits[:1].isdigit():
            if len(digits) < 3 or not digits.isdigit() or int(digits) > 255:
                raise ValueError(f'{what}: \\DDD needs three digits up to 255 in "{body}"')
            out.append(int(digits))
            index += 4
        elif index + 1 < len(raw):
            out.append(raw[index + 1])
            index += 2
        else:
            raise ValueError(f'{what}: a trailing backslash escapes nothing in "{body}"')
    return bytes(out)


def _quote(raw: bytes) -> str:
    out = ['"']
    for octet in raw:
        if octet in (0x22, 0x5C):
            out.append("\\" + chr(octet))
        elif 0x20 <= octet < 0x7F:
            out.append(chr(octet))
        else:
            out.append(f"\\{octet:03d}")
    out.append('"')
    return "".join(out)


def _hex(tokens: list[str], rtype: str, what: str) -> bytes:
    if not tokens:
        raise ValueError(f"{rtype} data is missing its {what}")
    text = "".join(tokens)
    if not text.isascii() or len(text) % 2:
        raise ValueError(f"{rtype} {what} {text!r} is not hexadecimal octets")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{rtype} {what} {text!r} is not hexadecimal octets") from None


# One encoder per type: data tokens in, (rdata, text, target key) out, ValueError on any problem.


def _a(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 1:
        _fields("A", data, ("IPv4 address",))
    match = _IPV4.fullmatch(data[0])
    if match is None:
        raise ValueError(f'A data "{data[0]}" is not an IPv4 address')
    return bytes(map(int, match.groups())), data[0], None


def _aaaa(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 1:
        _fields("AAAA", data, ("IPv6 address",))
    try:
        if "%" in data[0]:  # a scope id means nothing in DNS
            raise ValueError(data[0])
        packed = ipaddress.IPv6Address(data[0]).packed
    except ValueError:
        raise ValueError(f'AAAA data "{data[0]}" is not an IPv6 address') from None
    return packed, data[0], None  # as written: str(IPv6Address) would double the cost


def _single_name(rtype: str, what: str, targeted: bool, *, server: bool = False) -> _Encoder:
    def encode(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
        if len(data) != 1:
            _fields(rtype, data, (what,))
        wire, text = _name(data[0], origin, origin_text, f"{rtype} {what}", host=server, server=server)
        return wire, text, dnsname.key(wire) if targeted else None

    return encode


def _mx(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 2:
        _fields("MX", data, ("preference", "exchange name"))
    preference = _uint(data[0], 16, "MX preference")
    wire, text = _name(data[1], origin, origin_text, "MX exchange name", host=True, server=True)
    return preference.to_bytes(2, "big") + wire, f"{preference} {text}", dnsname.key(wire)


def _srv(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 4:
        _fields("SRV", data, ("priority", "weight", "port", "target name"))
    priority = _uint(data[0], 16, "SRV priority")
    weight = _uint(data[1], 16, "SRV weight")
    port = _uint(data[2], 16, "SRV port")
    wire, text = _name(data[3], origin, origin_text, "SRV target name", host=True)
    rdata = priority.to_bytes(2, "big") + weight.to_bytes(2, "big") + port.to_bytes(2, "big") + wire
    return rdata, f"{priority} {weight} {port} {text}", dnsname.key(wire)


_SOA_FIELDS = ("primary name server", "mailbox", "serial", "refresh", "retry", "expire", "minimum")


def _soa(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 7:
        _fields("SOA", data, _SOA_FIELDS)
    mname, mtext = _name(data[0], origin, origin_text, "SOA primary name server", host=True)
    rname, rtext = _name(data[1], origin, origin_text, "SOA mailbox")
    if not _is_mailbox(dnsname.key(rname)):
        raise ValueError(
            f"SOA mailbox {rtext} is not a mailbox name: a first label of printable characters, "
            f"then a host name {_HOST_RULE}"
        )
    serial = _uint(data[2], 32, "SOA serial")
    timers = []
    for token, what in zip(data[3:], _SOA_FIELDS[3:], strict=True):
        value = _ttl(token)
        if value is None:
            raise ValueError(f'SOA {what} "{token}" is not a TTL')
        timers.append(value)
    rdata = mname + rname + b"".join(v.to_bytes(4, "big") for v in (serial, *timers))
    return rdata, " ".join([mtext, rtext, str(serial), *map(str, timers)]), None


def _txt(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if not data:
        raise ValueError("TXT data is missing its text (at least one string)")
    wire = bytearray()
    texts = []
    for token in data:
        raw, text = _character_string(token, "TXT string")
        wire += _LENGTH[len(raw)]
        wire += raw
        texts.append(text)
    return bytes(wire), " ".join(texts), None


def _hinfo(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) != 2:
        _fields("HINFO", data, ("CPU", "OS"))
    cpu, cpu_text = _character_string(data[0], "HINFO CPU")
    system, system_text = _character_string(data[1], "HINFO OS")
    return _LENGTH[len(cpu)] + cpu + _LENGTH[len(system)] + system, f"{cpu_text} {system_text}", None


def _caa(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    """RFC 8659: flags, a tag of ASCII letters and digits, and a value (no length octet)."""
    if len(data) != 3:
        _fields("CAA", data, ("flags", "tag", "value"))
    flags = _uint(data[0], 8, "CAA flags")
    tag = data[1][1:-1] if data[1][0] == '"' else data[1]
    if not (tag.isascii() and tag.isalnum()) or len(tag) > 255:
        raise ValueError(f'CAA tag "{data[1]}" is not 1 to 255 ASCII letters and digits')
    value, value_text = _character_string(data[2], "CAA value", limit=None)
    rdata = _LENGTH[flags] + _LENGTH[len(tag)] + tag.encode("ascii") + value
    return rdata, f"{flags} {tag} {value_text}", None


_SSHFP_SIZES = {1: (20, "SHA-1"), 2: (32, "SHA-256")}  # RFC 4255, RFC 6594


def _sshfp(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) < 2:
        _fields("SSHFP", data, ("algorithm", "fingerprint type", "fingerprint"))
    algorithm = _uint(data[0], 8, "SSHFP algorithm")
    kind = _uint(data[1], 8, "SSHFP fingerprint type")
    fingerprint = _hex(data[2:], "SSHFP", "fingerprint")
    size = _SSHFP_SIZES.get(kind)
    if size is not None and len(fingerprint) != size[0]:
        raise ValueError(
            f"SSHFP fingerprint of {len(fingerprint)} octets for type {kind} ({size[1]} is {size[0]} octets)"
        )
    return bytes((algorithm, kind)) + fingerprint, f"{algorithm} {kind} {fingerprint.hex()}", None


def _tlsa(data: list[str], origin: bytes, origin_text: str) -> _Encoded:
    if len(data) < 3:
        _fields("TLSA", data, ("certificate usage", "selector", "matching type", "certificate data"))
    usage = _uint(data[0], 8, "TLSA certificate usage")
    selector = _uint(data[1], 8, "TLSA selector")
    matching = _uint(data[2], 8, "TLSA matching type")
    association = _hex(data[3:], "TLSA", "certificate data")
    text = f"{usage} {selector} {matching} {association.hex()}"
    return bytes((usage, selector, matching)) + association, text, None


_ENCODERS: dict[str, tuple[int, _Encoder]] = {
    "A": (TYPE_A, _a),
    "AAAA": (TYPE_AAAA, _aaaa),
    "CAA": (TYPE_CAA, _caa),
    "CNAME": (TYPE_CNAME, _single_name("CNAME", "target name", targeted=True)),
    "HINFO": (TYPE_HINFO, _hinfo),
    "MX": (TYPE_MX, _mx),
    "NS": (TYPE_NS, _single_name("NS", "name server", targeted=True, server=True)),
    "PTR": (TYPE_PTR, _single_name("PTR", "target name", targeted=False)),
    "SOA": (TYPE_SOA, _soa),
    "SRV": (TYPE_SRV, _srv),
    "SSHFP": (TYPE_SSHFP, _sshfp),
    "TLSA": (TYPE_TLSA, _tlsa),
    "TXT": (TYPE_TXT, _txt),
}


def _check_zone(
    path: Path, origin: bytes, records: list[Record], lines: list[int], failed: set[int]
) -> list[str]:
    """Whole-zone rules: one SOA and NS at the apex, no SOA or delegation below, CNAME alone."""
    problems = []
    apex = dnsname.to_text(origin)
    apex_soas: list[int] = []
    apex_ns = False
    cnames: dict[bytes, list[int]] = {}  # owner -> lines of its CNAMEs
    for record, line in zip(records, lines, strict=True):
        if record.rtype == TYPE_CNAME:
            cnames.setdefault(record.owner, []).append(line)
        elif record.rtype == TYPE_SOA:
            if record.owner == origin:
                apex_soas.append(line)
            else:
                problems.append(f"{path}, line {line}: SOA at {record.owner_text} is not at the apex {apex}")
        elif record.rtype == TYPE_NS:
            if record.owner == origin:
                apex_ns = True
            else:
                problems.append(
                    f"{path}, line {line}: NS at {record.owner_text}: "
                    "delegations below the apex are not supported"
                )
    if not apex_soas and TYPE_SOA not in failed:
        problems.append(f"{path}: the zone {apex} needs exactly one SOA at its apex (there is none)")
    for line in apex_soas[1:]:
        problems.append(f"{path}, line {line}: the zone {apex} needs exactly one SOA at its apex (a second)")
    if not apex_ns and TYPE_NS not in failed:
        problems.append(f"{path}: the zone {apex} needs NS records at its apex")
    if cnames:
        shared: dict[bytes, int] = {}  # owner with a CNAME -> line of its first other record
        for record, line in zip(records, lines, strict=True):
            if record.rtype != TYPE_CNAME and record.owner in cnames:
                shared.setdefault(record.owner, line)
        for owner, cname_lines in cnames.items():
            if owner in shared:
                problems.append(
                    f"{path}, line {cname_lines[0]}: {dnsname.to_text(owner)} has a CNAME and other data "
                    f"(line {shared[owner]}; RFC 1034 section 3.6.2)"
                )
            if len(cname_lines) > 1:
                problems.append(
                    f"{path}, line {cname_lines[1]}: {dnsname.to_text(owner)} has more than one CNAME "
                    "(RFC 2181 section 10.1)"
                )
    return problems


_TARGET_FIELDS = {TYPE_NS: "NS name server", TYPE_MX: "MX exchange name", TYPE_SRV: "SRV target name"}


def _check_targets(
    path: Path, origin: bytes, records: list[Record], lines: list[int], services: frozenset[bytes]
) -> list[str]:
    """In-zone targets, as named-checkzone -i local -M fail -S fail -m fail -n fail has them:
    an NS, MX or SRV target is no CNAME (RFC 2181 section 10.3); an apex NS or an MX target has
    an address (resolvers could not reach it; an SRV target without one is only unusual).
    Services answer A and AAAA queries: they count as addressed."""
    addressed = set(services)
    cnames: set[bytes] = set()
    for record in records:
        if record.rtype in (TYPE_A, TYPE_AAAA):
            addressed.add(record.owner)
        elif record.rtype == TYPE_CNAME:
            cnames.add(record.owner)
    nodes: set[bytes] = set()  # owners and the empty non-terminals above them, when needed

    def answering(name: bytes) -> bytes | None:
        """The owner whose records answer for `name`: itself, or the wildcard child of its
        closest encloser (RFC 4592), or None."""
        if name in addressed or name in cnames:
            return name
        if not nodes:
            nodes.add(origin)
            for owner in {*(r.owner for r in records), *services}:  # all in the zone by now
                node = owner
                while node not in nodes and len(node) > len(origin):
                    nodes.add(node)
                    node = dnsname.parent(node)
        if name in nodes:
            return name
        while name != origin:
            name = dnsname.parent(name)
            if name in nodes:
                wildcard = b"\x01*" + name
                return wildcard if wildcard in nodes else None
        return None

    problems = []
    for record, line in zip(records, lines, strict=True):
        target = record.target
        if record.rtype == TYPE_CNAME or target is None or not dnsname.is_within(target, origin):
            continue
        if target == b"\x00" or (record.rtype == TYPE_NS and record.owner != origin):
            continue  # the null MX/SRV "."; delegations are refused above
        field = f"{_TARGET_FIELDS[record.rtype]} {dnsname.to_text(target)}"
        answer = answering(target)
        if answer in cnames:
            problems.append(
                f"{path}, line {line}: {field} is a CNAME (RFC 2181 section 10.3: name the host itself)"
            )
        elif record.rtype != TYPE_SRV and answer not in addressed:
            problems.append(f"{path}, line {line}: {field} is in the zone but has no A or AAAA record")
    return problems
