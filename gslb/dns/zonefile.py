"""Read RFC 1035 master files into `gslb.zone.Record`s, with file:line on every problem.

Adapter layer (dnslib). We split the file into logical records ourselves (comments,
parentheses, $ORIGIN, $TTL, blank owners) so that each problem can name its line; dnslib
turns each record's RDATA text into wire bytes. Names inside RDATA are never compressed
here: a record's bytes must be valid wherever they are placed in a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from dnslib import QTYPE, RDMAP, DNSBuffer, ZoneParser

from gslb.config.model import Config
from gslb.errors import ConfigError
from gslb.zone.zone import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_MX,
    TYPE_NS,
    TYPE_SOA,
    TYPE_SRV,
    Record,
    Zone,
    Zones,
    build_zone,
)

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TARGET_FIELD = {TYPE_NS: "label", TYPE_CNAME: "label", TYPE_MX: "label", TYPE_SRV: "target"}
_SUPPORTED = {"SOA", "NS", "A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR", "HINFO", "SSHFP", "TLSA"}


class _FlatBuffer(DNSBuffer):  # type: ignore[misc]
    """A DNSBuffer that never compresses names."""

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)


def _logical_lines(text: str) -> Iterator[tuple[int, list[str], bool]]:
    """Yield (first line number, tokens, owner omitted) per logical record."""
    tokens: list[str] = []
    start = 0
    depth = 0
    blank_owner = False
    for number, line in enumerate(text.splitlines(), 1):
        if depth == 0:
            start = number
            blank_owner = line[:1] in (" ", "\t")
            tokens = []
        for match in re.finditer(r'"(?:[^"\\]|\\.)*"|;.*|\(|\)|[^\s()";]+', line):
            token = match.group(0)
            if token.startswith(";"):
                break
            if token == "(":
                depth += 1
            elif token == ")":
                depth = max(0, depth - 1)
            else:
                tokens.append(token)
        if depth == 0 and tokens:
            yield start, tokens, blank_owner
    if depth and tokens:
        yield start, [*tokens, "("], blank_owner  # unbalanced: reported below


def _ttl(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"((\d+)[smhdw])+", text.lower())
    if not parts:
        return None
    return sum(int(n) * _TTL_UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text.lower()))


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    if name.endswith("."):
        return name.lower()
    return f"{name}.{origin}".lower() if origin != "." else f"{name}.".lower()


def load_zone_file(path: Path, origin: str) -> list[Record]:
    """Parse one master file whose default origin is `origin` (absolute, lower case)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from exc
    problems: list[str] = []
    records: list[Record] = []
    current_origin = origin
    default_ttl: int | None = None
    owner: str | None = None
    for number, tokens, blank_owner in _logical_lines(text):

        def problem(message: str, n: int = number) -> None:
            problems.append(f"{path}, line {n}: {message}")

        if tokens[-1] == "(":
            problem("unbalanced parentheses")
            continue
        directive = tokens[0].upper()
        if directive == "$ORIGIN" and len(tokens) == 2:
            current_origin = _absolute(tokens[1], current_origin)
            continue
        if directive == "$TTL" and len(tokens) == 2:
            default_ttl = _ttl(tokens[1])
            if default_ttl is None:
                problem(f'"{tokens[1]}" is not a TTL')
            continue
        if directive.startswith("$"):
            problem(f"{tokens[0]} is not supported here (use $ORIGIN or $TTL)")
            continue
        if not blank_owner:
            owner = _absolute(tokens.pop(0), current_origin)
        if owner is None:
            problem("the first record needs an owner name")
            continue
        ttl, rclass = default_ttl, "IN"
        while tokens and (_ttl(tokens[0]) is not None or tokens[0].upper() in ("IN", "CH", "HS")):
            head = tokens.pop(0)
            if head.upper() in ("IN", "CH", "HS"):
                rclass = head.upper()
            else:
                ttl = _ttl(head)
        if not tokens:
            problem("a record needs a type and data")
            continue
        rtype = tokens.pop(0).upper()
        if rclass != "IN":
            problem(f"class {rclass} is not served from zone files (only IN)")
            continue
        if rtype not in _SUPPORTED:
            problem(f"record type {rtype} is not supported (supported: {', '.join(sorted(_SUPPORTED))})")
            continue
        if not owner.endswith(origin):
            problem(f"{owner} is outside the zone {origin}")
            continue
        if ttl is None:
            problem("no TTL on the record and no $TTL before it")
            continue
        try:
            record = _record(owner, ttl, rtype, tokens, current_origin)
        except Exception as exc:  # dnslib raises many kinds for bad RDATA
            problem(f"bad {rtype} data {' '.join(tokens)!r}: {exc}")
            continue
        if any(len(label) > 63 for label in owner.split(".")) or len(owner) > 254:
            problem(f"{owner} is not a valid domain name")
            continue
        records.append(record)
    problems.extend(_check_zone(path, origin, records))
    if problems:
        raise ConfigError(str(path), problems)
    return records


