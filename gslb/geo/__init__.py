"""Client geolocation: IP address -> `Location` (coordinates, country, deciding network).

Adapter package: the only user of maxminddb/geoip2 in gslb (`locator`), with pure helpers
(`overrides`, `prefixes`, `centroids`, `tree`) that import the standard library only. It may
import `gslb.errors` and `gslb.config.model`; it must not import the DNS, policy, state or api
packages.
"""

from gslb.geo.locator import Location, LocationSource, Locator, load_overrides

__all__ = ["Location", "LocationSource", "Locator", "load_overrides"]
