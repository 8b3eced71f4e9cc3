"""The TCP connection table: caps per address, per network and in total; the connection idle
the longest is closed first at the total cap; the idle-timeout sweep."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gslb.config.model import TcpLimits
from gslb.dns.connections import Connection, ConnectionTable, Refusal, client_network

LIMITS = TcpLimits(
    idle_timeout_s=10.0, max_connections=4, max_connections_per_client=3, max_connections_per_network=3
)


class Closed:
    """Close callbacks that record which connection was closed, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def callback(self, name: str) -> Callable[[], None]:
        return lambda: self.order.append(name)


def admitted(table: ConnectionTable, client: str, closed: Closed, name: str, now: float) -> Connection:
    conn = table.admit(client, closed.callback(name), now=now)
    assert isinstance(conn, Connection), f"{name} from {client} was refused: {conn}"
    return conn


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("192.0.2.1", "192.0.2.254", True),
        ("192.0.2.1", "192.0.3.1", False),
        ("2001:db8:0:ff::1", "2001:db8:0:1::2", True),  # the same /56
        ("2001:db8:0:ff::1", "2001:db8:0:100::1", False),
        ("::ffff:192.0.2.7", "192.0.2.9", True),  # IPv4-mapped counts as IPv4
        ("192.0.2.1", "::ffff:c000:201", True),
        ("fe80::1%eth0", "fe80::2", True),
        ("?", "not an address", True),
        ("?", "0.0.0.1", False),
    ],
    ids=str,
)
def test_client_network(a: str, b: str, same: bool) -> None:
    def key(host: str) -> tuple[int, int]:
        return client_network(host, ipv4_prefix=24, ipv6_prefix=56)

    assert (key(a) == key(b)) is same


def test_prefix_lengths_are_configurable() -> None:
    assert client_network("10.1.2.3", ipv4_prefix=16, ipv6_prefix=56) == client_network(
        "10.1.200.3", ipv4_prefix=16, ipv6_prefix=56
    )
    assert client_network("10.1.2.3", ipv4_prefix=32, ipv6_prefix=56) != client_network(
        "10.1.2.4", ipv4_prefix=32, ipv6_prefix=56
    )
    assert client_network("10.1.2.3", ipv4_prefix=0, ipv6_prefix=0) == (4, 0)


def test_caps_per_address_and_per_network_refuse_before_the_total_is_reached() -> None:
    table, closed = ConnectionTable(LIMITS), Closed()
    for name in ("a", "b", "c"):
        admitted(table, "192.0.2.1", closed, name, now=0.0)

    assert table.admit("192.0.2.1", lambda: None, now=1.0) is Refusal.CLIENT
    assert table.admit("192.0.2.2", lambda: None, now=1.0) is Refusal.NETWORK
    admitted(table, "198.51.100.1", closed, "other network", now=1.0)
    assert closed.order == []
    stats = table.stats()
    assert (stats.connections, stats.accepted) == (4, 4)
    assert stats.refused == {Refusal.CLIENT: 1, Refusal.NETWORK: 1, Refusal.TOTAL: 0}


def test_at_the_total_cap_the_connection_idle_the_longest_is_closed() -> None:
    table, closed = ConnectionTable(LIMITS), Closed()
    a = admitted(table, "192.0.2.1", closed, "a", now=0.0)
    b = admitted(table, "198.51.100.1", closed, "b", now=0.0)
    c = admitted(table, "203.0.113.1", closed, "c", now=0.0)
    d = admitted(table, "203.0.113.2", closed, "d", now=0.0)
    table.idle(a, now=1.0)
    table.idle(b, now=2.0)
    table.idle(c, now=3.0)
    table.busy(a)  # a query arrives on a: it is no longer idle, and goes idle again last
    table.idle(a, now=4.0)
    # d is busy (in the middle of a message) and never a candidate

    admitted(table, "233.252.0.1", closed, "e", now=5.0)
    admitted(table, "233.252.0.2", closed, "f", now=5.0)

    assert closed.order == ["b", "c"]
    assert (b.released, c.released, a.released, d.released) == (True, True, False, False)
    stats = table.stats()
    assert (stats.connections, stats.idle, stats.idle_closed) == (4, 1, 2)


def test_at_the_total_cap_with_no_idle_connection_a_new_one_is_refused() -> None:
    table, closed = ConnectionTable(LIMITS), Closed()
    held = [admitted(table, f"192.0.{n}.1", closed, str(n), now=0.0) for n in range(4)]

    assert table.admit("198.51.100.1", lambda: None, now=1.0) is Refusal.TOTAL

    table.idle(held[2], now=2.0)
    admitted(table, "198.51.100.1", closed, "new", now=3.0)
    assert closed.order == ["2"]


def test_release_frees_every_count_once() -> None:
    table, closed = ConnectionTable(LIMITS), Closed()
    conn = admitted(table, "192.0.2.1", closed, "a", now=0.0)
    table.idle(conn, now=0.0)

    table.release(conn)
    table.release(conn)  # the server's finally after the table closed it: no double count

    assert (table.connections, dict(table.per_client), dict(table.per_network)) == (0, {}, {})
    assert len(table.idle_order) == 0
    for name in ("b", "c", "d"):
        admitted(table, "192.0.2.1", closed, name, now=1.0)


def test_an_evicted_connection_frees_its_slot_at_once() -> None:
    limits = TcpLimits(max_connections=1)
    table, closed = ConnectionTable(limits), Closed()
    old = admitted(table, "192.0.2.1", closed, "old", now=0.0)
    table.idle(old, now=0.0)

    new = admitted(table, "192.0.2.1", closed, "new", now=1.0)  # same address: its count was freed

    assert closed.order == ["old"]
    assert table.per_client["192.0.2.1"] == 1
    table.release(old)  # what the old connection's task does when it sees the close
    assert table.per_client["192.0.2.1"] == 1
    assert not new.released


def test_expire_closes_what_has_been_idle_too_long_and_says_when_the_next_is_due() -> None:
    table, closed = ConnectionTable(LIMITS), Closed()
    conns = [admitted(table, f"192.0.{n}.1", closed, str(n), now=0.0) for n in range(3)]
    for at, conn in zip((1.0, 2.0, 3.0), conns, strict=True):
        table.idle(conn, now=at)

    assert table.expire(now=5.0) == 11.0
    assert table.expire(now=12.5) == 13.0
    assert closed.order == ["0", "1"]
    table.busy(conns[2])
    assert table.expire(now=100.0) is None
    assert closed.order == ["0", "1"]
    stats = table.stats()
    assert (stats.idle_timeouts, stats.idle_closed, stats.connections) == (2, 0, 1)
