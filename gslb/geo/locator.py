"""Where is a client? An IP address -> `Location`, from operator overrides and a MaxMind DB.

Adapter layer: the only home of maxminddb (and so of geoip2's file format) in gslb; it hands
back our own frozen `Location`. It may import `gslb.errors`, `gslb.config.model` and the rest
of `gslb.geo`, never the DNS, policy, state or api packages.

Each `Location` carries the *deciding network*: the network over which the same answer holds.
It is the MMDB network (or the empty network around a miss) that decided, or the override
network, narrowed where needed so that it never covers a client that would get a different
answer. The query path asks it only where the compiled steering map (`gslb.geo.steermap`,
which this module feeds with the search tree and the records) is not ready or not fine enough;
nothing is cached here. IPv4-mapped IPv6 addresses
(`::ffff:a.b.c.d`) are IPv4 clients: they follow IPv4 overrides and IPv4 data, and get the
IPv4 network back in mapped form.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Final

import maxminddb
from maxminddb.types import Record

from gslb.config.model import Override
from gslb.errors import ConfigError
from gslb.geo.centroids import CONTINENT_CENTROIDS, country_centroids
from gslb.geo.overrides import canonical_network, load_overrides
from gslb.geo.prefixes import PrefixTable
from gslb.geo.tree import SearchTree
from gslb.logs import counted

try:
    from maxminddb import extension as maxminddb_extension
except ImportError:  # built without the C extension: the pure-Python reader does
    maxminddb_extension = None  # type: ignore[assignment]

try:  # the PyPI package that ships the GeoLite2-City database of 2018-07-03
    from _maxminddb_geolite2 import geolite2_database
except ImportError:
    geolite2_database = None

__all__ = ["Location", "LocationSource", "Locator", "load_overrides"]

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MAPPED_START: Final = 0xFFFF << 32  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses
MAPPED_LENGTH: Final = 96

# MaxMind (and DB-IP "compat=") database types that carry no location at all: opening one
# by mistake would answer every client with the default order, silently.
_NOT_LOCATION = ("-ASN", "-ISP", "-Domain", "-Connection-Type", "-Anonymous-IP", "-Anonymous-Plus")


class LocationSource(enum.Enum):
    OVERRIDE = "override"
    DATABASE = "database"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a client is, and the network over which that holds."""

    network: IPNetwork
    source: LocationSource
    latitude: float | None = None
    longitude: float | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    continent: str | None = None  # GeoIP2 continent code, e.g. "EU"
    city: str | None = None  # English name
    subdivision: str | None = None  # ISO 3166-2 of the most general subdivision, e.g. "US-CA"
    datacenter: str | None = None  # an override pins the client to this datacenter

    @property
    def known(self) -> bool:
        """True when the client is pinned to a datacenter or has coordinates."""
        return self.datacenter is not None or (self.latitude is not None and self.longitude is not None)


class _Family:
    """What differs between IPv4 and IPv6 on the lookup path."""

    __slots__ = ("bits", "in_database", "network_type", "root", "table", "v6")

    def __init__(self, *, v6: bool, table: PrefixTable[Override], in_database: bool, root: int) -> None:
        self.v6 = v6
        self.bits = 128 if v6 else 32
        self.network_type: type[IPv4Network] | type[IPv6Network] = IPv6Network if v6 else IPv4Network
        # None rather than empty: the lookup path tests it with `is not None`, no __bool__ call.
        self.table: PrefixTable[Override] | None = table if table else None
        self.in_database = in_database
        self.root = root

    def network(self, value: int, length: int) -> IPNetwork:
        shift = self.bits - length
        return self.network_type((value >> shift << shift, length))

    def address(self, value: int) -> IPAddress:
        return IPv6Address(value) if self.v6 else IPv4Address(value)


