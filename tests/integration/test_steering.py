"""Geo steering end to end: dig against a real `gslb serve` (issue 3's "done when").

The embedded default config with the bundled GeoLite2 2018 database is what the README
shows; other tests use MaxMind's test database through BASIC_CONFIG.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server_fixture import BASIC_CONFIG, GslbProcess, free_port, wait_ready

AMS = {"192.0.2.10", "192.0.2.11"}
IAD = {"198.51.100.10", "198.51.100.11"}
SIN = {"203.0.113.10", "203.0.113.11"}


@dataclass(frozen=True)
class Dig:
    status: str
    flags: set[str]
    answers: set[str]
    subnet: str | None  # "193.0.14.0/24/19"

    @property
    def scope(self) -> int | None:
        return None if self.subnet is None else int(self.subnet.rsplit("/", 1)[1])


def dig(port: int, name: str, *args: str) -> Dig:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), name, "+tries=1", "+time=2", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r"flags: ([a-z ]+);", out)
    subnet = re.search(r"CLIENT-SUBNET: (\S+)", out)
    answers = set(re.findall(r"^\S+\s+\d+\s+IN\s+(?:A|AAAA)\s+(\S+)$", out, re.MULTILINE))
    return Dig(
        status.group(1) if status else "?",
        set(flags.group(1).split()) if flags else set(),
        answers,
        subnet.group(1) if subnet else None,
    )


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`gslb serve` with the bundled config (GeoLite2 2018), as a newcomer runs it."""
    tmp = tmp_path_factory.mktemp("embedded")
    port = free_port()
    log = tmp / "gslb.log"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{free_port()}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gslb", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_ready(port, proc, log)
        wait_for_log(log, "steering map ready")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for_log(log: Path, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{log.read_text(errors='replace')}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("subnet", "expected", "v6"),
    [
        ("193.0.14.0/24", AMS, "2001:db8:a::10"),
        ("18.0.0.0/24", IAD, "2001:db8:b::10"),
        ("163.44.0.0/24", SIN, "2001:db8:c::10"),
    ],
    ids=["europe-ams", "america-iad", "asia-sin"],
)
def test_readme_dig_lines(embedded: int, subnet: str, expected: set[str], v6: str) -> None:
    first = dig(embedded, "www.gslb.example.com", f"+subnet={subnet}")
    assert first.status == "NOERROR"
    assert {"qr", "aa"} <= first.flags
    assert "ra" not in first.flags
    assert first.answers == expected
    assert first.subnet is not None
    assert first.subnet.startswith(subnet + "/")
    again = dig(embedded, "www.gslb.example.com", f"+subnet={subnet}")
    assert again.answers == expected
    assert first.scope is not None
    assert 0 < first.scope <= 24  # the steering map block: wider than the /24, never /0
    assert again.scope == first.scope  # final on the first answer
    aaaa = dig(embedded, "www.gslb.example.com", "AAAA", f"+subnet={subnet}")
    assert aaaa.answers == {v6}  # the same datacenter for AAAA


def test_without_ecs_the_source_address_decides_and_no_ecs_is_returned(embedded: int) -> None:
    plain = dig(embedded, "www.gslb.example.com", "+noedns")
    assert plain.answers == IAD  # 127.0.0.1 has no location: geoip.default_order starts with iad
    with_edns = dig(embedded, "www.gslb.example.com")
    assert with_edns.subnet is None


def test_private_ecs_falls_back_to_the_source_address(embedded: int) -> None:
    answer = dig(embedded, "www.gslb.example.com", "+subnet=10.1.2.0/24")
    assert answer.answers == IAD  # the source, 127.0.0.1, decides
    # chosen by location (the resolver's), so never /0: the source prefix, or a resolver
    # would hand this answer to all its clients
    assert answer.subnet == "10.1.2.0/24/24"


def test_source_prefix_zero_gets_scope_zero(embedded: int) -> None:
    answer = dig(embedded, "www.gslb.example.com", "+subnet=0.0.0.0/0")
    assert answer.answers == IAD
    assert answer.subnet == "0.0.0.0/0/0"


def test_ecs_on_a_static_name_has_scope_zero(embedded: int) -> None:
    answer = dig(embedded, "static.gslb.example.com", "+subnet=193.0.14.0/24")
    assert answer.answers == {"192.0.2.80"}
    assert answer.subnet == "193.0.14.0/24/0"


