"""Load `gslb.yaml` into the frozen model, reporting every problem with its place.

Adapter layer (yaml through `yamlnode`). Names are bound here: an unknown datacenter,
region or zone is a config error with file:line, never a KeyError at query time. Paths in
the file are relative to the file's own folder.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from gslb.config.model import (
    ApiConfig,
    Check,
    CheckKind,
    Config,
    Datacenter,
    Endpoint,
    GeoConfig,
    GeoRules,
    HashAlgorithm,
    Identity,
    IPAddress,
    IPNetwork,
    Listen,
    Pick,
    PickPolicy,
    ProberConfig,
    RateLimit,
    ServerConfig,
    Service,
    Setting,
    StateConfig,
    Strategy,
    TcpLimits,
    WhenAllDown,
    ZoneConfig,
)
from gslb.config.overrides import graft
from gslb.config.yamlnode import Node, Problems, parse
from gslb.errors import ConfigError

T = TypeVar("T")

_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-_.*")


class _Reader:
    """Typed access to YAML nodes; every failed read is recorded, never raised."""

    def __init__(self, problems: Problems, base: Path) -> None:
        self.problems = problems
        self.base = base

    def mapping(self, node: Node | None, allowed: set[str]) -> dict[str, Node]:
        if node is None or node.is_null:
            return {}
        if not node.is_mapping:
            self.problems.add(node, "expected a mapping")
            return {}
        out: dict[str, Node] = {}
        for key, value in node.items():
            if allowed and key not in allowed:
                known = ", ".join(sorted(allowed))
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                self.problems.add(value, f'unknown key "{key}" ({hint}known: {known})')
            else:
                out[key] = value
        return out

    def sequence(self, node: Node | None) -> list[Node]:
        if node is None or node.is_null:
            return []
        if not node.is_sequence:
            self.problems.add(node, "expected a list")
            return []
        return list(node.elements())

    def value(self, node: Node | None, kind: type[T] | tuple[type, ...], default: T) -> T:
        if node is None:
            return default
        value = node.scalar() if not (node.is_mapping or node.is_sequence) else None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is None or isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds).replace("str", "string")
            self.problems.add(node, f"expected {names}, got {_show(node)}")
            return default
        return value  # type: ignore[return-value]

    def number(
        self, node: Node | None, default: T, *, low: float, high: float = math.inf, integer: bool = False
    ) -> T:
        if node is None:
            return default
        value = self.value(node, int if integer else float, None)
        if value is None:
            return default
        if not low <= value <= high:
            bound = f"below {_number(low)}" if value < low else f"above {_number(high)}"
            self.problems.add(node, f"{_number(value)} is {bound}")
            return default
        return value  # type: ignore[return-value]

    def optional_str(self, node: Node | None) -> str | None:
        if node is None or node.is_null:
            return None
        return self.value(node, str, None)

    def path(self, node: Node | None) -> Path | None:
        text = self.optional_str(node)
        if text is None:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path

    def choice(self, node: Node | None, enum_type: type[Any], default: T) -> T:
        if node is None:
            return default
        text = self.value(node, str, None)
        if text is None:
            return default
        try:
            return enum_type(text)  # type: ignore[no-any-return]
        except ValueError:
            known = ", ".join(e.value for e in enum_type)
            self.problems.add(node, f'"{text}" is not one of: {known}')
            return default

    def address(self, node: Node) -> IPAddress | None:
        text = node.scalar() if not (node.is_mapping or node.is_sequence) else None
        try:
            if isinstance(text, str):  # anything else (10, null) is no address either: say so
                return ipaddress.ip_address(text)
        except ValueError:
            pass
        self.problems.add(node, f"{_show(node)} is not an IP address")
        return None

    def listen(self, node: Node | None, default: Listen) -> Listen:
        text = self.optional_str(node)
        if text is None:
            return default
        listen = _listen(text)
        if listen is None:
            self.problems.add(node, f'"{text}" is not ADDRESS:PORT (e.g. "127.0.0.1:5353" or "[::1]:5353")')
            return default
        return listen


def _number(value: float) -> str:
    """12, 0.5, 2147483648 (not 2.14748e+09)."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:g}"


