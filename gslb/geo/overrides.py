"""Read the operator's GeoIP overrides file: CIDR -> datacenter, or CIDR -> coordinates.

Pure part of `gslb.geo`: standard library, `gslb.errors` and `gslb.config.model` only; it must
not import geoip2 or maxminddb. One rule per line, `#` starts a comment, blank lines are fine:

    192.0.2.0/24      datacenter=ams     # pin these clients to a datacenter
    2001:db8::/32     52.37,4.90         # place these clients at latitude,longitude

Every problem in the file is reported at once with its line number. Whether a datacenter name
exists is the config loader's question, not this module's.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from gslb.config.model import Override
from gslb.errors import ConfigError

IPNetwork = IPv4Network | IPv6Network

DATACENTER_KEY = "datacenter="
_MAPPED = IPv6Network("::ffff:0:0/96")


def canonical_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (inside ::ffff:0:0/96) as the IPv4 network it stands for."""
    if isinstance(network, IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return IPv4Network((int(mapped), network.prefixlen - 96))
    return network


def load_overrides(path: Path) -> tuple[Override, ...]:
    """Parse the overrides file at `path`; raise ConfigError listing every bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(str(path), [f"{path}, line {line}: not UTF-8 text ({exc.reason})"]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [f"{path}: cannot read ({exc.strerror or exc})"]) from exc
    overrides, problems = parse_overrides(text)
    if problems:
        raise ConfigError(str(path), [f"{path}, line {n}: {what}" for n, what in problems])
    return overrides


def parse_overrides(text: str) -> tuple[tuple[Override, ...], list[tuple[int, str]]]:
    """Parse overrides text; returns the rules and `(line number, problem)` pairs."""
    overrides: list[Override] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[IPNetwork, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        network, network_problem = _parse_network(tokens[0])
        override_fields, target_problem = _parse_target(tokens[1:])
        line_problems = [p for p in (network_problem, target_problem) if p is not None]
        if network is not None:
            key = canonical_network(network)
            if key in first_line:
                line_problems.append(f"duplicate network {tokens[0]} (first on line {first_line[key]})")
            else:
                first_line[key] = number
        if line_problems:
            problems.extend((number, p) for p in line_problems)
            continue
        assert network is not None and override_fields is not None
        datacenter, latitude, longitude = override_fields
        overrides.append(Override(network, datacenter=datacenter, latitude=latitude, longitude=longitude))
    return tuple(overrides), problems


def _parse_network(token: str) -> tuple[IPNetwork | None, str | None]:
    try:
        return ip_network(token), None
    except ValueError:
        pass
    try:
        loose = ip_network(token, strict=False)
    except ValueError:
        return None, f"{token!r} is not an IP network (expected e.g. 192.0.2.0/24 or 2001:db8::/32)"
    return None, f"{token} has host bits set (the network is {loose})"


def _parse_target(
    tokens: list[str],
) -> tuple[tuple[str | None, float | None, float | None] | None, str | None]:
    expected = f"expected {DATACENTER_KEY}NAME or LATITUDE,LONGITUDE"
    if not tokens:
        return None, f"nothing after the network: {expected}"
    if tokens[0].startswith(DATACENTER_KEY):
        name = tokens[0].removeprefix(DATACENTER_KEY)
        if len(tokens) > 1:
            return None, f"unexpected {' '.join(tokens[1:])!r} after {tokens[0]}"
        if not name:
            return None, f"empty datacenter name: {expected}"
        return (name, None, None), None
    joined = "".join(tokens)  # "52.37, 4.90" is as good as "52.37,4.90"
    parts = joined.split(",")
    if len(parts) != 2:
        return None, f"cannot read {' '.join(tokens)!r}: {expected}"
    try:
        latitude, longitude = float(parts[0]), float(parts[1])
    except ValueError:
        return None, f"cannot read {' '.join(tokens)!r}: {expected}"
    if not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
        return None, f"latitude {parts[0]} is outside -90..90"
    if not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
        return None, f"longitude {parts[1]} is outside -180..180"
    return (None, latitude, longitude), None
