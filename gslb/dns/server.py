"""UDP and TCP listeners around the synchronous handler.

Adapter layer (asyncio sockets). UDP: one callback per datagram, no task per packet, no
parsing here. TCP follows RFC 7766: pipelined queries answered in order, an idle timeout
between queries, a read timeout per message against slow senders, and caps on concurrent
connections in total and per client. The handler is reached through a `HandlerRef` so that
a reload swaps it with one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gslb.config.model import Listen, TcpLimits
from gslb.dns.handler import Handler
from gslb.lifecycle import cancel_all

log = logging.getLogger(__name__)

# asyncio's default loop reads every datagram into a 256 KiB buffer (malloc churn);
# a DNS query over UDP is never larger than 64 KiB, and ours never above a few KiB.
_UDP_READ_SIZE = 65535


@dataclass
class HandlerRef:
    handler: Handler


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
        reply = self.ref.handler.handle(data, str(addr[0]))
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
    """RFC 7766 TCP: length-prefixed messages, pipelining, timeouts and connection caps."""

    def __init__(self, ref: HandlerRef, limits: TcpLimits) -> None:
        self.ref = ref
        self.limits = limits
        self.connections = 0
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        if (
            self.connections >= self.limits.max_connections
            or self.per_client[client] >= self.limits.max_connections_per_client
        ):
            self.refused += 1
            writer.close()
            return
        self.connections += 1
        self.per_client[client] += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await self._loop(reader, writer, client)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self.tasks.discard(task)
            self.connections -= 1
            self.per_client[client] -= 1
            if not self.per_client[client]:
                del self.per_client[client]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        """Cut every open connection (at shutdown) and wait for their tasks to end."""
        await cancel_all(list(self.tasks))

    async def _loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str) -> None:
        limits = self.limits
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel at shutdown
            async with asyncio.timeout(limits.idle_timeout_s):
                head = await reader.readexactly(2)
            length = int.from_bytes(head, "big")
            async with asyncio.timeout(limits.read_timeout_s):
                message = await reader.readexactly(length)
            reply = self.ref.handler.handle(message, client, tcp=True)
            if reply is None:
                continue
            writer.write(len(reply).to_bytes(2, "big") + reply)
            async with asyncio.timeout(limits.read_timeout_s):
                await writer.drain()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@contextlib.asynccontextmanager
async def dns_listeners(
    ref: HandlerRef, listen: tuple[Listen, ...], limits: TcpLimits, *, reuse_port: bool = False
) -> AsyncIterator[TcpServer]:
    """Open UDP and TCP on every address; close them on exit."""
    loop = asyncio.get_running_loop()
    tcp = TcpServer(ref, limits)
    transports: list[asyncio.BaseTransport] = []
    servers: list[asyncio.Server] = []
    try:
        for item in listen:
            family = _family(item.host)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((item.host, item.port))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(UdpProtocol, ref, sock), sock=sock
            )
            transports.append(transport)
            server = await asyncio.start_server(
                tcp.serve, item.host, item.port, family=family, reuse_address=True, reuse_port=reuse_port
            )
            servers.append(server)
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