def test_explain_shows_the_chain_of_reasons() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gslb",
            "explain",
            "www.gslb.example.com",
            "10.0.0.1",
            "--ecs",
            "193.0.14.0/24",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for fragment in (
        "client     193.0.14.0  (ECS 193.0.14.0/24",
        "Amsterdam, NL, EU",
        "database network 193.0.0.0/20",
        "ams      europe",
        "choice     ams (nearest)",
        "answer     192.0.2.10 192.0.2.11  TTL 30",
        "ecs scope  /",
    ):
        assert fragment in out, out
    data = json.loads(
        subprocess.run(
            [sys.executable, "-m", "gslb", "explain", "www.gslb.example.com", "127.0.0.1", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert data["choice"] == "iad"
    assert data["scope"] is None
    assert [d["name"] for d in data["datacenters"]] == ["iad", "ams", "sin"]


OVERRIDES_CONFIG = BASIC_CONFIG.replace(
    "  default_order: [iad, ams, sin]", "  default_order: [iad, ams, sin]\n  overrides: {tmp}/overrides.txt"
)


def test_overrides_win_over_the_database(tmp_path: Path, gslb_factory: Callable[..., GslbProcess]) -> None:
    (tmp_path / "overrides.txt").write_text(
        "# the lab: local clients go to sin\n127.0.0.0/8 datacenter=sin\n175.16.199.0/24 52.37,4.90\n"
    )
    server = gslb_factory(OVERRIDES_CONFIG)
    assert dig(server.port, "www.gslb.example.com", "+noedns").answers == SIN
    # 175.16.199.0/24 is Changchun in the test database; the override puts it in Amsterdam
    assert dig(server.port, "www.gslb.example.com", "+subnet=175.16.199.0/24").answers == AMS


def test_unknown_location_uses_the_default_order(gslb: GslbProcess) -> None:
    # 1.1.1.0/24 is not in MaxMind's test database
    assert dig(gslb.port, "www.gslb.example.com", "+subnet=1.1.1.0/24").answers == IAD
    # and a known one steers: 175.16.199.0/24 is Changchun, China -> sin
    assert dig(gslb.port, "www.gslb.example.com", "+subnet=175.16.199.0/24").answers == SIN


ALL_DOWN_CONFIG = BASIC_CONFIG.replace(
    "    ttl: 30\n",
    "    ttl: 30\n    when_all_down: {mode}\n    fallback: [192.0.2.99]\n"
    "    check: {{type: tcp, port: 9, address: 127.0.0.1,"
    " interval_s: 0.1, timeout_s: 0.1, rise: 1, fall: 1}}\n",
)


@pytest.mark.parametrize(
    ("mode", "status", "answers"),
    [("fail_open", "NOERROR", SIN), ("fallback", "NOERROR", {"192.0.2.99"}), ("servfail", "SERVFAIL", set())],
    ids=["fail-open", "fallback", "servfail"],
)
def test_when_all_down(
    gslb_factory: Callable[..., GslbProcess], mode: str, status: str, answers: set[str]
) -> None:
    # every endpoint is checked on a closed port: all go down after one failed check
    server = gslb_factory(ALL_DOWN_CONFIG.replace("{mode}", mode))
    logged = f"answering by when_all_down={mode}"
    # wait for the last datacenter to go down: for fail_open the answer (sin, the nearest)
    # is the same before and after, so the log line marks the moment
    deadline = time.monotonic() + 10
    while logged not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    answer = dig(server.port, "www.gslb.example.com", "+subnet=175.16.199.0/24")
    while answer.status != status or answer.answers != answers:
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
        answer = dig(server.port, "www.gslb.example.com", "+subnet=175.16.199.0/24")
    # the branch is logged once, when the service loses its last eligible datacenter
    assert server.output().count(logged) == 1


def test_explain_live_shows_drains_from_the_running_server(tmp_path: Path, gslb: GslbProcess) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}  # where gslb serve put its token
    api = ["--api", f"http://127.0.0.1:{gslb.extra_ports['api']}"]

    def gslb_cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "gslb", *args], capture_output=True, text=True, check=True, env=env
        ).stdout

    gslb_cli("drain", "datacenter", "ams", "--reason", "maintenance", *api)
    out = gslb_cli("explain", "www.gslb.example.com", "10.0.0.1", "--ecs", "81.2.69.142/32", "--live", *api)
    assert "health     live, state version" in out, out
    assert "drained (datacenter ams by local: maintenance)" in out, out
    assert "choice     iad (failover)" in out, out
    offline = gslb_cli(
        "explain", "www.gslb.example.com", "10.0.0.1", "--ecs", "81.2.69.142/32", "-c", str(gslb.config)
    )
    assert "choice     ams (nearest)" in offline, offline
    assert "not loaded" in offline
