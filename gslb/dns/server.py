"""UDP and TCP listeners around the synchronous handler.

Adapter layer (asyncio sockets). UDP: one callback per datagram, no task per packet, no
parsing here; replies pass the response rate limiter (`gslb.dns.rrl`). TCP follows RFC 7766:
pipelined queries answered in order, an idle timeout between queries, a read timeout per
message against slow senders, and caps on concurrent connections in total, per client address
and per client network, the connection idle the longest closed first at the total cap
(`gslb.dns.connections`). The handler is reached through a `HandlerRef` (with the rate
limiter) so that a reload swaps them with one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import resource
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from time import monotonic
from typing import Any

from gslb.config.model import Listen, TcpLimits
from gslb.dns.connections import Connection, ConnectionTable, Refusal, TcpStats
from gslb.dns.handler import Handler
from gslb.dns.rrl import RateLimiter
from gslb.errors import ListenError
from gslb.lifecycle import cancel_all

log = logging.getLogger(__name__)

# asyncio's default loop reads every datagram into a 256 KiB buffer (malloc churn);
# a DNS query over UDP is never larger than 64 KiB, and ours never above a few KiB.
_UDP_READ_SIZE = 65535

# asyncio's default listen backlog (100) overflowed under a burst of 2,000 connections
# (bench/tcp_fairness_bench.py): each dropped SYN costs its client a 1 s retransmit.
_TCP_BACKLOG = 1024


@dataclass
class HandlerRef:
    handler: Handler
    rrl: RateLimiter | None = None  # response rate limiting of UDP replies (never TCP)


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, ref: HandlerRef, sock: socket.socket) -> None:
        self.ref = ref
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport is no subclass
        if hasattr(transport, "max_size"):
            transport.max_size = _UDP_READ_SIZE

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = str(addr[0])
        ref = self.ref
        reply = ref.handler.handle(data, peer)
        if reply is None:
            return
        if ref.rrl is not None:
            reply = ref.rrl.limit(reply, peer, monotonic())
            if reply is None:
                return
        # Straight to the non-blocking socket: uvloop's sendto() resolves the address on
        # every call and costs more than the whole cached answer (measured: 60% of the time).
        try:
            self.sock.sendto(reply, addr)
        except BlockingIOError:
            if self.transport is not None:
                self.transport.sendto(reply, addr)  # queued, sent when writable
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr[0], exc)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class TcpServer:
    """RFC 7766 TCP: length-prefixed messages, pipelining, timeouts and fair connection caps.

    Admission and the idle order are a `ConnectionTable`'s: at the total cap a new connection
    closes the one idle the longest. The idle timeout is one timer for the whole server (the
    table's sweep, due when the longest idle connection is), not one per connection and query.
    """

    def __init__(self, ref: HandlerRef, limits: TcpLimits) -> None:
        self.ref = ref
        self.limits = limits
        self.table = ConnectionTable(limits)
        self.read_timeouts = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._pressure_log_at = -math.inf

    def stats(self) -> TcpStats:
        """Live counters for /metrics."""
        return self.table.stats(read_timeouts=self.read_timeouts)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        table = self.table
        closed_before = table.idle_closed
        # abort, not close: close() waits for unsent replies, forever if the client never reads
        conn = table.admit(client, writer.transport.abort, now=loop.time())
        if isinstance(conn, Refusal) or table.idle_closed != closed_before:
            self._log_pressure(loop.time())
        if isinstance(conn, Refusal):
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await self._loop(reader, writer, conn)
        except TimeoutError:
            self.read_timeouts += 1
            writer.transport.abort()  # a reply it does not read must not keep the socket open
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self.tasks.discard(task)
            table.release(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        """Cut every open connection (at shutdown) and wait for their tasks to end."""
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        await cancel_all(list(self.tasks))

    async def _loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        limits = self.limits
        table = self.table
        loop = asyncio.get_running_loop()
        while True:
            # Idle: the sweep timer (or a new connection at the cap) closes the transport,
            # and readexactly raises IncompleteReadError.
            table.idle(conn, now=loop.time())
            if self._sweep_timer is None:
                self._sweep_timer = loop.call_at(conn.idle_since + limits.idle_timeout_s, self._sweep)
            head = await reader.readexactly(2)
            table.busy(conn)
            if conn.released:
                return  # closed as idle while its query arrived
            length = int.from_bytes(head, "big")
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel at shutdown
            async with asyncio.timeout(limits.read_timeout_s):
                message = await reader.readexactly(length)
            reply = self.ref.handler.handle(message, conn.client, tcp=True)
            if reply is None:
                continue
            writer.write(len(reply).to_bytes(2, "big") + reply)
            async with asyncio.timeout(limits.read_timeout_s):
                await writer.drain()

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        # uvloop's timers have millisecond resolution: what is due within 1 ms is due now.
        due = self.table.expire(now=loop.time() + 0.001)
        self._sweep_timer = None if due is None else loop.call_at(due, self._sweep)

    def _log_pressure(self, now: float) -> None:
        """At most one line a minute while connections are refused or closed to make room."""
        if now - self._pressure_log_at < 60.0:
            return
        self._pressure_log_at = now
        stats = self.table.stats()
        log.warning(
            "TCP under pressure: %d connections (%d idle); so far %d idle closed to make room, refused: %s",
            stats.connections,
            stats.idle,
            stats.idle_closed,
            ", ".join(f"{count} {reason.value} cap" for reason, count in stats.refused.items() if count)
            or "none",
        )


def _raise_fd_limit(max_connections: int) -> None:
    """Room for every allowed TCP connection plus the process's other files.

    Past the soft RLIMIT_NOFILE accept() fails with EMFILE and asyncio stops accepting for a
    second: everyone's TCP fails, not just the newest. The hard limit is the operator's
    (systemd's LimitNOFILE=); say so when it is too low.
    """
    want = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < want:
        log.warning(
            "open-file limit %d is too low for server.tcp.max_connections %d (needs about %d)",
            new,
            max_connections,
            want,
        )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def address_text(listen: Listen, proto: str) -> str:
    """`127.0.0.1:53/udp`, `[::1]:53/tcp`: how errors name an address."""
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"{host}:{listen.port}/{proto}"


class DnsSockets(contextlib.AbstractContextManager["DnsSockets"]):
    """The bound (not yet served) UDP and TCP sockets of every `server.listen` address.

    Bound before anything else starts, so that a port in use is one line naming it
    (`ListenError`) and not a traceback after the api and the prober came up.
    """

    def __init__(self) -> None:
        self.pairs: list[tuple[Listen, socket.socket, socket.socket]] = []  # (address, udp, tcp)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for _, udp, tcp in self.pairs:
            udp.close()
            tcp.close()
        self.pairs.clear()


def _bind(listen: Listen, kind: socket.SocketKind, *, reuse_port: bool, settings: str) -> socket.socket:
    family = _family(listen.host)
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:  # as asyncio's start_server(reuse_address=True): TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listen.host, listen.port))
    except OSError as e:
        sock.close()
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        raise ListenError.from_os_error(
            address_text(listen, proto), e, settings=settings, others="another gslb or DNS server"
        ) from None
    sock.setblocking(False)
    return sock


def bind_dns(
    listen: tuple[Listen, ...], *, reuse_port: bool = False, settings: str = "--listen or server.listen"
) -> DnsSockets:
    """Bind UDP and TCP on every address; raises ListenError (nothing left open) for the first
    that cannot be bound. `settings` names what chooses the addresses, for the error."""
    sockets = DnsSockets()
    try:
        for item in listen:
            udp = _bind(item, socket.SOCK_DGRAM, reuse_port=reuse_port, settings=settings)
            try:
                tcp = _bind(item, socket.SOCK_STREAM, reuse_port=reuse_port, settings=settings)
            except ListenError:
                udp.close()
                raise
            sockets.pairs.append((item, udp, tcp))
    except ListenError:
        sockets.close()
        raise
    return sockets


@contextlib.asynccontextmanager
async def dns_listeners(
    ref: HandlerRef,
    listen: tuple[Listen, ...],
    limits: TcpLimits,
    *,
    reuse_port: bool = False,
    sockets: DnsSockets | None = None,
) -> AsyncIterator[TcpServer]:
    """Serve UDP and TCP on every address (on `sockets` when bound already, see `bind_dns`);
    close them on exit."""
    loop = asyncio.get_running_loop()
    tcp = TcpServer(ref, limits)
    _raise_fd_limit(limits.max_connections)
    transports: list[asyncio.BaseTransport] = []
    servers: list[asyncio.Server] = []
    own = sockets is None
    bound = bind_dns(listen, reuse_port=reuse_port) if sockets is None else sockets
    try:
        # TCP first: a query that waited in a UDP socket's buffer since `bind_dns` is answered
        # the moment UDP starts, and whoever it tells "ready" may connect over TCP next.
        for _, _, tcp_sock in bound.pairs:
            servers.append(await asyncio.start_server(tcp.serve, sock=tcp_sock, backlog=_TCP_BACKLOG))
        for item, udp_sock, _ in bound.pairs:
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(UdpProtocol, ref, udp_sock), sock=udp_sock
            )
            transports.append(transport)
            log.info("listening on %s port %d (UDP and TCP)", item.host, item.port)
        yield tcp
    finally:
        for server in servers:
            server.close()
        await tcp.close()
        for udp in transports:
            udp.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if own:
            bound.close()
