"""The configuration reference and JSON Schema, generated from the config model.

Adapter layer of `gslb.config` (standard library and the model only; no yaml). Types,
defaults and allowed enum values come from the frozen dataclasses of `gslb.config.model`
(walked with `dataclasses.fields` and their type hints); what each key does, its example and
its bounds come from `DOCS` below, keyed by the YAML path an operator writes
(`services.<name>.check.interval_s`), because the YAML is not the dataclasses: services and
datacenters are keyed by name, `check.type` is `Check.kind`, endpoints are written per
datacenter, listen addresses are "host:port" strings. `SECTIONS` ties each YAML mapping to its
dataclass. Generation fails on a model field with no YAML key and no reason why not, and on a
key with no doc; `tests/unit/config/test_reference.py` also asks the loader itself which keys it
accepts at every mapping, whether it takes each example, each bound and null, so neither the
docs nor the schema can drift from the code. `docs/configuration.md` and
`docs/gslb.schema.json` are this module's output (`gslb config reference`, `gslb config schema`),
checked in and compared by that test.
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from gslb.config import model
from gslb.config.overrides import FLAGS, OVERRIDABLE, env_name

Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Doc:
    """What one YAML key does, as the operator reads it."""

    text: str
    example: str  # the value, as YAML
    low: float | None = None  # bounds of a number (of each number, in a list or mapping)
    high: float | None = None
    needs: Mapping[str, str] = field(default_factory=dict)  # other keys the example needs: path -> YAML
    default: str | None = None  # when the loader's default is not the model field's
    shape: str | None = None  # the YAML type when it is not the model field's
    schema: Schema | None = None  # the JSON Schema when it is not derived from the model field
    required: bool = False
    nullable: bool | None = None  # None: null is taken by optional strings and paths only


@dataclass(frozen=True, slots=True)
class Section:
    """One YAML mapping and the dataclass its keys come from."""

    path: str  # "" for the top level; "<name>" is a name the operator picks, "[]" a list item
    model: type | None
    text: str
    renamed: Mapping[str, str] = field(default_factory=dict)  # YAML key -> model field
    derived: Mapping[str, str] = field(default_factory=dict)  # model field -> where it comes from
    extra: tuple[str, ...] = ()  # YAML keys with no model field of their own
    also: tuple[str, ...] = ()  # other YAML paths taking the same keys


@dataclass(frozen=True, slots=True)
class Key:
    """One documented YAML key, its doc joined with what the model says about it."""

    path: str
    name: str
    doc: Doc
    shape: str
    default: str | None
    allowed: str
    schema: Schema


_SVC = "services.<name>"
_DC = f"{_SVC}.datacenters.<datacenter>"
_EP = f"{_DC}.endpoints[]"

SECTIONS: tuple[Section, ...] = (
    Section(
        "",
        model.Config,
        "The top level of `gslb.yaml`. Paths in the file (zone files, GeoIP database and "
        "overrides, snapshot, tokens, audit log) are relative to the file's own folder.",
        derived={
            "source": "the file's own path",
            "settings": "flags and GSLB_* variables (see Overrides below)",
        },
    ),
    Section("server", model.ServerConfig, "The DNS responder (`gslb serve`)."),
    Section("server.tcp", model.TcpLimits, "Limits of DNS over TCP, per responder process."),
    Section(
        "server.identity",
        model.Identity,
        "What the responder says about itself: EDNS NSID and CHAOS TXT queries "
        "(`dig +nsid`, `dig CH TXT id.server`). A name left out is answered with REFUSED.",
    ),
    Section(
        "server.rrl",
        model.RateLimit,
        "Response rate limiting of UDP replies against reflection attacks; a rate of 0 does not "
        "limit its class. The defaults are far above what a busy resolver network sends.",
    ),
    Section("zones[]", model.ZoneConfig, "One zone this server is authoritative for, from a zone file."),
    Section(
        "datacenters.<name>",
        model.Datacenter,
        "One datacenter, keyed by its name (used in services, drains and `geoip.default_order`).",
        derived={"name": "the key"},
    ),
    Section(
        _SVC,
        model.Service,
        "One steered name, keyed by the name (inside a configured zone), e.g. `www.example.com`.",
        derived={
            "name": "the key",
            "zone": "the longest configured zone holding the name",
            "endpoints": f"listed under `{_SVC}.datacenters`",
            "picks": f"`pick` under `{_DC}`",
        },
        extra=("check", "datacenters"),
    ),
    Section(
        f"{_SVC}.check",
        model.Check,
        "How the prober checks each endpoint of the service. The same keys may be given under "
        "a datacenter and under one endpoint: each level overrides the one above key by key.",
        renamed={"type": "kind"},
        also=(f"{_DC}.check", f"{_EP}.check"),
    ),
    Section(
        f"{_SVC}.pick",
        model.Pick,
        "Which endpoints of the chosen datacenter an answer carries. A datacenter may override "
        "it key by key with its own `pick`.",
        also=(f"{_DC}.pick",),
    ),
    Section(
        f"{_SVC}.geo",
        model.GeoRules,
        "Datacenter orders for clients by where they are; the most specific rule wins "
        "(subdivision, then country, then continent); other clients follow the strategy. Each "
        "order lists datacenters of this service.",
    ),
    Section(
        _DC,
        None,
        "A datacenter of the service written as a mapping (instead of a plain list of "
        "addresses), to give it its own check or pick.",
        extra=("endpoints", "check", "pick"),
    ),
    Section(
        _EP,
        model.Endpoint,
        "An endpoint written as a mapping (instead of a plain address), to give it a weight or "
        "its own check.",
        derived={
            "id": "service/datacenter/address",
            "service": "the service's key",
            "datacenter": "the datacenter's key",
            "ewma_tau_s": "`pick.ewma_tau_s`",
        },
    ),
    Section("geoip", model.GeoConfig, "Where clients are: the GeoIP database and operator overrides."),
    Section("state", model.StateConfig, "Where health, drains and the fleet view are kept."),
    Section("prober", model.ProberConfig, "The prober (`gslb probe`, or in-process in embedded mode)."),
    Section("api", model.ApiConfig, "The ops api (`gslb api`, or in-process in embedded mode)."),
)

_LISTEN_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*):[0-9]{1,5}$"
_IP: Schema = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
_ENDPOINT_ITEM: Schema = {"anyOf": [_IP, {"$ref": "#/$defs/endpoint"}]}
_ENDPOINT_LIST: Schema = {"type": "array", "items": _ENDPOINT_ITEM}

DOCS: Mapping[str, Doc] = {
    # -- top level
    "server": Doc("The DNS responder.", '{listen: ["0.0.0.0:53", "[::]:53"]}'),
    "zones": Doc(
        "The zones served, each from a zone file (RFC 1035 master file); services must lie inside one.",
        "[{origin: gslb.example.com, file: gslb.example.com.zone}]",
    ),
    "regions": Doc(
        "Region names; every datacenter belongs to one; a region can be drained at once.",
        "[europe, americas]",
    ),
    "datacenters": Doc(
        "The datacenters, keyed by name.",
        "{ams: {latitude: 52.37, longitude: 4.90, region: europe}, "
        "iad: {latitude: 39.04, longitude: -77.49, region: americas}}",
    ),
    "services": Doc(
        "The steered names, keyed by name.",
        '{www.gslb.example.com: {datacenters: {ams: ["192.0.2.10"]}}}',
    ),
    "geoip": Doc("Client location.", "{default_order: [ams, iad]}"),
    "state": Doc(
        "Health and drain state: in memory (embedded mode) or in Redis (distributed mode).",
        '{redis_url: "redis://127.0.0.1:6379/0"}',
    ),
    "prober": Doc("The prober.", "{id: prober-1}"),
    "api": Doc("The ops api.", '{listen: "127.0.0.1:8053"}'),
    # -- server
    "server.listen": Doc(
        "Addresses to answer DNS on, UDP and TCP. The first one's port also names this "
        "responder in the fleet view (host name:port).",
        '["0.0.0.0:53", "[::]:53"]',
    ),
    "server.workers": Doc(
        "Processes sharing the listeners (SO_REUSEPORT); more than 1 needs `state.redis_url`. "
        "A metrics port is offset by the worker index.",
        "2",
        low=1,
        high=64,
        needs={"state.redis_url": '"redis://127.0.0.1:6379/0"'},
    ),
    "server.udp_payload_size": Doc(
        "Largest UDP reply in bytes (EDNS); larger answers are truncated (TC=1). 1232 avoids "
        "IP fragmentation (DNS flag day 2020).",
        "1232",
        low=512,
        high=4096,
    ),
    "server.tcp": Doc("TCP limits.", "{max_connections: 4096}"),
    "server.identity": Doc("NSID and CHAOS identity.", "{nsid: ns1, id_server: ns1}"),
    "server.metrics_listen": Doc(
        "Address of this responder's /metrics (Prometheus), /healthz and /readyz. Not set: none.",
        '"127.0.0.1:9153"',
    ),
    "server.rrl": Doc("Response rate limiting.", "{responses_per_second: 50}"),
    "server.lame_duck_s": Doc(
        'On SIGTERM, /readyz says 503 "draining" for this long while DNS is still answered, so '
        "routes and load balancers move away first. Needs `metrics_listen`.",
        "10",
        low=0,
        high=3600,
        default="5 with metrics_listen, else 0",
        needs={"server.metrics_listen": '"127.0.0.1:9153"'},
    ),
    "server.max_state_age_s": Doc(
        "/readyz and `gslb healthcheck` say not ready when the health state was last read from "
        "the store longer ago than this (distributed mode). Not set: any age (static stability).",
        "30",
        low=0.1,
    ),
    # -- server.tcp
    "server.tcp.idle_timeout_s": Doc("Close a connection idle this long between queries.", "5", low=0.1),
    "server.tcp.read_timeout_s": Doc(
        "Close a connection that takes this long to send one query.", "2", low=0.1
    ),
    "server.tcp.max_connections": Doc("Open connections at most; more are refused.", "4096", low=1),
    "server.tcp.max_connections_per_client": Doc("Open connections from one address.", "32", low=1),
    "server.tcp.max_connections_per_network": Doc(
        "Open connections from one client network (see the prefix lengths).", "256", low=1
    ),
    "server.tcp.ipv4_prefix_length": Doc(
        "The IPv4 client network of the per-network limit.", "24", low=0, high=32
    ),
    "server.tcp.ipv6_prefix_length": Doc(
        "The IPv6 client network of the per-network limit.", "48", low=0, high=128
    ),
    # -- server.identity
    "server.identity.nsid": Doc(
        "The EDNS NSID option in replies to queries that ask for it (RFC 5001).", "ns1"
    ),
    "server.identity.id_server": Doc("The answer to `CH TXT id.server`.", "ns1"),
    "server.identity.hostname_bind": Doc("The answer to `CH TXT hostname.bind`.", "ns1.example.net"),
    "server.identity.version_bind": Doc("The answer to `CH TXT version.bind` and `version.server`.", "gslb"),
    # -- server.rrl
    "server.rrl.enabled": Doc("Limit UDP replies at all.", "false"),
    "server.rrl.responses_per_second": Doc(
        "Answers per second per (client network, name, type[, ECS subnet]).", "50", low=0, high=10_000_000
    ),
    "server.rrl.nxdomains_per_second": Doc(
        "NXDOMAIN and NODATA replies per second per (client network, zone).", "50", low=0, high=10_000_000
    ),
    "server.rrl.errors_per_second": Doc(
        "REFUSED, FORMERR, SERVFAIL, NOTIMP replies per second per client network.",
        "50",
        low=0,
        high=10_000_000,
    ),
    "server.rrl.all_per_second": Doc(
        "Every reply per second per client network; 0 is off (as in BIND).", "1000", low=0, high=10_000_000
    ),
    "server.rrl.ecs_per_second": Doc(
        "Answers per second for one steered name and type, summed over one network's ECS subnets.",
        "10000",
        low=0,
        high=10_000_000,
    ),
    "server.rrl.window_s": Doc(
        "A limited account recovers after about this long without a flood.", "5", low=1, high=3600
    ),
    "server.rrl.slip": Doc(
        "Every Nth limited reply goes out truncated (TC=1, the client retries over TCP); 0 "
        "drops all, 1 slips all.",
        "1",
        low=0,
        high=10,
    ),
    "server.rrl.ipv4_prefix_length": Doc("The IPv4 client network of an account.", "24", low=0, high=32),
    "server.rrl.ipv6_prefix_length": Doc("The IPv6 client network of an account.", "48", low=0, high=128),
    "server.rrl.exempt": Doc(
        "Client networks never limited. Loopback is exempt by default: it cannot come from the "
        "network, so no reply to it can be reflected at anyone.",
        '["127.0.0.0/8", "::1/128", "10.0.0.0/8"]',
    ),
    "server.rrl.log_only": Doc("Count and log what would be limited, but send everything.", "true"),
    "server.rrl.table_size": Doc(
        "Accounts kept (about 20 MB when full; the oldest are evicted).", "100000", low=100, high=10_000_000
    ),
    "server.rrl.log_interval_s": Doc(
        "One summary log line per interval in which replies were limited.", "60", low=0.1
    ),
    # -- zones[]
    "zones[].origin": Doc("The zone's name.", "gslb.example.com", required=True),
    "zones[].file": Doc(
        "The zone file (relative to the config file's folder). A service name in it is "
        "answered by steering; its other records as written.",
        "gslb.example.com.zone",
        required=True,
    ),
    # -- datacenters
    "datacenters.<name>.latitude": Doc(
        "Where it is, for the nearest strategy and the map.", "52.37", low=-90, high=90, required=True
    ),
    "datacenters.<name>.longitude": Doc("Where it is.", "4.90", low=-180, high=180, required=True),
    "datacenters.<name>.region": Doc("Its region, one of `regions`.", "europe", required=True),
    # -- services
    f"{_SVC}.ttl": Doc("TTL of the steered answers, in seconds.", "60", low=0, high=86400, default="30"),
    f"{_SVC}.strategy": Doc(
        "How a datacenter is chosen: `nearest` eligible one by great-circle distance to the "
        "client (then the next nearest), `failover` in the order the datacenters are listed, "
        "`weighted` a weighted draw per answer (see `weights`).",
        "failover",
        default="nearest",
    ),
    f"{_SVC}.min_up": Doc(
        "Endpoints that must be up (per record type) for a datacenter to be eligible.",
        "2",
        low=1,
        default="1",
    ),
    f"{_SVC}.when_all_down": Doc(
        "What to answer when no datacenter is eligible: `fail_open` every endpoint as if "
        "healthy, `fallback` the `fallback` addresses, `servfail` SERVFAIL.",
        "fallback",
        default="fail_open",
        needs={f"{_SVC}.fallback": '["192.0.2.1"]'},
    ),
    f"{_SVC}.fallback": Doc(
        "Addresses answered when every datacenter is down and `when_all_down` is `fallback`.",
        '["192.0.2.1", "2001:db8::1"]',
    ),
    f"{_SVC}.geo": Doc("Datacenter orders by client location.", "{countries: {DE: [ams]}}"),
    f"{_SVC}.weights": Doc(
        "With `strategy: weighted`: a weight for every datacenter of the service; 0 is a standby "
        "used only when the others are down.",
        "{ams: 60, iad: 40}",
        low=0,
        high=65535,
        needs={f"{_SVC}.strategy": "weighted"},
    ),
    f"{_SVC}.pick": Doc("The endpoint policy.", "{policy: round_robin}"),
    f"{_SVC}.check": Doc(
        "The health check of every endpoint of the service. Not set: no check (always up).",
        "{type: https, path: /health, host: www.example.com}",
        shape="mapping (see below)",
        schema={"$ref": "#/$defs/check"},
    ),
    f"{_SVC}.datacenters": Doc(
        "The service's datacenters, keyed by datacenter name, each a list of endpoints or a "
        "mapping with `endpoints`, `check` and `pick`. An endpoint is an address or a mapping "
        "with `address`, `weight` and `check`. At least one.",
        '{ams: ["192.0.2.10", "192.0.2.11"], iad: {endpoints: [{address: "198.51.100.10", weight: 2}]}}',
        shape="mapping of datacenter name to a list of endpoints, or to a mapping",
        schema={
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"anyOf": [_ENDPOINT_LIST, {"$ref": "#/$defs/service_datacenter"}]},
        },
        required=True,
    ),
    # -- check
    f"{_SVC}.check.type": Doc(
        "The kind of check: `http`/`https` (a GET, status in `expect_status`), `tcp` (a "
        "connect), `dns` (a query), `none` (always up).",
        "http",
    ),
    f"{_SVC}.check.interval_s": Doc("Seconds between checks of one endpoint.", "2", low=0.01),
    f"{_SVC}.check.timeout_s": Doc(
        "A check not done in this long fails; at most `interval_s`.", "0.5", low=0.01
    ),
    f"{_SVC}.check.rise": Doc("Passed checks in a row for a down endpoint to be up.", "3", low=1, high=100),
    f"{_SVC}.check.fall": Doc("Failed checks in a row for an up endpoint to be down.", "2", low=1, high=100),
    f"{_SVC}.check.port": Doc("Port to check. Not set: 80, 443 or 53 by `type`.", "8080", low=1, high=65535),
    f"{_SVC}.check.address": Doc(
        "Check this address instead of the endpoint's (e.g. a health proxy).", '"192.0.2.200"'
    ),
    f"{_SVC}.check.method": Doc("http/https: the request method.", "HEAD"),
    f"{_SVC}.check.path": Doc("http/https: the request path.", "/health"),
    f"{_SVC}.check.host": Doc("http/https: the Host header and TLS SNI.", "www.example.com"),
    f"{_SVC}.check.expect_status": Doc(
        "http/https: the statuses that pass, one or a range.",
        '"200-299"',
        default="200-399",
        shape="status or range",
        schema={
            "anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "string", "pattern": "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"},
            ]
        },
    ),
    f"{_SVC}.check.body_contains": Doc("http/https: the body must contain this text.", "OK"),
    f"{_SVC}.check.verify_tls": Doc("https: verify the certificate (against `host`).", "false"),
    f"{_SVC}.check.load_field": Doc(
        "http/https: a JSON body field holding the endpoint's load figure, for the `least_load` "
        "pick (`stats.load`: nested).",
        "load",
        needs={f"{_SVC}.check.type": "http"},
    ),
    f"{_SVC}.check.load_header": Doc(
        "http/https: a response header holding the load figure (instead of `load_field`).",
        "X-Load",
        needs={f"{_SVC}.check.type": "http"},
    ),
    f"{_SVC}.check.query_name": Doc("dns: the name to ask (required by a dns check).", "health.example.com"),
    f"{_SVC}.check.query_type": Doc("dns: the type to ask.", "AAAA"),
    f"{_SVC}.check.expect_rcode": Doc("dns: the rcode that passes.", "NXDOMAIN"),
    f"{_SVC}.check.expect_answer": Doc("dns: an answer must contain this text.", '"192.0.2.10"'),
    f"{_SVC}.check.ewma_alpha": Doc(
        "Weight of the newest round-trip time in the moving average (gray failure).", "0.5", low=0.001, high=1
    ),
    f"{_SVC}.check.degraded_rtt_ms": Doc(
        "An endpoint whose average round-trip time is above this is degraded (used after healthy ones).",
        "150",
        low=0.001,
    ),
    f"{_SVC}.check.degraded_ratio": Doc(
        "Degraded when the average round-trip time is this multiple of the endpoint's own long-run baseline.",
        "3",
        low=1,
    ),
    # -- pick
    f"{_SVC}.pick.policy": Doc(
        "`all` eligible endpoints, order rotated per answer; `round_robin` the next in turn; "
        "`weighted` random by endpoint weight (0 = standby); `consistent_hash` by client "
        "network, the same endpoints every time; `p2c_ewma` the cheaper of two random ones by "
        "latency; `least_load` least loaded first (needs a check with `load_field` or "
        "`load_header`).",
        "round_robin",
    ),
    f"{_SVC}.pick.max_records": Doc(
        "Records per answer. Not set: every eligible endpoint (`round_robin` and `consistent_hash`: 1).",
        "2",
        low=1,
        high=64,
        nullable=True,
    ),
    f"{_SVC}.pick.algorithm": Doc(
        "consistent_hash: `maglev` (even spread) or `ketama` (a ring).",
        "ketama",
        needs={f"{_SVC}.pick.policy": "consistent_hash"},
    ),
    f"{_SVC}.pick.ipv4_prefix_length": Doc(
        "consistent_hash: the IPv4 client network hashed.",
        "20",
        low=0,
        high=32,
        needs={f"{_SVC}.pick.policy": "consistent_hash"},
    ),
    f"{_SVC}.pick.ipv6_prefix_length": Doc(
        "consistent_hash: the IPv6 client network hashed.",
        "48",
        low=0,
        high=128,
        needs={f"{_SVC}.pick.policy": "consistent_hash"},
    ),
    f"{_SVC}.pick.table_size": Doc(
        "consistent_hash with maglev: the lookup table; a prime above 100 x the endpoints of a datacenter.",
        "10007",
        low=2,
        high=10_000_019,
        needs={f"{_SVC}.pick.policy": "consistent_hash"},
    ),
    f"{_SVC}.pick.ewma_tau_s": Doc(
        "p2c_ewma: decay time of the peak-EWMA latency cost.",
        "5",
        low=0.01,
        needs={f"{_SVC}.pick.policy": "p2c_ewma"},
    ),
    # -- geo
    f"{_SVC}.geo.subdivisions": Doc(
        "ISO 3166-2 subdivision code -> datacenter order.", '{"US-CA": [iad, ams]}'
    ),
    f"{_SVC}.geo.countries": Doc("ISO 3166-1 alpha-2 country code -> datacenter order.", "{DE: [ams, iad]}"),
    f"{_SVC}.geo.continents": Doc(
        "Continent code (AF, AN, AS, EU, NA, OC, SA) -> datacenter order.", "{EU: [ams, iad]}"
    ),
    # -- a datacenter of a service
    f"{_DC}.endpoints": Doc(
        "The endpoints: addresses, or mappings with `address`, `weight` and `check`.",
        '["192.0.2.10", {address: "192.0.2.11", weight: 2}]',
        shape="list of endpoints",
        schema=_ENDPOINT_LIST,
    ),
    f"{_DC}.check": Doc(
        "Check keys for this datacenter's endpoints, over the service's `check`.",
        "{port: 8443}",
        shape="mapping (check keys)",
        schema={"$ref": "#/$defs/check"},
    ),
    f"{_DC}.pick": Doc(
        "Pick keys for this datacenter, over the service's `pick`.",
        "{policy: weighted}",
        shape="mapping (pick keys)",
        schema={"$ref": "#/$defs/pick"},
    ),
    # -- an endpoint
    f"{_EP}.address": Doc("The endpoint's IPv4 or IPv6 address.", '"192.0.2.10"', required=True),
    f"{_EP}.weight": Doc("Its weight for the `weighted` pick; 0 is a standby.", "2", low=0, high=65535),
    f"{_EP}.check": Doc("Check keys for this endpoint alone.", "{port: 8443}"),
    # -- geoip
    "geoip.database": Doc(
        "A MaxMind City or Country database (.mmdb). Not set: GeoLite2 City of 2018 from PyPI "
        "(old: point this at a current file kept by geoipupdate).",
        "/var/lib/GeoIP/GeoLite2-City.mmdb",
    ),
    "geoip.overrides": Doc(
        "A file of `CIDR datacenter=NAME` or `CIDR LAT,LON` lines that win over the database.",
        "overrides.txt",
    ),
    "geoip.default_order": Doc("The datacenter order for clients with no known location.", "[iad, ams]"),
    # -- state
    "state.redis_url": Doc(
        "Redis shared by responders, probers and the api (`redis://`, `rediss://`, `unix://`, "
        "`redis+sentinel://`). Not set: embedded mode, one process with state in memory.",
        '"redis://redis.internal:6379/0"',
    ),
    "state.snapshot_path": Doc(
        "The last good state, written by each responder, read at start when the store is "
        "unreachable. Not set: a per-config file under $XDG_STATE_HOME/gslb.",
        "/var/lib/gslb/snapshot.json",
    ),
    "state.poll_interval_s": Doc("How often a responder reads the store.", "0.5", low=0.01),
    "state.redis_timeout_s": Doc("Timeout of one Redis command.", "1", low=0.01),
    "state.key_prefix": Doc("Prefix of every Redis key (several deployments on one Redis).", "gslb-staging"),
    # -- prober
    "prober.id": Doc("This prober's name in the store. Not set: the host name.", "prober-ams-1"),
    "prober.quorum": Doc(
        "Fresh probers that must agree an endpoint is down. Not set: a majority of the fresh ones.",
        "2",
        low=1,
    ),
    "prober.heartbeat_interval_s": Doc("How often a prober says it is alive.", "2", low=0.01),
    "prober.stale_after_s": Doc("A prober silent this long no longer counts.", "10", low=0.01),
    "prober.hold_stale_s": Doc(
        "With no fresh prober, the last verdicts hold this long, then every endpoint counts as "
        "up. Not set: they hold forever.",
        "600",
        low=0,
    ),
    "prober.max_concurrency": Doc("Checks in flight at most.", "512", low=1),
    # -- api
    "api.listen": Doc("The api's address (keep it on loopback or behind TLS).", '"127.0.0.1:8053"'),
    "api.tokens_file": Doc(
        "Lines of `NAME ROLE sha256:HEX` (`gslb token create`). Not set: one operate token made "
        "per user ($XDG_STATE_HOME/gslb/api-token).",
        "/etc/gslb/tokens",
    ),
    "api.audit_log": Doc("Every drain and undrain appended as a JSON line.", "/var/lib/gslb/audit.jsonl"),
    "api.metrics_require_token": Doc(
        "Ask a token for /metrics too (it is open by default, as scrapers expect).", "true"
    ),
}


class ReferenceError(Exception):
    """The docs do not cover the model (a test turns this into a failure)."""


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _section_of(cls: type) -> Section:
    for section in SECTIONS:
        if section.model is cls:
            return section
    raise ReferenceError(f"{cls.__name__} is used by the config model but has no section in SECTIONS")


def _slug(section: Section) -> str:
    """The $defs name of a section: "check", "service", "service_datacenter"."""
    names = {
        "": "config",
        _SVC: "service",
        _DC: "service_datacenter",
        _EP: "endpoint",
        "zones[]": "zone",
        "datacenters.<name>": "datacenter",
    }
    if section.path in names:
        return names[section.path]
    return section.path.rsplit(".", 1)[-1]


def documented_keys() -> list[Key]:
    """Every YAML key in file order, section by section; raises ReferenceError on a gap."""
    out: list[Key] = []
    problems: list[str] = []
    for section in SECTIONS:
        for name, hint, default in _section_keys(section):
            path = _join(section.path, name)
            doc = DOCS.get(path)
            if doc is None:
                problems.append(f"{path}: no entry in gslb.config.reference.DOCS")
                continue
            out.append(_key(path, name, doc, hint, default))
    if problems:
        raise ReferenceError("; ".join(problems))
    return out


def _section_keys(section: Section) -> list[tuple[str, Any, Any]]:
    """(YAML key, type hint or None, default or MISSING) of a section."""
    found: list[tuple[str, Any, Any]] = []
    if section.model is not None:
        hints = typing.get_type_hints(section.model)
        to_yaml = {v: k for k, v in section.renamed.items()}
        for f in fields(section.model):
            if f.name in section.derived:
                continue
            default = f.default if f.default is not MISSING else MISSING
            if f.default_factory is not MISSING:
                default = f.default_factory()
            found.append((to_yaml.get(f.name, f.name), hints[f.name], default))
    found.extend((name, None, MISSING) for name in section.extra)
    return found


def _key(path: str, name: str, doc: Doc, hint: Any, default: Any) -> Key:
    if hint is None and (doc.schema is None or doc.shape is None):
        raise ReferenceError(f"{path}: a key with no model field needs a shape and a schema in its Doc")
    given = doc.schema is not None and doc.shape is not None
    shape, schema, nullable = ("", {}, False) if hint is None or given else _describe(hint, doc)
    if doc.shape is not None:
        shape = doc.shape
    if doc.schema is not None:
        schema = dict(doc.schema)
    if doc.nullable is not None:
        nullable = doc.nullable
    if nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    schema["description"] = doc.text
    text = doc.default if doc.default is not None else _default_text(default)
    if text is not None and not is_dataclass(default):
        json_default = _json_default(default)
        if json_default is not None and doc.default is None:
            schema["default"] = json_default
    return Key(path, name, doc, shape, text, _allowed(hint, doc), schema)


def _base(hint: Any) -> tuple[Any, bool]:
    """The hint without `| None`, and whether None was in it."""
    args = typing.get_args(hint)
    if args and type(None) in args and typing.get_origin(hint) in (typing.Union, _UnionType):
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) == 1:
            return rest[0], True
        return typing.Union[rest], True  # noqa: UP007 - a union built at run time
    return hint, False


_UnionType = type(int | str)


def _describe(hint: Any, doc: Doc) -> tuple[str, Schema, bool]:
    """(shape, schema, null taken) of a model field's type hint."""
    base, optional = _base(hint)
    shape, schema = _shape(base, doc)
    # The loader's optional strings and paths take null; a listen address takes it as "the default".
    nullable = (optional and base in (str, Path)) or base is model.Listen
    return shape, schema, nullable


