"""Load `gslb.yaml` into the frozen model, reporting every problem with its place.

Adapter layer (yaml through `yamlnode`). Names are bound here: an unknown datacenter,
region or zone is a config error with file:line, never a KeyError at query time. Paths in
the file are relative to the file's own folder.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
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
    Identity,
    IPAddress,
    IPNetwork,
    Listen,
    Policy,
    ProberConfig,
    RateLimit,
    ServerConfig,
    Service,
    StateConfig,
    TcpLimits,
    WhenAllDown,
    ZoneConfig,
)
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
                self.problems.add(value, f'unknown key "{key}" (known: {known})')
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
            return ipaddress.ip_address(str(text)) if isinstance(text, str) else None
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


def load(path: Path | str) -> Config:
    """Read and validate one config file; raises ConfigError listing every problem."""
    config, problems = read(path)
    problems.raise_if_any()
    return config


def read(path: Path | str) -> tuple[Config, Problems]:
    """The config as far as it can be read, with every problem found (defaults stand in for
    bad values); `gslb check` uses it to check the zone files of an invalid config too. Raises
    ConfigError only when the file cannot be read as YAML at all."""
    source = Path(path)
    problems = Problems(source)
    reader = _Reader(problems, source.resolve().parent)
    root = parse(source, problems)
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
        node, {"listen", "workers", "udp_payload_size", "tcp", "identity", "metrics_listen", "rrl"}
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
            reader.listen(keys["metrics_listen"], default.listen[0]) if "metrics_listen" in keys else None
        ),
        rrl=_rate_limit(reader, keys.get("rrl")),
    )


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
    return check


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


def _services(
    reader: _Reader, node: Node | None, zones: tuple[ZoneConfig, ...], datacenters: Mapping[str, Datacenter]
) -> dict[str, Service]:
    out: dict[str, Service] = {}
    allowed = {"ttl", "policy", "min_up", "when_all_down", "fallback", "check", "datacenters"}
    for raw_name, item in reader.mapping(node, set()).items():
        name = _absolute(raw_name)
        keys = reader.mapping(item, allowed)
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
        endpoints: list[Endpoint] = []
        dc_nodes = reader.mapping(keys.get("datacenters"), set())
        if not dc_nodes:
            reader.problems.add(item, "a service needs at least one datacenter with endpoints")
        for dc_name, dc_node in dc_nodes.items():
            if dc_name not in datacenters:
                known = ", ".join(datacenters) or "none"
                reader.problems.add(dc_node, f'unknown datacenter "{dc_name}" (known: {known})')
                continue
            endpoints.extend(_endpoints(reader, dc_node, name, dc_name, check))
        fallback = tuple(
            a for a in (reader.address(n) for n in reader.sequence(keys.get("fallback"))) if a is not None
        )
        when_all_down = reader.choice(keys.get("when_all_down"), WhenAllDown, WhenAllDown.FAIL_OPEN)
        if when_all_down is WhenAllDown.FALLBACK and not fallback:
            reader.problems.add(
                keys.get("when_all_down") or item, 'when_all_down "fallback" needs "fallback" addresses'
            )
        out[name] = Service(
            name=name,
            zone=zone,
            ttl=reader.number(keys.get("ttl"), 30, low=0, high=86400, integer=True),
            policy=reader.choice(keys.get("policy"), Policy, Policy.NEAREST),
            min_up=reader.number(keys.get("min_up"), 1, low=1, integer=True),
            when_all_down=when_all_down,
            fallback=fallback,
            endpoints=tuple(endpoints),
        )
    return out


def _endpoints(reader: _Reader, node: Node, service: str, dc: str, check: Check) -> list[Endpoint]:
    if node.is_sequence:
        items, dc_check = reader.sequence(node), check
    else:
        keys = reader.mapping(node, {"endpoints", "check"})
        items = reader.sequence(keys.get("endpoints"))
        dc_check = _check(reader, keys.get("check"), check)
    out: list[Endpoint] = []
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
        out.append(Endpoint(endpoint_id, service, dc, address, ep_check, weight))
    return out


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
