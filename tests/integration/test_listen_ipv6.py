"""The responder listens on IPv6 as well as IPv4 (UDP and TCP), and steers IPv6 clients."""

from __future__ import annotations

import socket
from collections.abc import Callable

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ipv6_listener(gslb_factory: Callable[..., GslbProcess], transport: str) -> None:
    config = BASIC_CONFIG.replace(
        'listen: ["127.0.0.1:{port}"]', 'listen: ["127.0.0.1:{port}", "[::1]:{port}"]'
    )
    server = gslb_factory(config)
    query = dns.message.make_query("www.gslb.example.com", "AAAA")
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    reply = send(query, "::1", port=server.port, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR
    # ::1 has no location: the default order's first datacenter, iad
    assert {item.address for rrset in reply.answer for item in rrset} == {"2001:db8:b::10"}