def _shape(hint: Any, doc: Doc) -> tuple[str, Schema]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner, items = _shape(args[0], doc)
        return f"list of {inner}", {"type": "array", "items": items}
    if origin in (Mapping, dict) or (origin is not None and origin.__name__ == "Mapping"):
        inner, values = _shape(args[1], doc)
        return f"mapping of name to {inner}", {"type": "object", "additionalProperties": values}
    if hint is model.Listen:
        return "host:port", {"type": "string", "pattern": _LISTEN_PATTERN}
    if isinstance(hint, type) and is_dataclass(hint):
        section = _section_of(hint)
        return f"mapping (`{section.path or 'top'}` keys)", {"$ref": f"#/$defs/{_slug(section)}"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "string", {"type": "string", "enum": [e.value for e in hint]}
    bounds = {k: v for k, v in (("minimum", doc.low), ("maximum", doc.high)) if v is not None}
    if hint is bool:
        return "boolean", {"type": "boolean"}
    if hint is int:
        return "integer", {"type": "integer", **{k: int(v) for k, v in bounds.items()}}
    if hint is float:
        return "number", {"type": "number", **bounds}
    if hint is str:
        return "string", {"type": "string"}
    if hint is Path:
        return "path", {"type": "string", "minLength": 1}
    if set(typing.get_args(hint)) == {IPv4Address, IPv6Address}:
        return "IP address", dict(_IP)
    if set(typing.get_args(hint)) == {IPv4Network, IPv6Network}:
        return "IP network", {"type": "string"}
    raise ReferenceError(f"no YAML shape for the model type {hint!r}: add one in reference._shape")


def _allowed(hint: Any, doc: Doc) -> str:
    base = _base(hint)[0] if hint is not None else None
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of " + ", ".join(f"`{e.value}`" for e in base)
    if doc.low is not None and doc.high is not None:
        return f"{_number(doc.low)} to {_number(doc.high)}"
    if doc.low is not None:
        return f"at least {_number(doc.low)}"
    return ""


def _number(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):_}".replace("_", " ") if abs(value) >= 100_000 else str(int(value))
    return f"{value:g}"