def _listen(text: str) -> Listen | None:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return None
    return Listen(host, number) if sep and 0 <= number <= 65535 else None


def parse_listen(text: str) -> Listen:
    """ADDRESS:PORT from the command line; raises ConfigError."""
    listen = _listen(text)
    if listen is None:
        raise ConfigError("--listen", [f'"{text}" is not ADDRESS:PORT (e.g. "127.0.0.1:5353")'])
    return listen


def _show(node: Node) -> str:
    if node.is_mapping:
        return "a mapping"
    if node.is_sequence:
        return "a list"
    value = node.scalar()
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _absolute(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _check_name(reader: _Reader, node: Node, name: str) -> bool:
    labels = name.rstrip(".").split(".")
    if not set(name) <= _NAME_OK or any(not 0 < len(label) <= 63 for label in labels) or len(name) > 254:
        reader.problems.add(node, f'"{name}" is not a valid domain name')
        return False
    return True


def load(path: Path | str, settings: Sequence[Setting] = ()) -> Config:
    """Read and validate one config file (with `settings` from flags and GSLB_* variables read
    over it, `gslb.config.overrides`); raises ConfigError listing every problem."""
    config, problems = read(path, settings)
    problems.raise_if_any()
    return config


def read(path: Path | str, settings: Sequence[Setting] = ()) -> tuple[Config, Problems]:
    """The config as far as it can be read, with every problem found (defaults stand in for
    bad values); `gslb check` uses it to check the zone files of an invalid config too. Raises
    ConfigError only when the file cannot be read as YAML at all."""
    source = Path(path)
    problems = Problems(source)
    reader = _Reader(problems, source.resolve().parent)
    root = parse(source, problems)
    for setting in settings:
        raw = graft(root.raw if root is not None else None, setting)
        root = Node(raw, "") if raw is not None else None
    top = reader.mapping(
        root,
        {"server", "zones", "geoip", "regions", "datacenters", "services", "state", "prober", "api"},
    )
    server = _server(reader, top.get("server"))
    zones = _zones(reader, top.get("zones"))
    regions = _regions(reader, top.get("regions"))
    datacenters = _datacenters(reader, top.get("datacenters"), regions)
    services = _services(reader, top.get("services"), zones, datacenters)
    geoip = _geoip(reader, top.get("geoip"), datacenters)
    config = Config(
        source=source,
        server=server,
        zones=zones,
        regions=regions,
        datacenters=datacenters,
        services=services,
        geoip=geoip,
        state=_state(reader, top.get("state")),
        prober=_prober(reader, top.get("prober")),
        api=_api(reader, top.get("api")),
        settings=tuple(settings),
    )
    if config.server.workers > 1 and config.state.redis_url is None:
        node = top["server"]
        reader.problems.add(
            dict(node.items()).get("workers", node),
            f"{config.server.workers} workers need state.redis_url (each keeps its own view of the "
            "shared state; embedded mode runs one process)",
        )
    return config, problems


def _server(reader: _Reader, node: Node | None) -> ServerConfig:
    default = ServerConfig()
    keys = reader.mapping(
        node,
        {
            "listen",
            "workers",
            "udp_payload_size",
            "tcp",
            "identity",
            "metrics_listen",
            "rrl",
            "lame_duck_s",
            "max_state_age_s",
        },
    )
    listen = tuple(reader.listen(item, default.listen[0]) for item in reader.sequence(keys.get("listen")))
    tcp_keys = reader.mapping(keys.get("tcp"), {f.name for f in fields(TcpLimits)})
    tcp = TcpLimits(
        idle_timeout_s=reader.number(tcp_keys.get("idle_timeout_s"), 10.0, low=0.1),
        read_timeout_s=reader.number(tcp_keys.get("read_timeout_s"), 3.0, low=0.1),
        max_connections=reader.number(tcp_keys.get("max_connections"), 1024, low=1, integer=True),
        max_connections_per_client=reader.number(
            tcp_keys.get("max_connections_per_client"), 64, low=1, integer=True
        ),
        max_connections_per_network=reader.number(
            tcp_keys.get("max_connections_per_network"), 128, low=1, integer=True
        ),
        ipv4_prefix_length=reader.number(
            tcp_keys.get("ipv4_prefix_length"), 24, low=0, high=32, integer=True
        ),
        ipv6_prefix_length=reader.number(
            tcp_keys.get("ipv6_prefix_length"), 56, low=0, high=128, integer=True
        ),
    )
    ident_keys = reader.mapping(keys.get("identity"), {f.name for f in fields(Identity)})
    identity = Identity(**{k: reader.optional_str(v) for k, v in ident_keys.items()})
    return ServerConfig(
        listen=listen or default.listen,
        workers=reader.number(keys.get("workers"), 1, low=1, high=64, integer=True),
        udp_payload_size=reader.number(keys.get("udp_payload_size"), 1232, low=512, high=4096, integer=True),
        tcp=tcp,
        identity=identity,
        metrics_listen=(
            None  # null: none, as when left out (not the default DNS address)
            if "metrics_listen" not in keys or keys["metrics_listen"].is_null
            else reader.listen(keys["metrics_listen"], default.listen[0])
        ),
        rrl=_rate_limit(reader, keys.get("rrl")),
        lame_duck_s=_lame_duck_s(reader, keys),
        max_state_age_s=reader.number(keys.get("max_state_age_s"), default.max_state_age_s, low=0.1),
    )


def _lame_duck_s(reader: _Reader, keys: Mapping[str, Node]) -> float:
    """server.lame_duck_s: 5 s by default; 0 without a metrics listener, since nothing but
    its /readyz can tell anyone that the node is draining."""
    node = keys.get("lame_duck_s")
    if "metrics_listen" not in keys or keys["metrics_listen"].is_null:
        if node is not None and reader.number(node, 0.0, low=0, high=3600) > 0:
            reader.problems.add(
                node, "needs server.metrics_listen (only its /readyz can say that the node is draining)"
            )
        return 0.0
    return reader.number(node, ServerConfig().lame_duck_s, low=0, high=3600)


def _rate_limit(reader: _Reader, node: Node | None) -> RateLimit:
    d = RateLimit()
    keys = reader.mapping(node, {f.name for f in fields(RateLimit)})
    rates = {
        name: reader.number(keys.get(name), getattr(d, name), low=0, high=10_000_000, integer=True)
        for name in (
            "responses_per_second",
            "nxdomains_per_second",
            "errors_per_second",
            "all_per_second",
            "ecs_per_second",
        )
    }
    exempt: list[IPNetwork] = []
    for item in reader.sequence(keys.get("exempt")):
        text = item.scalar() if not (item.is_mapping or item.is_sequence) else None
        try:
            exempt.append(ipaddress.ip_network(str(text), strict=True))
        except ValueError as exc:
            reader.problems.add(item, f"{_show(item)} is not a network like 192.0.2.0/24 ({exc})")
    return RateLimit(
        enabled=reader.value(keys.get("enabled"), bool, d.enabled),
        window_s=reader.number(keys.get("window_s"), d.window_s, low=1, high=3600, integer=True),
        slip=reader.number(keys.get("slip"), d.slip, low=0, high=10, integer=True),
        ipv4_prefix_length=reader.number(
            keys.get("ipv4_prefix_length"), d.ipv4_prefix_length, low=0, high=32, integer=True
        ),
        ipv6_prefix_length=reader.number(
            keys.get("ipv6_prefix_length"), d.ipv6_prefix_length, low=0, high=128, integer=True
        ),
        exempt=tuple(exempt) if "exempt" in keys else d.exempt,
        log_only=reader.value(keys.get("log_only"), bool, d.log_only),
        table_size=reader.number(
            keys.get("table_size"), d.table_size, low=100, high=10_000_000, integer=True
        ),
        log_interval_s=reader.number(keys.get("log_interval_s"), d.log_interval_s, low=0.1),
        **rates,
    )


def _zones(reader: _Reader, node: Node | None) -> tuple[ZoneConfig, ...]:
    zones: dict[str, ZoneConfig] = {}
    for item in reader.sequence(node):
        keys = reader.mapping(item, {"origin", "file"})
        origin_node = keys.get("origin")
        origin = reader.optional_str(origin_node)
        file = reader.path(keys.get("file"))
        if origin is None or origin_node is None:
            reader.problems.add(item, 'missing "origin"')
            continue
        if file is None:
            reader.problems.add(item, 'missing "file"')
            continue
        origin = _absolute(origin)
        if not _check_name(reader, origin_node, origin):
            continue
        if origin in zones:
            reader.problems.add(origin_node, f'zone "{origin}" is configured twice')
        elif not file.is_file():
            reader.problems.add(keys["file"], f"zone file {file} does not exist")
        zones[origin] = ZoneConfig(origin, file)
    return tuple(zones.values())


def _regions(reader: _Reader, node: Node | None) -> tuple[str, ...]:
    regions: list[str] = []
    for item in reader.sequence(node):
        name = reader.value(item, str, "")
        if name in regions:
            reader.problems.add(item, f'region "{name}" is listed twice')
        elif name:
            regions.append(name)
    return tuple(regions)


def _datacenters(reader: _Reader, node: Node | None, regions: tuple[str, ...]) -> dict[str, Datacenter]:
    out: dict[str, Datacenter] = {}
    for name, item in reader.mapping(node, set()).items():
        keys = reader.mapping(item, {"latitude", "longitude", "region"})
        for required in ("latitude", "longitude", "region"):
            if required not in keys:
                reader.problems.add(item, f'missing "{required}"')
        region = reader.value(keys.get("region"), str, "")
        if region and region not in regions:
            known = ", ".join(regions) or "none; list them under regions"
            reader.problems.add(keys["region"], f'unknown region "{region}" (known: {known})')
        out[name] = Datacenter(
            name=name,
            latitude=reader.number(keys.get("latitude"), 0.0, low=-90, high=90),
            longitude=reader.number(keys.get("longitude"), 0.0, low=-180, high=180),
            region=region,
        )
    return out


_CHECK_KEYS = {f.name for f in fields(Check)} - {"kind"} | {"type"}


def _check(reader: _Reader, node: Node | None, base: Check) -> Check:
    if node is None:
        return base
    keys = reader.mapping(node, _CHECK_KEYS)
    changes: dict[str, Any] = {}
    readers: Mapping[str, Callable[[Node], Any]] = {
        "type": lambda n: reader.choice(n, CheckKind, base.kind),
        "interval_s": lambda n: reader.number(n, base.interval_s, low=0.01),
        "timeout_s": lambda n: reader.number(n, base.timeout_s, low=0.01),
        "rise": lambda n: reader.number(n, base.rise, low=1, high=100, integer=True),
        "fall": lambda n: reader.number(n, base.fall, low=1, high=100, integer=True),
        "port": lambda n: reader.number(n, base.port, low=1, high=65535, integer=True),
        "address": reader.address,
        "method": lambda n: reader.value(n, str, base.method).upper(),
        "path": lambda n: reader.value(n, str, base.path),
        "host": reader.optional_str,
        "expect_status": lambda n: _status_range(reader, n, base.expect_status),
        "body_contains": reader.optional_str,
        "verify_tls": lambda n: reader.value(n, bool, base.verify_tls),
        "load_field": reader.optional_str,
        "load_header": reader.optional_str,
        "query_name": reader.optional_str,
        "query_type": lambda n: reader.value(n, str, base.query_type).upper(),
        "expect_rcode": lambda n: reader.value(n, str, base.expect_rcode).upper(),
        "expect_answer": reader.optional_str,
        "ewma_alpha": lambda n: reader.number(n, base.ewma_alpha, low=0.001, high=1.0),
        "degraded_rtt_ms": lambda n: reader.number(n, base.degraded_rtt_ms, low=0.001),
        "degraded_ratio": lambda n: reader.number(n, base.degraded_ratio, low=1.0),
    }
    for key, value in keys.items():
        changes["kind" if key == "type" else key] = readers[key](value)
    check = replace(base, **changes)
    if check.timeout_s > check.interval_s:
        reader.problems.add(node, f"timeout_s {check.timeout_s:g} is above interval_s {check.interval_s:g}")
    if check.kind is CheckKind.DNS and check.query_name is None:
        reader.problems.add(node, 'a dns check needs "query_name"')
    _check_load(reader, node, keys, check)
    return check


def _check_load(reader: _Reader, node: Node, keys: Mapping[str, Node], check: Check) -> None:
    """A load figure comes from an http/https response: one JSON field or one header."""
    where = keys.get("load_field", keys.get("load_header", node))
    wanted = check.load_field is not None or check.load_header is not None
    if check.load_field is not None and check.load_header is not None:
        reader.problems.add(where, 'set "load_field" or "load_header", not both')
    elif wanted and check.kind not in (CheckKind.HTTP, CheckKind.HTTPS):
        name = "load_field" if check.load_field is not None else "load_header"
        reader.problems.add(where, f'"{name}" needs an http or https check, not {check.kind.value}')
    if check.load_field is not None and not all(check.load_field.split(".")):
        reader.problems.add(where, f'load_field "{check.load_field}" is not a field name or dotted path')
    if check.load_header is not None and not check.load_header.strip():
        reader.problems.add(where, "load_header is empty")


def _status_range(reader: _Reader, node: Node, default: tuple[int, int]) -> tuple[int, int]:
    text = str(node.scalar()) if not (node.is_mapping or node.is_sequence) else ""
    low, _, high = text.partition("-")
    try:
        pair = (int(low), int(high or low))
        if 100 <= pair[0] <= pair[1] <= 599:
            return pair
    except ValueError:
        pass
    reader.problems.add(node, f'"{text}" is not a status or range like "200-399"')
    return default


_SERVICE_KEYS = {
    "ttl",
    "strategy",
    "geo",
    "weights",
    "pick",
    "min_up",
    "when_all_down",
    "fallback",
    "check",
    "datacenters",
}
_CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")


def _services(
    reader: _Reader, node: Node | None, zones: tuple[ZoneConfig, ...], datacenters: Mapping[str, Datacenter]
) -> dict[str, Service]:
    out: dict[str, Service] = {}
    for raw_name, item in reader.mapping(node, set()).items():
        name = _absolute(raw_name)
        keys = reader.mapping(item, _SERVICE_KEYS)
        if not _check_name(reader, item, name):
            continue
        zone = max(
            (z.origin for z in zones if name == z.origin or name.endswith("." + z.origin)),
            key=len,
            default="",
        )
        if not zone:
            known = ", ".join(z.origin for z in zones) or "none"
            reader.problems.add(item, f'"{name}" is in no configured zone (zones: {known})')
        check = _check(reader, keys.get("check"), Check())
        pick = _pick(reader, keys.get("pick"), Pick())
        endpoints: list[Endpoint] = []
        picks: dict[str, Pick] = {}
        dc_nodes = reader.mapping(keys.get("datacenters"), set())
        if not dc_nodes:
            reader.problems.add(item, "a service needs at least one datacenter with endpoints")
        for dc_name, dc_node in dc_nodes.items():
            if dc_name not in datacenters:
                known = ", ".join(datacenters) or "none"
                reader.problems.add(dc_node, f'unknown datacenter "{dc_name}" (known: {known})')
                continue
            found, dc_pick = _endpoints(reader, dc_node, name, dc_name, check, pick=pick)
            endpoints.extend(found)
            if dc_pick is not pick:
                picks[dc_name] = dc_pick
        service_dcs = tuple(n for n in dc_nodes if n in datacenters)
        for dc_name, dc_pick in (("", pick), *picks.items()):
            pick_node = _key_node(dc_nodes.get(dc_name), "pick") if dc_name else keys.get("pick")
            where = _key_node(pick_node, "table_size") or dc_nodes.get(dc_name) or pick_node or item
            # the service's own pick: only the datacenters that do not override it
            users = [e for e in endpoints if dc_name or e.datacenter not in picks]
            _check_table_size(reader, where, dc_pick, users, dc_name)
        fallback = tuple(
            a for a in (reader.address(n) for n in reader.sequence(keys.get("fallback"))) if a is not None
        )
        when_all_down = reader.choice(keys.get("when_all_down"), WhenAllDown, WhenAllDown.FAIL_OPEN)
        if when_all_down is WhenAllDown.FALLBACK and not fallback:
            reader.problems.add(
                keys.get("when_all_down") or item, 'when_all_down "fallback" needs "fallback" addresses'
            )
        strategy = reader.choice(keys.get("strategy"), Strategy, Strategy.NEAREST)
        out[name] = Service(
            name=name,
            zone=zone,
            ttl=reader.number(keys.get("ttl"), 30, low=0, high=86400, integer=True),
            strategy=strategy,
            min_up=reader.number(keys.get("min_up"), 1, low=1, integer=True),
            when_all_down=when_all_down,
            fallback=fallback,
            endpoints=tuple(endpoints),
            geo=_geo_rules(reader, keys.get("geo"), service_dcs),
            weights=_weights(reader, keys.get("weights"), item, strategy, service_dcs),
            pick=pick,
            picks=picks,
        )
    return out


def _geo_rules(reader: _Reader, node: Node | None, service_dcs: tuple[str, ...]) -> GeoRules:
    """`geo: {subdivisions: {US-CA: [sjc]}, countries: {DE: [fra]}, continents: {AS: [sin]}}`."""
    keys = reader.mapping(node, {"subdivisions", "countries", "continents"})
    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind in ("subdivisions", "countries", "continents"):
        table: dict[str, tuple[str, ...]] = {}
        for code, value in reader.mapping(keys.get(kind), set()).items():
            upper = code.upper()
            if not _geo_code_ok(kind, upper):
                reader.problems.add(value, _geo_code_problem(kind, code))
                continue
            if upper in table:
                reader.problems.add(value, f'{kind} rule "{upper}" is given twice')
                continue
            order = _datacenter_list(reader, value, service_dcs)
            if order:
                table[upper] = order
        tables[kind] = table
    return GeoRules(
        subdivisions=tables["subdivisions"], countries=tables["countries"], continents=tables["continents"]
    )


def _geo_code_ok(kind: str, code: str) -> bool:
    if kind == "continents":
        return code in _CONTINENTS
    if kind == "countries":
        return len(code) == 2 and code.isascii() and code.isalpha()
    country, _, part = code.partition("-")
    return (
        len(country) == 2 and country.isalpha() and 1 <= len(part) <= 3 and part.isalnum() and code.isascii()
    )


def _geo_code_problem(kind: str, code: str) -> str:
    if kind == "continents":
        return f'"{code}" is not a continent code (one of: {", ".join(_CONTINENTS)})'
    if kind == "countries":
        return f'"{code}" is not an ISO 3166-1 alpha-2 country code like "DE"'
    return f'"{code}" is not an ISO 3166-2 subdivision code like "US-CA"'


def _datacenter_list(reader: _Reader, node: Node, service_dcs: tuple[str, ...]) -> tuple[str, ...]:
    """A list of the service's datacenters, each once, at least one."""
    names: list[str] = []
    items = reader.sequence(node)
    if not items and not node.is_null and node.is_sequence:
        reader.problems.add(node, "expected at least one datacenter")
    for element in items:
        dc = reader.value(element, str, "")
        if not dc:
            continue
        if dc not in service_dcs:
            known = ", ".join(service_dcs) or "none"
            reader.problems.add(
                element, f'"{dc}" is not a datacenter of this service (its datacenters: {known})'
            )
        elif dc in names:
            reader.problems.add(element, f'"{dc}" is listed twice')
        else:
            names.append(dc)
    return tuple(names)


def _weights(
    reader: _Reader, node: Node | None, item: Node, strategy: Strategy, service_dcs: tuple[str, ...]
) -> dict[str, int]:
    """`weights: {iad: 60, ams: 40, sin: 0}`: every datacenter of a weighted service, 0 = standby."""
    if strategy is not Strategy.WEIGHTED:
        if node is not None and not node.is_null:
            reader.problems.add(node, '"weights" apply only with strategy "weighted"')
        return {}
    weights: dict[str, int] = {}
    for dc, value in reader.mapping(node, set()).items():
        if dc not in service_dcs:
            known = ", ".join(service_dcs) or "none"
            reader.problems.add(
                value, f'"{dc}" is not a datacenter of this service (its datacenters: {known})'
            )
            continue
        weights[dc] = reader.number(value, 0, low=0, high=65535, integer=True)
    missing = [dc for dc in service_dcs if dc not in weights]
    where = node if node is not None and not node.is_null else item
    if missing:
        reader.problems.add(
            where, f'strategy "weighted" needs a weight for every datacenter: missing {", ".join(missing)}'
        )
    elif service_dcs and not any(weights.values()):
        reader.problems.add(where, 'strategy "weighted" needs one datacenter with a weight above 0')
    return weights


_PICK_KEYS = {f.name for f in fields(Pick)}
_PICK_ONLY = {
    "algorithm": PickPolicy.CONSISTENT_HASH,
    "ipv4_prefix_length": PickPolicy.CONSISTENT_HASH,
    "ipv6_prefix_length": PickPolicy.CONSISTENT_HASH,
    "table_size": PickPolicy.CONSISTENT_HASH,
    "ewma_tau_s": PickPolicy.P2C_EWMA,
}


def _pick(reader: _Reader, node: Node | None, base: Pick) -> Pick:
    """`pick: {policy: consistent_hash, algorithm: maglev, max_records: 2}` over `base`."""
    keys = reader.mapping(node, _PICK_KEYS)
    if not keys:
        return base
    policy = reader.choice(keys.get("policy"), PickPolicy, base.policy)
    for key, needs in _PICK_ONLY.items():
        if key in keys and policy is not needs:
            reader.problems.add(keys[key], f'"{key}" applies only with policy "{needs.value}"')
    max_records = keys.get("max_records")
    return replace(
        base,
        policy=policy,
        max_records=(
            None
            if max_records is not None and max_records.is_null
            else reader.number(max_records, base.max_records, low=1, high=64, integer=True)
        ),
        algorithm=reader.choice(keys.get("algorithm"), HashAlgorithm, base.algorithm),
        ipv4_prefix_length=reader.number(
            keys.get("ipv4_prefix_length"), base.ipv4_prefix_length, low=0, high=32, integer=True
        ),
        ipv6_prefix_length=reader.number(
            keys.get("ipv6_prefix_length"), base.ipv6_prefix_length, low=0, high=128, integer=True
        ),
        table_size=reader.number(
            keys.get("table_size"), base.table_size, low=2, high=10_000_019, integer=True
        ),
        ewma_tau_s=reader.number(keys.get("ewma_tau_s"), base.ewma_tau_s, low=0.01),
    )


def _key_node(node: Node | None, key: str) -> Node | None:
    """The value written under `key` of the mapping `node`, if any (where a problem points)."""
    if node is None or not node.is_mapping:
        return None
    return dict(node.items()).get(key)


def _check_table_size(
    reader: _Reader, node: Node, pick: Pick, endpoints: list[Endpoint], datacenter: str
) -> None:
    """Maglev needs a prime table well above the endpoint count (NSDI 2016, section 3.4)."""
    if pick.policy is not PickPolicy.CONSISTENT_HASH or pick.algorithm is not HashAlgorithm.MAGLEV:
        return
    size = pick.table_size
    if any(size % d == 0 for d in range(2, math.isqrt(size) + 1)):
        reader.problems.add(node, f"table_size {size} is not a prime (65537 is)")
        return
    counts: dict[str, int] = {}
    for e in endpoints:
        if not datacenter or e.datacenter == datacenter:
            counts[e.datacenter] = counts.get(e.datacenter, 0) + 1
    most = max(counts.values(), default=0)
    if size <= 100 * most:
        reader.problems.add(
            node, f"table_size {size} must be above 100 x the endpoints of a datacenter ({most})"
        )


def _endpoints(
    reader: _Reader, node: Node, service: str, dc: str, check: Check, *, pick: Pick
) -> tuple[list[Endpoint], Pick]:
    if node.is_sequence:
        items, dc_check, dc_pick = reader.sequence(node), check, pick
    else:
        keys = reader.mapping(node, {"endpoints", "check", "pick"})
        items = reader.sequence(keys.get("endpoints"))
        dc_check = _check(reader, keys.get("check"), check)
        dc_pick = _pick(reader, keys.get("pick"), pick)
    out: list[Endpoint] = []
    if dc_pick.policy is PickPolicy.LEAST_LOAD and not _reports_load(dc_check) and items:
        where = node if node.is_sequence else keys.get("pick") or node
        reader.problems.add(
            where, 'policy "least_load" needs a check with "load_field" or "load_header" (type http or https)'
        )
    for item in items:
        weight, ep_check, address_node = 1, dc_check, item
        if item.is_mapping:
            keys = reader.mapping(item, {"address", "weight", "check"})
            address_node = keys.get("address") or item
            if "address" not in keys:
                reader.problems.add(item, 'missing "address"')
                continue
            weight = reader.number(keys.get("weight"), 1, low=0, high=65535, integer=True)
            ep_check = _check(reader, keys.get("check"), dc_check)
        address = reader.address(address_node)
        if address is None:
            continue
        endpoint_id = f"{service.rstrip('.')}/{dc}/{address}"
        if any(e.id == endpoint_id for e in out):
            reader.problems.add(item, f"endpoint {address} is listed twice")
            continue
        out.append(
            Endpoint(endpoint_id, service, dc, address, ep_check, weight, ewma_tau_s=dc_pick.ewma_tau_s)
        )
    return out, dc_pick


def _reports_load(check: Check) -> bool:
    return check.load_field is not None or check.load_header is not None


def _geoip(reader: _Reader, node: Node | None, datacenters: Mapping[str, Datacenter]) -> GeoConfig:
    keys = reader.mapping(node, {"database", "overrides", "default_order"})
    database = reader.path(keys.get("database"))
    overrides = reader.path(keys.get("overrides"))
    for key, path in (("database", database), ("overrides", overrides)):
        if path is not None and not path.is_file():
            reader.problems.add(keys[key], f"{path} does not exist")
    order: list[str] = []
    for item in reader.sequence(keys.get("default_order")):
        name = reader.value(item, str, "")
        if name and name not in datacenters:
            reader.problems.add(item, f'unknown datacenter "{name}" (known: {", ".join(datacenters)})')
        elif name:
            order.append(name)
    return GeoConfig(database=database, overrides=overrides, default_order=tuple(order))


def _state(reader: _Reader, node: Node | None) -> StateConfig:
    d = StateConfig()
    keys = reader.mapping(node, {f.name for f in fields(StateConfig)})
    return StateConfig(
        redis_url=reader.optional_str(keys.get("redis_url")),
        snapshot_path=reader.path(keys.get("snapshot_path")),
        poll_interval_s=reader.number(keys.get("poll_interval_s"), d.poll_interval_s, low=0.01),
        redis_timeout_s=reader.number(keys.get("redis_timeout_s"), d.redis_timeout_s, low=0.01),
        key_prefix=reader.value(keys.get("key_prefix"), str, d.key_prefix),
    )


def _prober(reader: _Reader, node: Node | None) -> ProberConfig:
    d = ProberConfig()
    keys = reader.mapping(node, {f.name for f in fields(ProberConfig)})
    return ProberConfig(
        id=reader.optional_str(keys.get("id")),
        quorum=reader.number(keys.get("quorum"), None, low=1, integer=True),
        heartbeat_interval_s=reader.number(
            keys.get("heartbeat_interval_s"), d.heartbeat_interval_s, low=0.01
        ),
        stale_after_s=reader.number(keys.get("stale_after_s"), d.stale_after_s, low=0.01),
        hold_stale_s=reader.number(keys.get("hold_stale_s"), d.hold_stale_s, low=0),
        max_concurrency=reader.number(keys.get("max_concurrency"), d.max_concurrency, low=1, integer=True),
    )


def _api(reader: _Reader, node: Node | None) -> ApiConfig:
    d = ApiConfig()
    keys = reader.mapping(node, {f.name for f in fields(ApiConfig)})
    # The files are checked when the api starts: responders may share this config without them.
    return ApiConfig(
        listen=reader.listen(keys.get("listen"), d.listen),
        tokens_file=reader.path(keys.get("tokens_file")),
        audit_log=reader.path(keys.get("audit_log")),
        metrics_require_token=reader.value(keys.get("metrics_require_token"), bool, d.metrics_require_token),
    )
