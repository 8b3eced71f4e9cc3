"""gslb: a GSLB authoritative DNS server (see DESIGN.md for the shape)."""

__version__ = "0.1.0"
