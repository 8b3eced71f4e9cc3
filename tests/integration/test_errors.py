"""Errors that say what to do, and JSON logs, from real `gslb` processes.

A port in use is one line naming the address and what to do, before anything starts; a 401
names the token source the CLI used and the others; a 409 says `--force` on the command line
and `force: true` in the api; a closed pipe ends a command quietly; `--log-format json` (or
`GSLB_LOG_FORMAT=json`) makes every line of `serve`, `probe` and `api` one JSON object, across
a SIGHUP reload too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_fixture import RedisServer
from tests.server_fixture import (
    BASIC_CONFIG,
    EXAMPLE_ZONE,
    GEOIP_DATA,
    GslbProcess,
    free_ports,
    wait_http,
)

pytestmark = pytest.mark.integration

STALE = "gslb_" + "stale0" * 7
TIMEOUT_S = 30.0


def write_config(tmp: Path, text: str = BASIC_CONFIG, **ports: object) -> Path:
    zone = tmp / "gslb.example.com.zone"
    if not zone.exists():
        shutil.copy(EXAMPLE_ZONE, zone)
    config = tmp / "gslb.yaml"
    config.write_text(text.format(zone=zone, geoip=GEOIP_DATA, tmp=tmp, **ports))
    return config


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment without any GSLB_* variable of the caller, state kept in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSLB_")}
    return {**env, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(tmp / "state"), **extra}


def gslb(
    tmp: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gslb", *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp) if env is None else env,
        cwd=tmp,
        timeout=timeout_s,
        check=False,
    )


def wait_for(done: Callable[[], bool], what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {TIMEOUT_S} s:\n{output()}")


# --- a port in use: one line, before anything starts ----------------------------------------------


@pytest.fixture
def blocker() -> Iterator[Callable[[socket.SocketKind], int]]:
    """Hold a UDP socket, or a listening TCP socket, on a free 127.0.0.1 port."""
    held: list[socket.socket] = []

    def hold(kind: socket.SocketKind) -> int:
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        held.append(sock)
        return int(sock.getsockname()[1])

    yield hold
    for sock in held:
        sock.close()


def assert_nothing_started(tmp: Path, result: subprocess.CompletedProcess[str], line: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")
    # The embedded api creates its per-user token when it starts: it never did.
    assert not (tmp / "state" / "gslb" / "api-token").exists()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_dns_port_in_use_is_one_line_naming_it_and_what_to_do(
    tmp_path: Path, blocker: Callable[[socket.SocketKind], int], proto: str
) -> None:
    port = blocker(socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    if proto == "tcp":  # the same port free for UDP, so that TCP is what fails
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))
    (api_port,) = free_ports(1)
    config = write_config(tmp_path, port=port)
    result = gslb(tmp_path, "serve", "-c", str(config), "--api-listen", f"127.0.0.1:{api_port}")
    assert_nothing_started(
        tmp_path,
        result,
        f"gslb serve: cannot listen on 127.0.0.1:{port}/{proto}: address already in use "
        "(another gslb or DNS server? stop it, or choose another address with --listen or server.listen)",
    )


def test_a_second_gslb_on_the_same_address_says_so_in_one_line(
    tmp_path: Path, gslb_factory: Callable[..., GslbProcess]
) -> None:
    first = gslb_factory()
    (api_port,) = free_ports(1)
    second = tmp_path / "second"
    second.mkdir()
    result = gslb(
        second,
        "serve",
        "-c",
        str(first.config),
        "--api-listen",
        f"127.0.0.1:{api_port}",
        env=clean_env(second),
    )
    assert_nothing_started(
        second,
        result,
        f"gslb serve: cannot listen on 127.0.0.1:{first.port}/udp: address already in use "
        "(another gslb or DNS server? stop it, or choose another address with --listen or server.listen)",
    )
    assert first.proc.poll() is None  # the first one is untouched


def test_the_embedded_api_port_in_use_is_one_line_before_dns_starts(
    tmp_path: Path, blocker: Callable[[socket.SocketKind], int]
) -> None:
    api_port = blocker(socket.SOCK_STREAM)
    (dns_port,) = free_ports(1)
    config = write_config(tmp_path, port=dns_port)
    result = gslb(tmp_path, "serve", "-c", str(config), "--api-listen", f"127.0.0.1:{api_port}")
    assert_nothing_started(
        tmp_path,
        result,
        f"gslb serve: cannot listen on 127.0.0.1:{api_port}/tcp: address already in use "
        "(another gslb? stop it, or choose another address with --api-listen or api.listen)",
    )


def test_the_metrics_port_in_use_is_one_line(
    tmp_path: Path, blocker: Callable[[socket.SocketKind], int]
) -> None:
    metrics_port = blocker(socket.SOCK_STREAM)
    dns_port, api_port = free_ports(2)
    config = write_config(tmp_path, port=dns_port)
    result = gslb(
        tmp_path,
        "serve",
        "-c",
        str(config),
        "--api-listen",
        f"127.0.0.1:{api_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    assert_nothing_started(
        tmp_path,
        result,
        f"gslb serve: cannot listen on 127.0.0.1:{metrics_port}/tcp: address already in use "
        "(another gslb? stop it, or choose another address with --metrics-listen or server.metrics_listen)",
    )


def test_gslb_api_with_its_port_in_use_says_so_before_reaching_redis(
    tmp_path: Path, blocker: Callable[[socket.SocketKind], int]
) -> None:
    api_port = blocker(socket.SOCK_STREAM)
    (dns_port,) = free_ports(1)
    # Nothing listens on port 1: had it tried Redis first, this would be another error.
    text = (
        BASIC_CONFIG
        + 'state:\n  redis_url: "redis://127.0.0.1:1/0"\napi:\n  listen: "127.0.0.1:{api_port}"\n'
    )
    config = write_config(tmp_path, text, port=dns_port, api_port=api_port)
    result = gslb(tmp_path, "api", "-c", str(config))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"gslb api: cannot listen on 127.0.0.1:{api_port}/tcp: address already in use "
        "(another gslb? stop it, or choose another address with --listen or api.listen)\n",
    )


def test_workers_say_it_once_before_any_worker_starts(
    tmp_path: Path, blocker: Callable[[socket.SocketKind], int]
) -> None:
    port = blocker(socket.SOCK_DGRAM)
    # Nothing listens on port 1: a worker that started would fail on Redis, over and over.
    text = BASIC_CONFIG.replace("server:\n", "server:\n  workers: 2\n", 1)
    config = write_config(tmp_path, text + 'state:\n  redis_url: "redis://127.0.0.1:1/0"\n', port=port)
    result = gslb(tmp_path, "serve", "-c", str(config))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"gslb serve: cannot listen on 127.0.0.1:{port}/udp: address already in use "
        "(another gslb or DNS server? stop it, or choose another address with --listen or server.listen)\n",
    )


# --- the CLI and the api's token: a 401 names the source used and the others ---------------------


def cli_env(tmp: Path, server: GslbProcess, home: Path, **extra: str) -> dict[str, str]:
    """A CLI user whose home is `home` (no XDG_STATE_HOME: the per-user file is under ~)."""
    env = clean_env(tmp, HOME=str(home), GSLB_API_URL=server.api_url, **extra)
    env.pop("XDG_STATE_HOME")
    return env


def subprocess_state(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return gslb(tmp, "state", *args, env=env)


def stale_local_token(home: Path) -> Path:
    """The per-user token file of an earlier embedded run, under the CLI user's home."""
    path = home / ".local" / "state" / "gslb" / "api-token"
    path.parent.mkdir(parents=True)
    path.write_text(STALE + "\n")
    return path


