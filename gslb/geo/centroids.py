"""Fallback coordinates for database records that name a country or a continent but no place.

Pure part of `gslb.geo`: standard library only (the country table is package data,
`gslb/geo/data/country_centroids.csv`, built by `geoip/build_country_centroids.py`). It must
not import geoip2, maxminddb or anything outside `gslb.geo`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

# Continent codes of the GeoIP2 schema. EU and AS are the coordinates GeoLite2 gives its
# continent-only records; the others are rough geographic centres (the table is a last resort
# for records that carry nothing finer, so a thousand kilometres either way hardly matter).
CONTINENT_CENTROIDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "AF": (2.0, 17.0),
        "AN": (-80.0, 0.0),
        "AS": (35.0, 105.0),
        "EU": (47.0, 8.0),
        "NA": (46.0, -100.0),
        "OC": (-25.0, 135.0),
        "SA": (-15.0, -60.0),
    }
)


@cache
def country_centroids() -> Mapping[str, tuple[float, float]]:
    """ISO 3166-1 alpha-2 code -> (latitude, longitude), read once from the package data."""
    text = (resources.files("gslb.geo") / "data" / "country_centroids.csv").read_text(encoding="utf-8")
    rows = csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))
    header = next(rows)
    if header != ["country", "latitude", "longitude"]:
        raise ValueError(f"country_centroids.csv: unexpected header {header}")
    return MappingProxyType({code: (float(lat), float(lon)) for code, lat, lon in rows})
