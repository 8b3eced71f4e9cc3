"""Derive gslb/geo/data/country_centroids.csv from a MaxMind City database.

A build tool, not runtime code: run it by hand when the table should change, and commit the
CSV. Country-schema databases (GeoIP2/GeoLite2/DB-IP Country) carry no coordinates, so the
locator places a country-only client at its country's centroid from that table.

For each country the centroid is the coordinate MaxMind itself gives to records that know
the country and nothing finer (no city, no subdivision): the most common such coordinate, e.g.
37.751,-97.822 for US. A country with no such record gets the median of its city coordinates.

    .venv/bin/python geoip/build_country_centroids.py            # embedded GeoLite2 2018
    .venv/bin/python geoip/build_country_centroids.py City.mmdb  # another City database

Iterating the 3.4 million networks of the embedded database takes about a minute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import maxminddb  # noqa: TID251 - a build tool beside gslb/geo, which owns the runtime use
from _maxminddb_geolite2 import geolite2_database

OUTPUT = Path(__file__).resolve().parent.parent / "gslb" / "geo" / "data" / "country_centroids.csv"


def _coordinates(record: dict[str, object]) -> tuple[float, float] | None:
    location = record.get("location")
    if not isinstance(location, dict):
        return None
    lat, lon = location.get("latitude"), location.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return float(lat), float(lon)
    return None


def _country(record: dict[str, object]) -> str | None:
    country = record.get("country")
    if isinstance(country, dict):
        code = country.get("iso_code")
        if isinstance(code, str):
            return code
    return None


def centroids(database: Path) -> dict[str, tuple[float, float]]:
    """Return ISO code -> (lat, lon) for every country that the database places somewhere."""
    country_level: dict[str, Counter[tuple[float, float]]] = defaultdict(Counter)
    finer: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with maxminddb.open_database(str(database)) as reader:
        for _network, record in reader:
            if not isinstance(record, dict):
                continue
            code, coords = _country(record), _coordinates(record)
            if code is None or coords is None:
                continue
            if "city" in record or "subdivisions" in record:
                finer[code].append(coords)
            else:
                country_level[code][coords] += 1
    table: dict[str, tuple[float, float]] = {}
    for code in sorted(set(country_level) | set(finer)):
        if country_level[code]:
            # Ties broken by the coordinate itself so that the output is reproducible.
            table[code] = max(country_level[code].items(), key=lambda kv: (kv[1], kv[0]))[0]
        else:
            points = finer[code]
            table[code] = (statistics.median(p[0] for p in points), statistics.median(p[1] for p in points))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", nargs="?", type=Path, help="City MMDB (default: embedded GeoLite2 2018)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    database: Path = Path(geolite2_database()) if args.database is None else args.database
    with maxminddb.open_database(str(database)) as reader:
        meta = reader.metadata()
        built = datetime.fromtimestamp(meta.build_epoch, UTC).date().isoformat()
        source = f"{meta.database_type} built {built}"
    table = centroids(database)
    lines = [
        f"# Country centroids derived by geoip/build_country_centroids.py from {source}.",
        "# The coordinate MaxMind gives country-level records, else the median of city coordinates.",
        "country,latitude,longitude",
        *(f"{code},{lat:.4f},{lon:.4f}" for code, (lat, lon) in table.items()),
    ]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} countries to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
