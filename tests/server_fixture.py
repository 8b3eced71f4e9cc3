"""Start a real `gslb serve` process on free 127.0.0.1 ports and stop it afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ZONE = ROOT / "zones" / "gslb.example.com.zone"
EXAMPLE_CONFIG = ROOT / "gslb" / "data" / "gslb.yaml"
GEOIP_DATA = ROOT / "tests" / "data" / "geoip"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def free_ports(count: int) -> list[int]:
    """`count` different free ports (two calls of `free_port` may return the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class GslbProcess:
    config: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra_ports: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.extra_ports['api']}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    """Until the server answers a query over UDP (any rcode)."""
    deadline = time.monotonic() + timeout_s
    query = dns.message.make_query("gslb-ready.invalid.", "A")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gslb exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            # a late reply to an earlier attempt may reach a reused source port: skip it
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2, ignore_unexpected=True)
            return
        except (dns.exception.Timeout, dns.query.BadResponse, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"gslb did not answer within {timeout_s}s:\n{log.read_text(errors='replace')}")


def _write_config(tmp_path: Path, config_text: str, name: str, ports: dict[str, int]) -> Path:
    zone = tmp_path / "gslb.example.com.zone"
    if not zone.exists():
        shutil.copy(EXAMPLE_ZONE, zone)
    config = tmp_path / f"{name}.yaml"
    config.write_text(config_text.format(**ports, zone=zone, geoip=GEOIP_DATA, tmp=tmp_path))
    return config


def _launch(
    tmp_path: Path, command: list[str], log: Path, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    """`python -m gslb COMMAND` with local state kept in tmp_path and output to `log`."""
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        **(env or {}),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gslb", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp_path,
        )


def _ready(proc: subprocess.Popen[bytes], wait: Callable[[], None]) -> None:
    try:
        wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def start_gslb(
    tmp_path: Path, config_text: str, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> GslbProcess:
    """Write `config_text` (with {port}, {api_port}, {metrics_port}, {zone}, {geoip}, {tmp}
    placeholders) and start `gslb serve`; `extra_ports` has "api" (where the embedded api
    listens) and "metrics" (free for `server.metrics_listen`)."""
    port, api_port, metrics_port = free_ports(3)
    ports = {"port": port, "api_port": api_port, "metrics_port": metrics_port}
    config = _write_config(tmp_path, config_text, f"gslb-{port}", ports)
    log = tmp_path / f"gslb-{port}.log"
    # embedded mode runs the api too: give it a free port
    if "--api-listen" not in args:
        args = (*args, "--api-listen", f"127.0.0.1:{api_port}")
    proc = _launch(tmp_path, ["serve", "-c", str(config), *args], log, env)
    _ready(proc, lambda: wait_ready(port, proc, log))
    return GslbProcess(config, port, proc, log, {"api": api_port, "metrics": metrics_port})


def wait_http(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gslb exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gslb api did not listen within {timeout_s}s:\n{log.read_text(errors='replace')}")


def start_gslb_api(tmp_path: Path, config_text: str, *, env: dict[str, str] | None = None) -> GslbProcess:
    """Write `config_text` (placeholders as `start_gslb`; it sets state.redis_url and
    `api.listen: 127.0.0.1:{api_port}`) and start `gslb api`; `port` is the api's port."""
    api_port, unused_port, metrics_port = free_ports(3)
    ports = {"port": unused_port, "api_port": api_port, "metrics_port": metrics_port}
    config = _write_config(tmp_path, config_text, f"gslb-api-{api_port}", ports)
    log = tmp_path / f"gslb-api-{api_port}.log"
    proc = _launch(tmp_path, ["api", "-c", str(config)], log, env)
    _ready(proc, lambda: wait_http(api_port, proc, log))
    return GslbProcess(config, api_port, proc, log, {"api": api_port})


BASIC_CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  identity: {{nsid: test-node, id_server: test-node, hostname_bind: test-host, version_bind: gslb-test}}
  tcp: {{idle_timeout_s: 1.0, read_timeout_s: 0.5, max_connections: 8, max_connections_per_client: 8}}
zones:
  - origin: gslb.example.com
    file: {zone}
regions: [europe, americas, asia-pacific]
datacenters:
  ams: {{latitude: 52.37, longitude: 4.90, region: europe}}
  iad: {{latitude: 39.04, longitude: -77.49, region: americas}}
  sin: {{latitude: 1.35, longitude: 103.82, region: asia-pacific}}
geoip:
  database: {geoip}/GeoIP2-City-Test.mmdb
  default_order: [iad, ams, sin]
services:
  www.gslb.example.com:
    ttl: 30
    datacenters:
      ams: [192.0.2.10, 192.0.2.11, "2001:db8:a::10"]
      iad: [198.51.100.10, 198.51.100.11, "2001:db8:b::10"]
      sin: [203.0.113.10, 203.0.113.11, "2001:db8:c::10"]
"""


@pytest.fixture
def gslb_factory(tmp_path: Path) -> Iterator[Callable[..., GslbProcess]]:
    """Start as many servers as a test needs; all are stopped at teardown."""
    started: list[GslbProcess] = []

    def factory(config_text: str = BASIC_CONFIG, **kwargs: object) -> GslbProcess:
        server = start_gslb(tmp_path, config_text, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def gslb(gslb_factory: Callable[..., GslbProcess]) -> GslbProcess:
    """One server with the basic test config (MaxMind test GeoIP database)."""
    return gslb_factory()


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_tcp_message(sock: socket.socket) -> bytes | None:
    """One length-prefixed DNS message, or None if the server closed or stayed silent."""
    try:
        head = _recv_exactly(sock, 2)
        return None if head is None else _recv_exactly(sock, int.from_bytes(head, "big"))
    except (TimeoutError, ConnectionResetError):
        return None
