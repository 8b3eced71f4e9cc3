"""Shared fixtures: a real gslb process on free ports, and a real redis-server."""

from tests.redis_fixture import redis_server
from tests.server_fixture import gslb, gslb_factory

__all__ = ["gslb", "gslb_factory", "redis_server"]
