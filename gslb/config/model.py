"""Frozen configuration model: what the operator wrote, bound and validated.

Pure layer: standard library only. These types describe intent (datacenters, services,
checks); runtime state (health, drains) lives in `gslb.health`, never here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle_timeout_s: float = 10.0
    read_timeout_s: float = 3.0
    max_connections: int = 1024
    max_connections_per_client: int = 64  # from one address
    max_connections_per_network: int = 128  # from one client network (a /24 or /56 by default)
    ipv4_prefix_length: int = 24
    ipv6_prefix_length: int = 56


@dataclass(frozen=True, slots=True)
class Identity:
    """Answers for NSID and CHAOS TXT queries; None means not configured (REFUSED)."""

    nsid: str | None = None
    id_server: str | None = None
    hostname_bind: str | None = None
    version_bind: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Response rate limiting of UDP replies (`gslb.dns.rrl`); per-second rates of 0 do not
    limit their class. The defaults are far above what a busy resolver network sends."""

    enabled: bool = True
    responses_per_second: int = 100  # answers, per (client network, name, type[, ECS subnet])
    nxdomains_per_second: int = 100  # NXDOMAIN and NODATA, per (client network, zone)
    errors_per_second: int = 100  # REFUSED, FORMERR, SERVFAIL, NOTIMP, ... per client network
    all_per_second: int = 0  # every reply, per client network (0: off, as in BIND)
    ecs_per_second: int = 20_000  # a steered name and type, summed over one network's ECS subnets
    window_s: int = 15  # a limited account recovers after about this long without a flood
    slip: int = 2  # every Nth limited reply goes out truncated (TC=1); 0 drops all, 1 slips all
    ipv4_prefix_length: int = 24
    ipv6_prefix_length: int = 56
    # Loopback sources cannot come from the network (the kernel drops them as martians), so no
    # reply to them can be reflected at anyone: local proxies, checks and tests are not limited.
    exempt: tuple[IPNetwork, ...] = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
    log_only: bool = False  # count and log what would be limited, send everything
    table_size: int = 50_000  # accounts kept (~20 MB when full; evicted by generations, gradually)
    log_interval_s: float = 10.0  # one summary line per interval in which replies were limited


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[Listen, ...] = (Listen("127.0.0.1", 5353),)
    workers: int = 1  # processes sharing the listeners (SO_REUSEPORT); > 1 needs Redis
    udp_payload_size: int = 1232
    tcp: TcpLimits = TcpLimits()
    identity: Identity = Identity()
    metrics_listen: Listen | None = None
    rrl: RateLimit = RateLimit()
    # SIGTERM: /readyz says 503 "draining" for this long while DNS is still answered, so that
    # routes and load balancers move away first; needs metrics_listen (nothing else can see it).
    lame_duck_s: float = 5.0
    # /readyz and `gslb healthcheck`: not ready when the health state was last read from the
    # store longer ago than this (distributed mode). None: any age (static stability).
    max_state_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    origin: str  # lower case, absolute, with the trailing dot
    file: Path


@dataclass(frozen=True, slots=True)
class Datacenter:
    name: str
    latitude: float
    longitude: float
    region: str


