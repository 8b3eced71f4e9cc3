"""ECS scope through a real resolver: unbound's subnet cache in front of a real `gslb serve`.

A resolver keeps one answer per (name, ECS scope block) and serves it to every client inside
that block; a scope of /0 means "this answer is right for everyone". gslb steers by location,
so the answer it picks from the resolver's own address (no ECS, or a private subnet) must carry
the source prefix as scope, not 0 (DESIGN.md section 6): with /0 the first private query puts
the default-order answer (iad) into unbound's cache for the whole Internet, and Europe and Asia
get iad until the TTL runs out.

unbound 1.17 settings that pass the client's ECS on to gslb (checked by hand: with a fresh
cache, clients sending ECS 193.0.14.0/24, 18.0.0.0/24 and 163.44.0.0/24 get ams, iad and sin):
`module-config: "subnetcache iterator"`, `send-client-subnet: 127.0.0.1` (gslb's address),
`client-subnet-zone: gslb.example.com`, `client-subnet-always-forward: yes` (a query that
carries ECS skips the address check and the plain cache), `max-client-subnet-ipv4: 24`,
`do-not-query-localhost: no` and a stub-zone for gslb.example.com at 127.0.0.1@PORT. A client
without ECS makes unbound send its own subnet, 127.0.0.0/24 (unbound's verbosity 4 log reads
"answer has edns subnet 127.0.0.0/24 scope /0" against a gslb that answers /0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.test_names import embedded_config_text
from tests.server_fixture import GslbProcess, free_port, start_gslb

pytestmark = pytest.mark.integration

UNBOUND = shutil.which("unbound", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
WWW = "www.gslb.example.com."
TIMEOUT_S = 5.0

AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}  # also the default order's first: clients with no location
SIN = {"203.0.113.10", "203.0.113.11"}

CONTINENTS = {  # the README's dig lines: GeoLite2 City 2018 places these subnets
    "europe-ams": ("193.0.14.0", AMS),
    "america-iad": ("18.0.0.0", IAD),
    "asia-sin": ("163.44.0.0", SIN),
}

UNBOUND_CONF = """\
server:
    interface: 127.0.0.1
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound.pid"
    logfile: ""
    use-syslog: no
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    qname-minimisation: no
    module-config: "subnetcache iterator"
    send-client-subnet: 127.0.0.1
    client-subnet-zone: gslb.example.com
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 24
remote-control:
    control-enable: no
stub-zone:
    name: "gslb.example.com"
    stub-addr: 127.0.0.1@{gslb_port}
"""


# --- processes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """`gslb serve` with the embedded default config (GeoLite2 City 2018) on a free port."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        server = start_gslb(tmp_path_factory.mktemp("unbound-gslb"), embedded_config_text())
    yield server
    log = server.output()
    server.stop()
    assert "Traceback" not in log, log


def start_unbound(tmp: Path, gslb_port: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """unbound in the foreground on a free port, once it answers (its own `localhost.`)."""
    assert UNBOUND is not None
    port = free_port()
    conf = tmp / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, tmp=tmp, gslb_port=gslb_port))
    log = tmp / "unbound.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    ready = dns.message.make_query("localhost.", "A")
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"unbound exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            dns.query.udp(ready, "127.0.0.1", port=port, timeout=0.2, ignore_unexpected=True)
            return proc, port, log
        except (dns.exception.Timeout, dns.query.BadResponse, OSError):
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"unbound did not answer:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.05)


@pytest.fixture
def unbound(tmp_path: Path, embedded: GslbProcess) -> Iterator[tuple[int, Path]]:
    """A fresh unbound (empty cache) in front of `embedded`: its port and its log."""
    if UNBOUND is None:
        pytest.skip("unbound is not installed (bin/dev test installs it: apt-get install unbound)")
    proc, port, log = start_unbound(tmp_path, embedded.port)
    yield port, log
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- asking -------------------------------------------------------------------------------------