def _default_text(value: Any) -> str | None:
    """A model default as the operator would write it; None: not set."""
    if value is MISSING or is_dataclass(value):
        return None
    if value is None:
        return "not set"
    json_value = _json_default(value)
    return json.dumps(json_value) if not isinstance(json_value, str) else json_value


def _json_default(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, model.Listen):
        return f"[{value.host}]:{value.port}" if ":" in value.host else f"{value.host}:{value.port}"
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_default(v) for k, v in value.items()}
    return str(value)


# -- output --------------------------------------------------------------------------------------


def schema() -> Schema:
    """JSON Schema (draft 2020-12) of `gslb.yaml`, for editors and YAML language servers."""
    by_section: dict[str, list[Key]] = {}
    for key in documented_keys():
        by_section.setdefault(_parent(key), []).append(key)
    defs: dict[str, Schema] = {}
    for section in SECTIONS:
        members = by_section.get(section.path, [])
        body: Schema = {
            "type": "object",
            "description": section.text,
            "properties": {k.name: k.schema for k in members},
            "additionalProperties": False,
        }
        required = [k.name for k in members if k.doc.required]
        if required:
            body["required"] = required
        defs[_slug(section)] = body
    top = defs.pop("config")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gslb.yaml",
        **top,
        "$defs": defs,
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def markdown() -> str:
    """docs/configuration.md."""
    lines = [
        "# gslb configuration reference",
        "",
        "<!-- Generated by `gslb config reference` from gslb/config/model.py and "
        "gslb/config/reference.py: edit those, then run `gslb config reference > "
        "docs/configuration.md`. -->",
        "",
        "Every key of `gslb.yaml`: its type, default, allowed values, what it does and an "
        "example. `gslb check -c gslb.yaml` validates a file; unknown keys are errors (with a "
        '"did you mean"). Paths in the file are relative to the file\'s own folder. A JSON '
        "Schema for editors is in [gslb.schema.json](gslb.schema.json) (`gslb config schema` "
        "prints it for the installed version); for the YAML language server (VS Code, Neovim, "
        "...) put a line naming it, by a path relative to the config file or a URL, at the "
        "top of the file:",
        "",
        "```yaml",
        "# yaml-language-server: $schema=../docs/gslb.schema.json",
        "```",
        "",
        "`<name>` stands for a name you choose, `[]` for an item of a list. Sections:",
        "",
    ]
    lines += [f"- [`{s.path or 'top level'}`](#{_anchor(s)})" for s in SECTIONS]
    lines += ["- [Overrides: flags and environment](#overrides-flags-and-environment)", ""]
    all_keys = documented_keys()
    for section in SECTIONS:
        lines += ["", f"## {section.path or 'top level'}", "", section.text]
        if section.also:
            lines += ["", "The same keys are taken at " + ", ".join(f"`{p}`" for p in section.also) + "."]
        if section.derived:
            lines += [
                "",
                "Set by gslb, not written here: "
                + "; ".join(f"`{name}` ({where})" for name, where in section.derived.items())
                + ".",
            ]
        lines.append("")
        for key in (k for k in all_keys if _parent(k) == section.path):
            lines += _key_lines(key)
    lines += _override_lines()
    return "\n".join(lines).rstrip() + "\n"


