"""dns checks against a tiny real UDP responder (dnspython builds its answers)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import cast

import dns.message
import dns.rcode
import dns.rrset
import pytest

from gslb.config.model import Check, CheckKind
from gslb.probe.checks import Checker, CheckResult
from tests.redis_fixture import free_port

pytestmark = pytest.mark.integration

LOCALHOST = ip_address("127.0.0.1")


@dataclass
class Responder(asyncio.DatagramProtocol):
    """Answers `answer` for every A query, with `rcode`; can stay silent or answer with junk."""

    answer: str = "192.0.2.1"
    rcode: int = dns.rcode.NOERROR
    silent: bool = False
    junk: bool = False
    wrong_id: bool = False
    transport: asyncio.DatagramTransport | None = None
    queries: list[str] = field(default_factory=list)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(query.question[0].to_text())
        if self.silent or self.transport is None:
            return
        if self.junk:
            self.transport.sendto(data[:2] + b"\x80", addr)
            return
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.Rcode(self.rcode))
        if self.rcode == dns.rcode.NOERROR:
            response.answer.append(dns.rrset.from_text(query.question[0].name, 30, "IN", "A", self.answer))
        if self.wrong_id:
            response.id = (query.id + 1) % 65536
        self.transport.sendto(response.to_wire(), addr)


def dns_check(
    port: int, *, expect_answer: str | None = None, expect_rcode: str = "NOERROR", query_type: str = "A"
) -> Check:
    return Check(
        kind=CheckKind.DNS,
        port=port,
        query_name="www.gslb.test.",
        query_type=query_type,
        expect_rcode=expect_rcode,
        expect_answer=expect_answer,
    )


async def run(checker: Checker, check: Check, timeout_s: float = 2.0) -> CheckResult:
    async with asyncio.timeout(timeout_s):
        return await checker.run(check, LOCALHOST)


def test_dns_check() -> None:
    async def main() -> None:
        port = free_port()
        loop = asyncio.get_running_loop()
        responder = Responder()
        transport, _ = await loop.create_datagram_endpoint(lambda: responder, local_addr=("127.0.0.1", port))
        try:
            async with Checker() as checker:
                ok = await run(checker, dns_check(port))
                assert ok.ok and ok.detail == "NOERROR" and ok.rtt_ms is not None
                assert responder.queries[-1] == "www.gslb.test. IN A"
                assert (await run(checker, dns_check(port, expect_answer="192.0.2.1"))).ok
                wrong = await run(checker, dns_check(port, expect_answer="192.0.2.9"))
                assert not wrong.ok and wrong.detail == "answer lacks '192.0.2.9' (got 192.0.2.1)"
                responder.rcode = dns.rcode.NXDOMAIN
                nx = await run(checker, dns_check(port))
                assert not nx.ok and nx.detail == "NXDOMAIN, expected NOERROR"
                assert (await run(checker, dns_check(port, expect_rcode="NXDOMAIN"))).ok
                responder.junk = True
                junk = await run(checker, dns_check(port))
                assert not junk.ok and junk.detail.startswith("malformed reply")
                bad = await run(checker, dns_check(port, query_type="BOGUS"))
                assert not bad.ok and bad.detail == "bad dns check: unknown query type 'BOGUS'"
                # Silence and replies with another ID are the prober's timeout to judge.
                responder.junk = False
                responder.rcode = dns.rcode.NOERROR
                for attr in ("silent", "wrong_id"):
                    setattr(responder, attr, True)
                    with pytest.raises(TimeoutError):
                        await run(checker, dns_check(port), timeout_s=0.2)
                    setattr(responder, attr, False)
        finally:
            transport.close()
        async with Checker() as checker:
            # Nobody listening: the ICMP port unreachable comes back as a refusal.
            refused = await run(checker, dns_check(free_port()))
            assert not refused.ok and refused.detail == "connection refused"

    asyncio.run(main())
