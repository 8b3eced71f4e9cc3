"""Who may hold a DNS-over-TCP connection: caps in total, per client address and per client
network, and the connection idle the longest closed first when the total cap is reached.

Pure bookkeeping (standard library only: no sockets, no asyncio, no dnslib). `gslb.dns.server`
tells the table when a connection arrives, when it waits for its next query (idle), when a
query starts to arrive (busy) and when it ends; the table decides who is admitted and which
connection to close, and closes it through the callback the server gave with it.

Why: counted per address only, 2,000 idle connections from 40 addresses held the total cap
and a fresh client got 3 answers out of 54, so a resolver's fallback to TCP after TC=1 failed
for everyone. RFC 7766 §6.2.3 lets a server close idle connections under pressure. A
connection is idle while it waits for a query's length prefix: with the total cap reached, a
new connection takes the place of the one idle the longest, so held connections cost a fresh
client nothing. A connection in the middle of a message (a slow sender) is never closed here,
the server's read timeout cuts it; like every connection it counts against its client address
and its network (/24, /56 by default), so one network holds at most its cap of them.

Idle connections sit in an OrderedDict in the order they went idle: admission, eviction and
the idle-timeout sweep are O(1) per connection. Time is a parameter.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gslb.config.model import TcpLimits

Network = tuple[int, int]  # (IP version, the address's leading prefix bits as a number)


class Refusal(enum.Enum):
    CLIENT = "client"  # max_connections_per_client from this address
    NETWORK = "network"  # max_connections_per_network from this client network
    TOTAL = "total"  # max_connections, and not one of them idle


def client_network(host: str, *, ipv4_prefix: int, ipv6_prefix: int) -> Network:
    """The network a client address counts against (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return (0, 0)  # not an IP address: all such clients share one network
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return (address.version, int(address) >> (address.max_prefixlen - prefix))


@dataclass(eq=False, slots=True)
class Connection:
    """One admitted connection (hashed by identity: a key of the idle order)."""

    client: str
    network: Network
    close: Callable[[], None]
    idle_since: float = 0.0
    released: bool = False


@dataclass(frozen=True, slots=True)
class TcpStats:
    """Counters for /metrics, read at scrape time."""

    connections: int
    idle: int
    accepted: int
    refused: Mapping[Refusal, int]
    idle_closed: int  # closed to make room for a new connection
    idle_timeouts: int
    read_timeouts: int = 0  # a message not read, or a reply not taken, within read_timeout_s


class ConnectionTable:
    """Admission and idle order of TCP connections (see the module docstring)."""

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self.connections = 0
        self.per_client: Counter[str] = Counter()
        self.per_network: Counter[Network] = Counter()
        self.idle_order: OrderedDict[Connection, None] = OrderedDict()  # the longest idle first
        self.accepted = 0
        self.refused: Counter[Refusal] = Counter()
        self.idle_closed = 0
        self.idle_timeouts = 0

    def admit(self, client: str, close: Callable[[], None], *, now: float) -> Connection | Refusal:
        """A new connection from `client`, or why it is refused. At the total cap the
        connection idle the longest is closed (`close` called) to make room."""
        limits = self.limits
        network = client_network(
            client, ipv4_prefix=limits.ipv4_prefix_length, ipv6_prefix=limits.ipv6_prefix_length
        )
        refusal: Refusal | None = None
        if self.per_client[client] >= limits.max_connections_per_client:
            refusal = Refusal.CLIENT
        elif self.per_network[network] >= limits.max_connections_per_network:
            refusal = Refusal.NETWORK
        elif self.connections >= limits.max_connections and not self._close_oldest_idle():
            refusal = Refusal.TOTAL
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.accepted += 1
        self.connections += 1
        self.per_client[client] += 1
        self.per_network[network] += 1
        return Connection(client, network, close, idle_since=now)

    def idle(self, conn: Connection, *, now: float) -> None:
        """`conn` waits for the next query's length prefix."""
        conn.idle_since = now
        self.idle_order[conn] = None

    def busy(self, conn: Connection) -> None:
        """A query is arriving on `conn` (or its reply is being written)."""
        self.idle_order.pop(conn, None)

    def release(self, conn: Connection) -> None:
        """`conn` ended (any way; a second call does nothing)."""
        if conn.released:
            return
        conn.released = True
        self.idle_order.pop(conn, None)
        self.connections -= 1
        self.per_client[conn.client] -= 1
        if not self.per_client[conn.client]:
            del self.per_client[conn.client]
        self.per_network[conn.network] -= 1
        if not self.per_network[conn.network]:
            del self.per_network[conn.network]

    def expire(self, *, now: float) -> float | None:
        """Close the connections idle for idle_timeout_s by `now`; when the next one is due."""
        timeout = self.limits.idle_timeout_s
        while self.idle_order:
            conn = next(iter(self.idle_order))
            due = conn.idle_since + timeout
            if due > now:
                return due
            self.idle_timeouts += 1
            self.release(conn)
            conn.close()
        return None

    def stats(self, *, read_timeouts: int = 0) -> TcpStats:
        return TcpStats(
            connections=self.connections,
            idle=len(self.idle_order),
            accepted=self.accepted,
            refused={reason: self.refused[reason] for reason in Refusal},
            idle_closed=self.idle_closed,
            idle_timeouts=self.idle_timeouts,
            read_timeouts=read_timeouts,
        )

    def _close_oldest_idle(self) -> bool:
        if not self.idle_order:
            return False
        conn = next(iter(self.idle_order))
        self.idle_closed += 1
        self.release(conn)
        conn.close()
        return True