def test_401_names_the_per_user_token_file_it_used_and_the_alternatives(
    tmp_path: Path, gslb: GslbProcess
) -> None:
    home = tmp_path / "home"
    stale_local_token(home)
    result = subprocess_state(tmp_path, cli_env(tmp_path, gslb, home))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "gslb: the api refused the token from ~/.local/state/gslb/api-token (401 invalid token); "
        "pass --token-file FILE or set GSLB_API_TOKEN, or check api.tokens_file of the api you reach "
        f"({gslb.api_url})\n",
    )


def test_401_names_the_environment_variable_it_used(tmp_path: Path, gslb: GslbProcess) -> None:
    home = tmp_path / "home"
    stale_local_token(home)  # GSLB_API_TOKEN wins over it
    result = subprocess_state(tmp_path, cli_env(tmp_path, gslb, home, GSLB_API_TOKEN=STALE))
    assert result.stderr == (
        "gslb: the api refused the token from GSLB_API_TOKEN (401 invalid token); "
        "set GSLB_API_TOKEN to another token or pass --token-file FILE, or check api.tokens_file "
        f"of the api you reach ({gslb.api_url})\n"
    )


def test_401_names_the_token_file_flag_it_used(tmp_path: Path, gslb: GslbProcess) -> None:
    home = tmp_path / "home"
    token_file = tmp_path / "old-token"
    token_file.write_text(STALE + "\n")
    env = cli_env(tmp_path, gslb, home, GSLB_API_TOKEN=STALE)
    result = subprocess_state(tmp_path, env, "--token-file", str(token_file))
    assert result.stderr == (
        f"gslb: the api refused the token from --token-file {token_file} (401 invalid token); "
        "pass another --token-file FILE (it wins over GSLB_API_TOKEN), or check api.tokens_file "
        f"of the api you reach ({gslb.api_url})\n"
    )
    # The right token through the same flag works: the server's per-user file.
    good = subprocess_state(tmp_path, env, "--token-file", str(tmp_path / "state" / "gslb" / "api-token"))
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("gslb state: embedded mode")