def make(subnet: str | None, source: int = 24, *, rd: bool = True) -> dns.message.QueryMessage:
    options: list[dns.edns.Option] = [] if subnet is None else [dns.edns.ECSOption(subnet, source)]
    query = dns.message.make_query(WWW, "A", use_edns=0, options=options)
    query.flags = dns.flags.RD if rd else 0
    return query


def answer(port: int, query: dns.message.QueryMessage, transport: str = "udp") -> dns.message.Message:
    if transport == "udp":
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT_S, ignore_unexpected=True)
    else:
        reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=TIMEOUT_S)
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return reply


def addresses(reply: dns.message.Message) -> set[str]:
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset}


def ecs_of(reply: dns.message.Message) -> dns.edns.ECSOption | None:
    found = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    assert len(found) <= 1
    return found[0] if found else None


# --- tests --------------------------------------------------------------------------------------


def test_each_continent_gets_its_datacenter_through_unbound_after_a_private_client(
    unbound: tuple[int, Path],
) -> None:
    """The private clients ask first. If gslb scopes their answer /0, unbound caches iad for
    everyone and Europe and Asia get iad; scoped /24 it only holds for 127.0.0.0/24 and
    10.1.2.0/24, and every other client is asked about anew."""
    port, log = unbound
    asked = [
        ("private: no ECS (unbound sends 127.0.0.0/24)", None, IAD),
        ("private: ECS 10.1.2.0/24", "10.1.2.0", IAD),
        *((name, subnet, want) for name, (subnet, want) in CONTINENTS.items()),
    ]
    for round_ in ("first (from gslb)", "second (from unbound's cache)"):
        for name, subnet, want in asked:
            got = addresses(answer(port, make(subnet)))
            assert got == want, (
                f"{round_} round, {name}: unbound answered {sorted(got)}, want {sorted(want)}\n"
                f"unbound log:\n{log.read_text(errors='replace')}"
            )


PRIVATE_ECS = {
    # subnet, source prefix: an answer chosen from the packet's source must hold for that subnet only
    "rfc1918": ("10.1.2.0", 24),
    "loopback-as-unbound-sends": ("127.0.0.0", 24),
    "rfc1918-16": ("192.168.0.0", 16),
    "ula-v6": ("fd00:1:2::", 48),
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("subnet", "source"), PRIVATE_ECS.values(), ids=PRIVATE_ECS.keys())
def test_private_ecs_answer_is_scoped_to_the_source_prefix(
    embedded: GslbProcess, transport: str, subnet: str, source: int
) -> None:
    reply = answer(embedded.port, make(subnet, source, rd=False), transport)

    assert addresses(reply) == IAD  # the packet's source, 127.0.0.1, decides: default order
    echoed = ecs_of(reply)
    assert echoed is not None
    assert (echoed.address, echoed.srclen) == (subnet, source)
    assert echoed.scopelen == source, f"scope /{echoed.scopelen}: a resolver would give this answer to more"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("subnet", ["0.0.0.0", "::"], ids=["v4", "v6"])
def test_source_prefix_zero_gets_scope_zero(embedded: GslbProcess, transport: str, subnet: str) -> None:
    reply = answer(embedded.port, make(subnet, 0, rd=False), transport)

    assert addresses(reply) == IAD
    echoed = ecs_of(reply)
    assert echoed is not None
    assert (echoed.srclen, echoed.scopelen) == (0, 0)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("subnet", "want"), list(CONTINENTS.values()), ids=CONTINENTS.keys())
def test_public_ecs_directly_gets_its_datacenter_with_a_nonzero_scope(
    embedded: GslbProcess, transport: str, subnet: str, want: set[str]
) -> None:
    reply = answer(embedded.port, make(subnet, 24, rd=False), transport)

    assert addresses(reply) == want
    echoed = ecs_of(reply)
    assert echoed is not None
    assert echoed.scopelen > 0  # the answer depends on where the client is