class CheckKind(enum.Enum):
    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    DNS = "dns"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Check:
    kind: CheckKind = CheckKind.NONE
    interval_s: float = 1.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3
    port: int | None = None  # None: 80/443/53 by kind
    address: IPAddress | None = None  # probe this instead of the endpoint address
    # http / https
    method: str = "GET"
    path: str = "/"
    host: str | None = None  # Host header and SNI
    expect_status: tuple[int, int] = (200, 399)
    body_contains: str | None = None
    verify_tls: bool = True
    load_field: str | None = None  # JSON body field holding a load figure ("stats.load": nested)
    load_header: str | None = None  # response header holding a load figure
    # dns
    query_name: str | None = None
    query_type: str = "A"
    expect_rcode: str = "NOERROR"
    expect_answer: str | None = None
    # gray failure
    ewma_alpha: float = 0.3
    degraded_rtt_ms: float | None = None  # absolute threshold
    degraded_ratio: float | None = None  # multiple of the endpoint's long-run baseline


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address serving one service in one datacenter."""

    id: str  # "<service>/<datacenter>/<address>", stable across restarts
    service: str
    datacenter: str
    address: IPAddress
    check: Check
    weight: int = 1
    ewma_tau_s: float = 10.0  # decay time of the peak-EWMA latency cost (the endpoint policy's)


class Strategy(enum.Enum):
    """How a service chooses among its datacenters."""

    NEAREST = "nearest"  # nearest eligible by great-circle distance, then the next nearest
    FAILOVER = "failover"  # a fixed order: the service's datacenters as listed
    WEIGHTED = "weighted"  # a weighted draw per answer; weight 0 = standby


class PickPolicy(enum.Enum):
    """Which endpoints of the chosen datacenter an answer carries."""

    ALL = "all"  # every eligible endpoint, order rotated per answer
    ROUND_ROBIN = "round_robin"  # the next endpoint(s) in turn
    WEIGHTED = "weighted"  # weighted random by endpoint weight; weight 0 = standby
    CONSISTENT_HASH = "consistent_hash"  # by the client network: the same endpoint(s) every time
    P2C_EWMA = "p2c_ewma"  # the cheaper of two random endpoints by peak-EWMA latency
    LEAST_LOAD = "least_load"  # least loaded first by the http check's load figure


class HashAlgorithm(enum.Enum):
    KETAMA = "ketama"
    MAGLEV = "maglev"


@dataclass(frozen=True, slots=True)
class Pick:
    """The endpoint policy of a service (or one of its datacenters)."""

    policy: PickPolicy = PickPolicy.ALL
    max_records: int | None = None  # None: every eligible endpoint (round_robin, consistent_hash: 1)
    algorithm: HashAlgorithm = HashAlgorithm.MAGLEV  # consistent_hash
    ipv4_prefix_length: int = 24  # consistent_hash: the client network hashed
    ipv6_prefix_length: int = 56
    table_size: int = 65537  # maglev: a prime above 100 x endpoints
    ewma_tau_s: float = 10.0  # p2c_ewma: decay time of the latency cost

    @property
    def records(self) -> int | None:
        """Records per answer: max_records, else 1 for round_robin and consistent_hash (what
        sticks to a client is the endpoint it hashes to, and resolvers shuffle records) and every
        eligible endpoint for the others."""
        if self.max_records is None and self.policy in (PickPolicy.ROUND_ROBIN, PickPolicy.CONSISTENT_HASH):
            return 1
        return self.max_records


@dataclass(frozen=True, slots=True)
class GeoRules:
    """Datacenter orders for clients by where they are; the most specific match wins
    (subdivision, then country, then continent); unmatched clients keep the strategy."""

    subdivisions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # "US-CA" (ISO 3166-2)
    countries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # "DE" (ISO 3166-1 alpha-2)
    continents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # "EU" (GeoIP2 codes)

    def __bool__(self) -> bool:
        return bool(self.subdivisions or self.countries or self.continents)

    def match(self, subdivision: str | None, country: str | None, continent: str | None) -> str | None:
        """The rule that matches a location ("country DE"), or None."""
        if subdivision is not None and subdivision in self.subdivisions:
            return f"subdivision {subdivision}"
        if country is not None and country in self.countries:
            return f"country {country}"
        if continent is not None and continent in self.continents:
            return f"continent {continent}"
        return None


class WhenAllDown(enum.Enum):
    FAIL_OPEN = "fail_open"
    FALLBACK = "fallback"
    SERVFAIL = "servfail"


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # absolute, lower case, trailing dot
    zone: str  # origin of the zone holding it
    ttl: int
    strategy: Strategy
    min_up: int  # endpoints up (per record type) for a datacenter to be eligible
    when_all_down: WhenAllDown
    fallback: tuple[IPAddress, ...]
    endpoints: tuple[Endpoint, ...]
    geo: GeoRules = GeoRules()
    weights: Mapping[str, int] = field(default_factory=dict)  # strategy weighted: datacenter -> weight
    pick: Pick = Pick()
    picks: Mapping[str, Pick] = field(default_factory=dict)  # per-datacenter overrides of `pick`

    def pick_for(self, datacenter: str) -> Pick:
        return self.picks.get(datacenter, self.pick)

    def datacenters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.datacenter for e in self.endpoints))


@dataclass(frozen=True, slots=True)
class Override:
    network: IPNetwork
    datacenter: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class GeoConfig:
    database: Path | None = None  # None: the GeoLite2 2018 City database from PyPI
    overrides: Path | None = None
    default_order: tuple[str, ...] = ()  # datacenters for clients with no known location


@dataclass(frozen=True, slots=True)
class StateConfig:
    redis_url: str | None = None  # None: embedded mode, in-memory state
    snapshot_path: Path | None = None
    poll_interval_s: float = 1.0
    redis_timeout_s: float = 0.5
    key_prefix: str = "gslb"


@dataclass(frozen=True, slots=True)
class ProberConfig:
    id: str | None = None  # None: host name
    quorum: int | None = None  # None: majority of fresh probers
    heartbeat_interval_s: float = 1.0
    stale_after_s: float = 5.0
    hold_stale_s: float | None = None  # no fresh prober: last verdicts hold this long (None: forever)
    max_concurrency: int = 256


@dataclass(frozen=True, slots=True)
class ApiConfig:
    listen: Listen = Listen("127.0.0.1", 8053)  # loopback unless configured
    tokens_file: Path | None = None  # lines of "NAME ROLE sha256:HEX" (gslb token create)
    audit_log: Path | None = None  # every drain and undrain appended as a JSON line
    metrics_require_token: bool = False  # /metrics is open (as scrapers expect) unless set


@dataclass(frozen=True, slots=True)
class Setting:
    """One value given outside the file, by a flag or a GSLB_* variable (`gslb.config.overrides`);
    the loader reads it in place of the file's value, so a reload applies it again."""

    path: str  # the YAML key it sets, "server.listen"
    values: tuple[str, ...]  # one for a single value, any number for a list
    origin: str  # "--listen", "GSLB_SERVER_LISTEN": named by every problem it causes


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    server: ServerConfig = ServerConfig()
    zones: tuple[ZoneConfig, ...] = ()
    regions: tuple[str, ...] = ()
    datacenters: Mapping[str, Datacenter] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    geoip: GeoConfig = GeoConfig()
    state: StateConfig = StateConfig()
    prober: ProberConfig = ProberConfig()
    api: ApiConfig = ApiConfig()
    settings: tuple[Setting, ...] = ()  # flags and GSLB_* variables read over the file

    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for s in self.services.values() for e in s.endpoints)
