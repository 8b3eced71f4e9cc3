"""A loaded test config (three datacenters, MaxMind's test GeoIP database) for the api tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gslb.config.loader import load
from gslb.config.model import Config
from tests.server_fixture import BASIC_CONFIG, EXAMPLE_ZONE, GEOIP_DATA

# Two services: www over three regions, and one (ipv4 only) living in ams and iad.
API_CONFIG = (
    BASIC_CONFIG
    + """
  api4.gslb.example.com:
    ttl: 60
    fallback: [192.0.2.99]
    datacenters:
      ams: [192.0.2.20]
      iad: [198.51.100.20]
"""
)


def write_config(tmp_path: Path, text: str = API_CONFIG, **extra: object) -> Path:
    zone = tmp_path / "gslb.example.com.zone"
    if not zone.exists():
        shutil.copy(EXAMPLE_ZONE, zone)
    path = tmp_path / "gslb.yaml"
    path.write_text(text.format(port=5353, api_port=8053, zone=zone, geoip=GEOIP_DATA, tmp=tmp_path, **extra))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load(write_config(tmp_path))
