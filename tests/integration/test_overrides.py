"""Two full responders on one host from ONE config file, told apart by flags and GSLB_* variables.

Each gets its own DNS port, identity (NSID), metrics address, snapshot file and api port; the
file says none of them. Both answer `dig`; their NSIDs differ; a flag wins over a variable; a
SIGHUP reload keeps what the flags and variables said.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server_fixture import (
    BASIC_CONFIG,
    GslbProcess,
    _launch,
    _write_config,
    free_ports,
    wait_http,
    wait_ready,
)

pytestmark = pytest.mark.integration


def dig_nsid(port: int) -> tuple[list[str], str]:
    """The A records of www and the NSID text, from the real dig."""
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+nsid", "+tries=1", "+time=2", "www.gslb.example.com", "A"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    answers = [line.split()[-1] for line in out.splitlines() if line and not line.startswith(";")]
    nsid = next((line for line in out.splitlines() if "NSID:" in line), "")
    return answers, nsid


def wait_for(condition: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {condition}")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[GslbProcess, GslbProcess]]:
    """Responder a by flags (and a variable the flag beats), responder b by variables only."""
    unused, dns_a, dns_b, metrics_a, metrics_b, api_a, api_b = free_ports(7)
    config = _write_config(
        tmp_path, BASIC_CONFIG, "shared", {"port": unused, "api_port": 0, "metrics_port": 0}
    )
    started: list[GslbProcess] = []
    a_args = [
        "serve",
        "-c",
        str(config),
        "--listen",
        f"127.0.0.1:{dns_a}",
        "--identity",
        "ns-a",
        "--metrics-listen",
        f"127.0.0.1:{metrics_a}",
        "--snapshot-path",
        "a/snapshot.json",  # relative: to the working directory (tmp_path)
        "--api-listen",
        f"127.0.0.1:{api_a}",
    ]
    b_env = {
        "GSLB_SERVER_LISTEN": f"127.0.0.1:{dns_b}",
        "GSLB_SERVER_IDENTITY_NSID": "ns-b",
        "GSLB_SERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_b}",
        "GSLB_STATE_SNAPSHOT_PATH": str(tmp_path / "b" / "snapshot.json"),
        "GSLB_API_LISTEN": f"127.0.0.1:{api_b}",
    }
    for name, argv, env, port, api in (
        ("a", a_args, {"GSLB_SERVER_IDENTITY_NSID": "loses-to-the-flag"}, dns_a, api_a),
        ("b", ["serve", "-c", str(config)], b_env, dns_b, api_b),
    ):
        log = tmp_path / f"{name}.log"
        proc = _launch(tmp_path, argv, log, env)
        server = GslbProcess(
            config, port, proc, log, {"api": api, "metrics": metrics_a if name == "a" else metrics_b}
        )
        started.append(server)
        try:
            wait_ready(port, proc, log)
        except BaseException:
            for s in started:
                s.stop()
            raise
    yield started[0], started[1]
    for s in started:
        s.signal(signal.SIGINT)  # at once: SIGTERM would wait out the lame duck (metrics_listen)
    for s in started:
        s.stop()


def test_two_responders_from_one_file(pair: tuple[GslbProcess, GslbProcess], tmp_path: Path) -> None:
    a, b = pair
    answers_a, nsid_a = dig_nsid(a.port)
    answers_b, nsid_b = dig_nsid(b.port)
    assert answers_a and answers_b
    assert nsid_a.endswith('("ns-a")'), nsid_a  # the flag, not GSLB_SERVER_IDENTITY_NSID
    assert nsid_b.endswith('("ns-b")'), nsid_b
    for server in (a, b):
        wait_http(server.extra_ports["metrics"], server.proc, server.log)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.extra_ports['metrics']}/metrics", timeout=5
        ) as r:
            assert r.status == 200
        wait_http(server.extra_ports["api"], server.proc, server.log)
    for path in (tmp_path / "a" / "snapshot.json", tmp_path / "b" / "snapshot.json"):
        wait_for(f"{path} written", path.exists)


def test_a_reload_keeps_the_overrides(pair: tuple[GslbProcess, GslbProcess]) -> None:
    _, b = pair
    b.signal(signal.SIGHUP)
    wait_for("b reloaded", lambda: "reloaded " in b.output())
    assert dig_nsid(b.port)[1].endswith('("ns-b")')


def test_a_bad_variable_is_named(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path, BASIC_CONFIG, "bad", {"port": free_ports(1)[0], "api_port": 0, "metrics_port": 0}
    )
    log = tmp_path / "bad.log"
    proc = _launch(
        tmp_path, ["serve", "-c", str(config)], log, {"GSLB_SERVER_METRICS_LISTEN": "localhost:9153"}
    )
    assert proc.wait(30) == 2
    assert 'GSLB_SERVER_METRICS_LISTEN: "localhost:9153" is not ADDRESS:PORT' in log.read_text()