class Locator:
    """Locates clients in one MMDB file (City or Country schema) plus operator overrides."""

    def __init__(self, database: Path | None, overrides: Sequence[Override] = ()) -> None:
        """Open `database` (None: the GeoLite2-City 2018 database of maxminddb-geolite2).

        Raises ConfigError when the file is missing, unreadable, not an MMDB, or holds no
        locations (an ASN database, say).
        """
        path = _default_database() if database is None else database
        self._path = path
        self._digest: str | None = None
        self._buffer, self._reader = _open(path)
        try:
            meta = self._reader.metadata()
            self._database_type = str(meta.database_type)
            self._build_epoch = int(meta.build_epoch)
            if _has_no_locations(self._database_type):
                raise ConfigError(
                    str(path),
                    [f"{path}: a {self._database_type} database has no locations (use City or Country)"],
                )
            try:
                self._tree = SearchTree(
                    self._buffer,
                    node_count=int(meta.node_count),
                    record_size=int(meta.record_size),
                    ip_version=int(meta.ip_version),
                )
            except ValueError as exc:
                raise ConfigError(str(path), [f"{path}: unreadable search tree ({exc})"]) from exc
        except BaseException:
            self.close()
            raise
        v4_table, v6_table, self._overrides = _override_tables(overrides)
        self._v4 = _Family(v6=False, table=v4_table, in_database=True, root=self._tree.ipv4_root)
        self._v6 = _Family(
            v6=True, table=v6_table, in_database=self._tree.ip_version == 6, root=self._tree.ipv6_root
        )
        self._countries = country_centroids()
        self._failures = 0
        log.info(
            "GeoIP database %s, %s", self.description, counted(len(v4_table) + len(v6_table), "override")
        )

    @property
    def description(self) -> str:
        """E.g. "GeoLite2-City built 2018-07-03 (/path/GeoLite2-City.mmdb)"."""
        built = datetime.fromtimestamp(self._build_epoch, UTC).date().isoformat()
        return f"{self._database_type} built {built} ({self._path})"

    @property
    def build_epoch(self) -> int:
        """When the database was built, seconds since the Unix epoch (from its metadata)."""
        return self._build_epoch

    @property
    def search_tree(self) -> SearchTree:
        """The database's search tree, for walks over whole prefixes (see `gslb.geo.steermap`)."""
        return self._tree

    @property
    def overrides(self) -> tuple[Override, ...]:
        """The overrides in effect (the first of any repeated network), mapped ones as IPv4."""
        return self._overrides

    def search_root(self, version: int) -> int:
        """The tree record at the root of the IPv4 (4) or IPv6 (6) address space.

        For IPv6 in an IPv4-only database it is the "no data" record: `locate` finds no IPv6
        address in such a database.
        """
        family = self._v4 if version == 4 else self._v6
        return family.root if family.in_database else self._tree.node_count

    def override_table(self, version: int) -> PrefixTable[Override] | None:
        """The overrides of one family (IPv6: 128-bit prefixes), None when there are none."""
        return (self._v4 if version == 4 else self._v6).table

    def database_digest(self) -> str:
        """SHA-256 (hex) of the database file's content, as this locator opened it."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._buffer).hexdigest()
            # Hashing touched every page of the map; hand them back (they are the file's, read
            # again on demand), or a responder's RSS would carry the whole database.
            with contextlib.suppress(AttributeError, OSError, ValueError):
                self._buffer.madvise(mmap.MADV_DONTNEED)
        return self._digest

    def record_location(self, record: int, address: IPAddress, network: IPNetwork) -> Location:
        """The Location that `locate` gives the addresses whose tree walk ends at `record`
        (a terminal record: "no data" or a data pointer), with `network` as its network.

        `address` is any address whose walk ends there; its record is decoded by maxminddb.
        Overrides are not consulted (see `override_location`).
        """
        if record <= self._tree.node_count:
            return Location(network, LocationSource.UNKNOWN)
        try:
            data = self._reader.get(address)
        except Exception:
            # As in `locate`: a corrupt record answers UNKNOWN (logged once).
            self._failures += 1
            if self._failures == 1:
                log.exception("GeoIP lookup of %s in %s failed; answering unknown", address, self.description)
            return Location(network, LocationSource.UNKNOWN)
        if data is None:
            return Location(network, LocationSource.UNKNOWN)
        return self._record_location(data, network)

    @staticmethod
    def override_location(override: Override, network: IPNetwork) -> Location:
        """The Location that `locate` gives a client of `override` (with `network`)."""
        return _override_location(override, network)

    def close(self) -> None:
        """Release the database; `locate` then answers UNKNOWN (it still never raises)."""
        self._reader.close()
        self._buffer.close()

    def __enter__(self) -> Locator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def locate(self, address: IPAddress) -> Location:
        """The location of `address` and the network it holds over. Never raises."""
        if isinstance(address, IPv4Address):
            family, value = self._v4, int(address)
        else:
            mapped = address.ipv4_mapped
            if mapped is not None:
                return _as_mapped(self.locate(mapped))
            family, value = self._v6, int(address)
        return self._locate(address, value, family)

    def _locate(self, address: IPAddress, value: int, family: _Family) -> Location:
        table = family.table
        if table is not None:
            match = table.longest_match(value)
            if match is not None:
                start, length, override = match
                length = table.narrow(value, start, length)
                if family.v6:
                    length = _avoid_mapped(value, length)
                return _override_location(override, family.network(value, length))
        record: Record | None = None
        length = 0
        if family.in_database:
            try:
                record, length = self._reader.get_with_prefix_len(address)
            except Exception:
                # A corrupt record or a closed reader: answer for this one address only.
                return self._failed(address, value, family)
        if table is not None:
            shift = family.bits - length
            length = table.narrow(value, value >> shift << shift, length)
        if family.v6:
            length = _avoid_mapped(value, length)
        network = family.network(value, length)
        if record is None:
            return Location(network, LocationSource.UNKNOWN)
        return self._record_location(record, network)

    def _failed(self, address: IPAddress, value: int, family: _Family) -> Location:
        self._failures += 1
        if self._failures == 1:
            log.exception("GeoIP lookup of %s in %s failed; answering unknown", address, self.description)
        return Location(family.network(value, family.bits), LocationSource.UNKNOWN)

    def _record_location(self, record: Record, network: IPNetwork) -> Location:
        if not isinstance(record, dict):
            return Location(network, LocationSource.UNKNOWN)
        country = _field(record, "country", "iso_code")
        continent = _field(record, "continent", "code")
        subdivision = None
        subdivisions = record.get("subdivisions")
        if country is not None and isinstance(subdivisions, list) and subdivisions:
            first = subdivisions[0]
            code = first.get("iso_code") if isinstance(first, dict) else None
            if isinstance(code, str):
                subdivision = f"{country}-{code}"
        city_record = record.get("city")
        city = _field(city_record, "names", "en") if isinstance(city_record, dict) else None
        latitude = longitude = None
        place = record.get("location")
        if isinstance(place, dict):
            lat, lon = place.get("latitude"), place.get("longitude")
            if (
                isinstance(lat, float | int)
                and isinstance(lon, float | int)
                and -90.0 <= lat <= 90.0
                and -180.0 <= lon <= 180.0
            ):
                latitude, longitude = float(lat), float(lon)
        if latitude is None:
            centroid = self._countries.get(country) if country is not None else None
            if centroid is None and continent is not None:
                centroid = CONTINENT_CENTROIDS.get(continent)
            if centroid is not None:
                latitude, longitude = centroid
        if latitude is None and country is None and continent is None:
            return Location(network, LocationSource.UNKNOWN)
        return Location(
            network,
            LocationSource.DATABASE,
            latitude=latitude,
            longitude=longitude,
            country=country,
            continent=continent,
            subdivision=subdivision,
            city=city,
        )


def _default_database() -> Path:
    if geolite2_database is None:
        problem = "no GeoIP database configured and maxminddb-geolite2 is not installed"
        raise ConfigError("geoip.database", [problem])
    return Path(geolite2_database())


def _open(path: Path) -> tuple[mmap.mmap, maxminddb.Reader]:
    """Memory-map `path` for the tree walk and open the maxminddb reader on the same file."""
    for _attempt in range(3):
        try:
            with path.open("rb") as file:
                opened = os.fstat(file.fileno())
                buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise ConfigError(str(path), [f"{path}: cannot open ({exc.strerror or exc})"]) from exc
        except ValueError as exc:  # mmap of an empty file
            raise ConfigError(str(path), [f"{path}: not a MaxMind DB file ({exc})"]) from exc
        try:
            reader = maxminddb.open_database(str(path), _MODE)
        except OSError as exc:
            buffer.close()
            raise ConfigError(str(path), [f"{path}: cannot open ({exc.strerror or exc})"]) from exc
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            buffer.close()
            raise ConfigError(str(path), [f"{path}: not a MaxMind DB file ({exc})"]) from exc
        try:
            current = os.stat(path)
        except OSError:
            current = None
        if current is not None and _same_file(opened, current):
            return buffer, reader
        # Replaced (an update renamed a new file into place) between the two opens: again.
        reader.close()
        buffer.close()
    raise ConfigError(str(path), [f"{path}: keeps changing while being opened"])


def _has_no_locations(database_type: str) -> bool:
    """True for ASN, ISP, ... databases. DB-IP names its schema: "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
    and "DBIP-Location-ISP (compat=Enterprise)" does hold locations."""
    schema = database_type.partition("(compat=")[2].rstrip(")") or database_type
    return schema.endswith(_NOT_LOCATION)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


# The C extension is ~10x faster than the pure-Python reader; both memory-map the file.
_MODE: Final = maxminddb.MODE_MMAP_EXT if hasattr(maxminddb_extension, "Reader") else maxminddb.MODE_MMAP


def _override_tables(
    overrides: Sequence[Override],
) -> tuple[PrefixTable[Override], PrefixTable[Override], tuple[Override, ...]]:
    chosen: dict[IPNetwork, Override] = {}
    for override in overrides:
        network = canonical_network(override.network)
        if network in chosen:
            log.warning("override %s repeats %s; the first one holds", override, chosen[network])
            continue
        chosen[network] = override
    entries = [(n, int(n.network_address), n.prefixlen, o) for n, o in chosen.items()]
    return (
        PrefixTable(32, ((s, p, o) for n, s, p, o in entries if isinstance(n, IPv4Network))),
        PrefixTable(128, ((s, p, o) for n, s, p, o in entries if isinstance(n, IPv6Network))),
        tuple(replace(o, network=n) for n, o in chosen.items()),
    )


def _override_location(override: Override, network: IPNetwork) -> Location:
    return Location(
        network,
        LocationSource.OVERRIDE,
        latitude=override.latitude,
        longitude=override.longitude,
        datacenter=override.datacenter,
    )


def _avoid_mapped(value: int, length: int) -> int:
    """Lengthen an IPv6 prefix around `value` (not mapped) so it excludes ::ffff:0:0/96."""
    if length <= MAPPED_LENGTH and not (value ^ MAPPED_START) >> (128 - length):
        return max(length, 129 - (value ^ MAPPED_START).bit_length())
    return length


def _as_mapped(location: Location) -> Location:
    network = location.network
    mapped = IPv6Network((MAPPED_START | int(network.network_address), network.prefixlen + MAPPED_LENGTH))
    return replace(location, network=mapped)


def _field(record: dict[str, Record], key: str, subkey: str) -> str | None:
    inner = record.get(key)
    if isinstance(inner, dict):
        value = inner.get(subkey)
        if isinstance(value, str):
            return value
    return None
