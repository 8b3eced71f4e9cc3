"""The api of a real embedded `gslb serve`: loopback only by default, the per-user token, no
token ever in a log, drains that survive a restart.

Every server keeps its per-user state in the test's tmp folder (XDG_STATE_HOME).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.server_fixture import BASIC_CONFIG, EXAMPLE_ZONE, GEOIP_DATA, free_ports, wait_ready

pytestmark = pytest.mark.integration

EUROPE = "89.160.20.112/28"  # Linköping in MaxMind's test database: nearest is ams
AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}
OPERATE = "gslb_op_" + "Kq7" * 12
READ = "gslb_rd_" + "Zx4" * 12
WRONG = "gslb_no_" + "Wv9" * 12


class Server:
    """`gslb [pre_args] serve -c CONFIG` on fixed ports, so that it can be restarted as it was."""

    def __init__(self, tmp: Path, config_text: str, *, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.dns_port, self.api_port = free_ports(2)
        zone = tmp / "gslb.example.com.zone"
        shutil.copy(EXAMPLE_ZONE, zone)
        self.config = tmp / "gslb.yaml"
        self.config.write_text(
            config_text.format(
                port=self.dns_port, api_port=self.api_port, zone=zone, geoip=GEOIP_DATA, tmp=tmp
            )
        )
        self.log = tmp / "gslb.log"
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "XDG_STATE_HOME": str(tmp / "state"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, *pre_args: str, api_listen: bool = True, config: bool = True) -> None:
        args = [*pre_args, "serve", "--listen", f"127.0.0.1:{self.dns_port}"]
        if config:
            args += ["-c", str(self.config)]
        if api_listen:
            args += ["--api-listen", f"127.0.0.1:{self.api_port}"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gslb", *args], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        wait_ready(self.dns_port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {**self.env, "GSLB_API_URL": self.url, **(env or {})}
        full.pop("GSLB_API_TOKENS", None)
        return subprocess.run(
            [sys.executable, "-m", "gslb", *args],
            capture_output=True,
            text=True,
            env=full,
            timeout=30,
            check=False,
        )

    def call(self, method: str, path: str, token: str | None, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def dig(port: int) -> set[str]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "www.gslb.example.com", "A", f"+subnet={EUROPE}", "+short"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return set(out.split())


@pytest.fixture
def server(tmp_path: Path) -> Any:
    servers: list[Server] = []

    def make(config_text: str = BASIC_CONFIG, **kwargs: Any) -> Server:
        s = Server(tmp_path, config_text, **kwargs)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_address, hex_port = local.split(":")
            raw = bytes.fromhex(hex_address)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            out.add((str(ipaddress.ip_address(packed)), int(hex_port, 16)))
    return out


def outside_address() -> str | None:
    """An address of this host that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


def test_the_api_listens_on_loopback_only_by_default(server: Any) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the api binds
        try:
            probe.bind(("127.0.0.1", 8053))
        except OSError:
            pytest.skip("port 8053 is in use on this machine: cannot start the api on its default port")
    s = server()
    s.api_port = 8053
    s.start(api_listen=False, config=False)  # the bundled config, no --api-listen: all defaults
    assert s.proc is not None
    sockets = listening(s.proc.pid)
    assert ("127.0.0.1", 8053) in sockets
    assert not {a for a, port in sockets if port == 8053} - {"127.0.0.1"}
    assert s.call("GET", "/v1/openapi.json", None)[0] == 200
    address = outside_address()
    if address is not None:
        with pytest.raises(OSError), socket.create_connection((address, 8053), timeout=1):
            pass


def test_embedded_serve_makes_a_private_token_the_cli_finds_and_drains_persist(server: Any) -> None:
    s = server()
    s.start()
    token_file = s.tmp / "state" / "gslb" / "api-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert str(token_file) in s.log.read_text()

    result = s.cli("drain", "region", "europe", "--reason", "embedded test")
    assert result.returncode == 0, result.stderr
    assert dig(s.dns_port) == IAD  # the embedded api answers once its own responder applied it
    assert s.call("POST", "/v1/regions/europe/undrain", None)[0] == 401  # nothing is open

    s.stop()
    s.start()
    assert token_file.read_text().strip() == token  # the same token across restarts
    assert dig(s.dns_port) == IAD  # the drain survived the restart
    result = s.cli("undrain", "region", "europe")
    assert result.returncode == 0, result.stderr
    assert dig(s.dns_port) == AMS
    assert token not in s.log.read_text()


def test_tokens_never_appear_in_logs_or_cli_output(server: Any) -> None:
    s = server(env={"GSLB_API_TOKENS": f"ops:operate:{OPERATE},viewer:read:{READ}"})
    s.start("-v")  # DEBUG: the most there is to log
    outputs = []
    for token in (OPERATE, READ, WRONG):
        result = s.cli("drain", "datacenter", "ams", "--reason", "log test", env={"GSLB_API_TOKEN": token})
        outputs += [result.stdout, result.stderr]
        result = s.cli("state", env={"GSLB_API_TOKEN": token})
        outputs += [result.stdout, result.stderr]
        result = s.cli("undrain", "datacenter", "ams", env={"GSLB_API_TOKEN": token})
        outputs += [result.stdout, result.stderr]
    assert s.call("GET", "/v1/whoami", READ) == (
        200,
        {"token": "viewer", "role": "read", "source": "127.0.0.1"},
    )
    assert s.call("POST", "/v1/regions/europe/drain", READ, {"reason": "x"})[0] == 403
    assert s.call("POST", "/v1/regions/europe/drain", WRONG, {"reason": "x"})[0] == 401
    assert s.call("GET", "/v1/state", f"{OPERATE}x")[0] == 401
    s.stop()

    log = s.log.read_text()
    assert "drained datacenter:ams by ops@127.0.0.1" in log
    # The first refusal of each kind in full, the others counted (rate-limited: gslb.lograte).
    assert "refused POST /v1/datacenters/ams/drain from 127.0.0.1: forbidden" in log
    assert "refused POST /v1/datacenters/ams/drain from 127.0.0.1: unauthorized" in log
    assert not (s.tmp / "state" / "gslb" / "api-token").exists()  # configured tokens: no local one
    for token in (OPERATE, READ, WRONG):
        for piece in (token, token[8:24]):
            assert piece not in log
            assert all(piece not in out for out in outputs)
