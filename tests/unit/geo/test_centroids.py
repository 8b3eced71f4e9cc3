"""Country and continent centroid tables."""

from __future__ import annotations

import pytest

from gslb.geo.centroids import CONTINENT_CENTROIDS, country_centroids


def test_country_table_is_complete_and_sane() -> None:
    table = country_centroids()
    assert 240 <= len(table) <= 260
    for code, (latitude, longitude) in table.items():
        assert len(code) == 2 and code.isupper(), code
        assert -90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0, code


@pytest.mark.parametrize(
    ("code", "latitude", "longitude"),
    [("US", 37.751, -97.822), ("JP", 36.0, 138.0), ("BT", 27.5, 90.5), ("NL", 52.3824, 4.8995)],
)
def test_known_countries(code: str, latitude: float, longitude: float) -> None:
    assert country_centroids()[code] == (latitude, longitude)


def test_continents() -> None:
    assert set(CONTINENT_CENTROIDS) == {"AF", "AN", "AS", "EU", "NA", "OC", "SA"}
    for latitude, longitude in CONTINENT_CENTROIDS.values():
        assert -90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0