def _record(owner: str, ttl: int, rtype: str, data: list[str], origin: str) -> Record:
    rd = RDMAP.get(rtype)
    if rd is None:  # pragma: no cover - _SUPPORTED only lists types dnslib maps
        raise ValueError(f"no parser for {rtype}")
    if rtype == "SRV" and len(data) == 4:  # dnslib's SRV parser ignores the origin
        data = [*data[:3], _absolute(data[3], origin)]
    # dnslib's own lexer handles quoting; feed it one normalised line.
    line = f"{owner} {ttl} IN {rtype} {' '.join(data)}"
    (rr,) = list(ZoneParser(line, origin=origin))
    buffer = _FlatBuffer()
    rr.rdata.pack(buffer)
    code = int(getattr(QTYPE, rtype))
    field_name = _TARGET_FIELD.get(code)
    target = str(getattr(rr.rdata, field_name)).lower() if field_name else None
    text = rr.rdata.toZone() if hasattr(rr.rdata, "toZone") else " ".join(data)
    return Record(owner, code, ttl, bytes(buffer.data), text, target)


def _check_zone(path: Path, origin: str, records: list[Record]) -> list[str]:
    problems = []
    apex = [r for r in records if r.name == origin]
    if sum(r.rtype == TYPE_SOA for r in apex) != 1:
        problems.append(f"{path}: the zone {origin} needs exactly one SOA at its apex")
    if not any(r.rtype == TYPE_NS for r in apex):
        problems.append(f"{path}: the zone {origin} needs NS records at its apex")
    for r in records:
        if r.rtype == TYPE_SOA and r.name != origin:
            problems.append(f"{path}: SOA at {r.name} is not at the apex {origin}")
        if r.rtype == TYPE_NS and r.name != origin:
            problems.append(f"{path}: NS at {r.name}: delegations below the apex are not supported")
    names: dict[str, set[int]] = {}
    for r in records:
        names.setdefault(r.name, set()).add(r.rtype)
    for name, types in names.items():
        if TYPE_CNAME in types and len(types) > 1:
            problems.append(f"{path}: {name} has a CNAME and other data (RFC 1034 section 3.6.2)")
    return problems


def load_zones(config: Config) -> Zones:
    """Every configured zone with the services that live in it; all problems reported together."""
    problems: list[str] = []
    zones: list[Zone] = []
    for zone_config in config.zones:
        try:
            records = load_zone_file(zone_config.file, zone_config.origin)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        services = [s for s in config.services.values() if s.zone == zone_config.origin]
        for service in services:
            clash = [
                r for r in records if r.name == service.name and r.rtype in (TYPE_A, TYPE_AAAA, TYPE_CNAME)
            ]
            if clash:
                problems.append(
                    f"{zone_config.file}: {service.name} is a service (see {config.source}); "
                    "remove its static A/AAAA/CNAME records"
                )
        zones.append(build_zone(zone_config.origin, records, services))
    if problems:
        raise ConfigError(str(config.source), problems)
    return Zones(zones)