def _anchor(section: Section) -> str:
    text = (section.path or "top level").lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _parent(key: Key) -> str:
    return key.path[: -len(key.name) - 1] if key.path != key.name else ""


def _key_lines(key: Key) -> list[str]:
    facts = [key.shape]
    if key.doc.required:
        facts.append("required")
    if key.default == "not set":
        facts.append("not set by default")
    elif key.default is not None:
        facts.append(f"default `{key.default}`")
    if key.allowed:
        facts.append(key.allowed)
    if key.path in OVERRIDABLE:
        facts.append(f"`${env_name(key.path)}`")
    example = f"Example: `{key.name}: {key.doc.example}`"
    if key.doc.needs:
        example += " (with " + ", ".join(f"`{p.rsplit('.', 1)[-1]}: {v}`" for p, v in key.doc.needs.items())
        example += ")"
    return [f"### `{key.path}`", "", "*" + ", ".join(facts) + ".* " + key.doc.text, "", example + ".", ""]


def _override_lines() -> list[str]:
    lines = [
        "",
        "## Overrides: flags and environment",
        "",
        "What a host or a container varies can be given over the file, so that one file runs "
        "several processes on one host or one image in many containers. Precedence: the file < "
        "`GSLB_*` environment variables < flags. A variable is named `GSLB_` and the YAML path "
        "upper cased, dots as underscores; an empty one counts as unset; `GSLB_SERVER_LISTEN` "
        "takes a comma-separated list. Relative paths given this way are relative to the "
        'working directory. Values are checked like the file\'s (`GSLB_SERVER_LISTEN: "x" is '
        "not ADDRESS:PORT ...`) and kept over a SIGHUP reload. Variables apply to every "
        "command that reads the config (`serve`, `probe`, `api`, `check`, `healthcheck`, "
        "`explain`, `token create`).",
        "",
        "| YAML key | environment variable | flags |",
        "| --- | --- | --- |",
    ]
    for path in OVERRIDABLE:
        flags = [
            f"`gslb {command} {flag.flag}`"
            for flag in FLAGS
            if path in flag.paths
            for command in flag.commands
        ]
        lines.append(f"| `{path}` | `{env_name(path)}` | {', '.join(flags) or '-'} |")
    lines += [
        "",
        "`--identity NAME` sets `server.identity.nsid`, `id_server` and `hostname_bind` at once; "
        "`--listen` may be repeated.",
    ]
    return lines