def test_401_with_no_token_at_all_says_where_it_looked(tmp_path: Path, gslb: GslbProcess) -> None:
    result = subprocess_state(tmp_path, cli_env(tmp_path, gslb, tmp_path / "home"))
    assert result.stderr == (
        f"gslb: the api at {gslb.api_url} needs a token and the CLI found none: no --token-file, "
        "GSLB_API_TOKEN unset, no ~/.local/state/gslb/api-token "
        "(401 missing token: send Authorization: Bearer <token>); pass --token-file FILE or set "
        "GSLB_API_TOKEN to a token of the api's api.tokens_file (gslb token create prints one)\n"
    )


# --- the drain guard: one 409 text per interface --------------------------------------------------


def api_drain(server: GslbProcess, token: str, region: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{server.api_url}/v1/regions/{region}/drain",
        data=json.dumps({"reason": "x"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_409_says_force_true_in_the_api_and_dash_dash_force_in_the_cli(
    tmp_path: Path, gslb: GslbProcess
) -> None:
    env = clean_env(tmp_path, GSLB_API_URL=gslb.api_url)  # the server's per-user token
    for region in ("europe", "americas"):
        assert gslb_drain(tmp_path, env, region).returncode == 0
    refused = gslb_drain(tmp_path, env, "asia-pacific")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "gslb: drain refused: 409: this drain would leave nothing undrained to answer for "
        "www.gslb.example.com (A and AAAA: the answer would be NODATA). "
        "Undrain something first, or repeat with --force\n"
    )

    token = (tmp_path / "state" / "gslb" / "api-token").read_text().strip()
    status, body = api_drain(gslb, token, "asia-pacific")
    assert (status, body["error"]) == (409, "would_drain_everything")
    assert body["message"] == (
        "refused: this drain would leave nothing undrained to answer for "
        "www.gslb.example.com (A and AAAA: the answer would be NODATA). "
        "Undrain something first, or repeat with force: true"
    )


def gslb_drain(tmp: Path, env: dict[str, str], region: str) -> subprocess.CompletedProcess[str]:
    return gslb(tmp, "drain", "region", region, "--reason", "x", env=env)


# --- a closed pipe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [False, True], ids=["text", "json"])
def test_a_closed_pipe_ends_explain_quietly(tmp_path: Path, json_flag: bool) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before gslb writes its first line
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gslb", "explain", "www.gslb.example.com", "192.0.2.1"]
            + (["--json"] if json_flag else []),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(tmp_path),
            timeout=TIMEOUT_S,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")


def test_explain_piped_to_head_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        f"{sys.executable} -m gslb explain www.gslb.example.com 192.0.2.1 --json | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=TIMEOUT_S,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "{\n", "")


# --- JSON logs ----------------------------------------------------------------------------------------

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log as a JSON object (fails on any line that is not one)."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        assert isinstance(line, dict)
        assert RFC3339_UTC.match(line["time"]), line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        assert isinstance(line["logger"], str) and isinstance(line["message"], str), line
    return lines


def messages(log: Path) -> list[str]:
    return [line["message"] for line in json_lines(log)]


def test_serve_with_log_format_json_logs_startup_and_a_reload_as_json(
    gslb_factory: Callable[..., GslbProcess],
) -> None:
    server = gslb_factory(args=("--log-format", "json"))
    wait_for(lambda: any(m.startswith("gslb serving") for m in messages(server.log)), "start", server.output)
    server.signal(signal.SIGHUP)
    wait_for(lambda: any(m.startswith("reloaded ") for m in messages(server.log)), "reload", server.output)

    lines = json_lines(server.log)
    (start,) = [line for line in lines if line["message"].startswith("gslb serving")]
    assert start["message"] == "gslb serving 1 zone, 1 service (embedded mode)"
    assert (start["logger"], start["level"]) == ("gslb.runtime", "INFO")
    assert (start["zones"], start["services"], start["mode"]) == (1, 1, "embedded")
    (reload,) = [line for line in lines if line["message"].startswith("reloaded ")]
    assert re.match(
        r"^reloaded .*\.yaml in \d+\.\d\d s: 1 zone \(gslb\.example\.com\. serial \d+\), 1 service$",
        reload["message"],
    ), reload
    server.stop()
    assert messages(server.log)[-1] == "stopping"


DISTRIBUTED = BASIC_CONFIG + 'state:\n  redis_url: "{redis}"\napi:\n  listen: "127.0.0.1:{api_port}"\n'


def launch(
    tmp: Path, name: str, args: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gslb", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp
        )
    return proc, log


def test_probe_and_api_log_json_from_the_environment_and_reload_on_sighup(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    dns_port, api_port = free_ports(2)
    config = write_config(tmp_path, DISTRIBUTED, port=dns_port, api_port=api_port, redis=redis_server.url)
    env = clean_env(tmp_path, GSLB_LOG_FORMAT="json", GSLB_API_TOKENS="ops:operate:" + "o" * 32)
    probe, probe_log = launch(tmp_path, "probe", ["probe", "-c", str(config)], env)
    api, api_log = launch(tmp_path, "api", ["api", "-c", str(config)], env)
    try:
        wait_http(api_port, api, api_log)

        def count(log: Path, prefix: str) -> int:
            return sum(m.startswith(prefix) for m in messages(log))

        wait_for(lambda: count(probe_log, "prober ") >= 1, "probe start", probe_log.read_text)
        wait_for(lambda: count(api_log, "gslb api ready") == 1, "api start", api_log.read_text)
        assert f"gslb api ready, state in {redis_server.url}" in messages(api_log)
        started = count(probe_log, "prober ")
        probe.send_signal(signal.SIGHUP)
        api.send_signal(signal.SIGHUP)
        # The prober restarts on the reloaded config (another "prober ... checking" line).
        wait_for(lambda: count(probe_log, "prober ") > started, "probe reload", probe_log.read_text)
        wait_for(lambda: count(api_log, "reloaded ") == 1, "api reload", api_log.read_text)
    finally:
        for proc in (probe, api):
            proc.send_signal(signal.SIGTERM)
        for proc in (probe, api):
            proc.wait(10)
    assert messages(probe_log)[-1] == "stopping"
    assert messages(api_log)[-1] == "stopping"
