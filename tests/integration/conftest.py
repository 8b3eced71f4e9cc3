"""Integration tests share one steering map cache, filled once for the embedded default config.

Compiling the map of the bundled GeoLite2 City database takes tens of seconds of CPU; every
`gslb serve` started with the default database would otherwise compile it again in the
background while the tests run. Servers find the map by `XDG_CACHE_HOME`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gslb.config.loader import load
from gslb.responder import maps_for_config
from gslb.runtime import map_cache_dir
from tests.server_fixture import EXAMPLE_CONFIG


@pytest.fixture(scope="session", autouse=True)
def steering_map_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    maps_for_config(load(EXAMPLE_CONFIG), map_cache_dir())
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous
