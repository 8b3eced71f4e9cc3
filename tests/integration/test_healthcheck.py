"""`gslb healthcheck`, `/healthz` and `/readyz` against real `gslb serve` processes.

One test per reason to fail, each with the exact line a checker (ExaBGP, BIRD, a container
HEALTHCHECK, a Kubernetes exec probe) logs: zones not loaded (a reload that failed leaves a
configured zone unserved), no health state and stale state (a real redis-server that is never
there, or is frozen with SIGSTOP), draining (SIGTERM starts the lame duck: /readyz 503 while
DNS still answers), and stopped (nothing listening). Every wait polls for the condition.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.redis_fixture import RedisServer, free_port
from tests.server_fixture import BASIC_CONFIG, GslbProcess

pytestmark = pytest.mark.integration

Factory = Callable[..., GslbProcess]
APEX = "gslb.example.com."

WITH_METRICS = BASIC_CONFIG.replace(
    "server:\n", 'server:\n  metrics_listen: "127.0.0.1:{metrics_port}"\n  lame_duck_s: {lame_duck_s}\n', 1
)


def with_metrics(lame_duck_s: float = 0, extra: str = "") -> str:
    return WITH_METRICS.replace("{lame_duck_s}", f"{lame_duck_s:g}").replace(
        "server:\n", f"server:\n{extra}", 1
    )


def distributed(redis_url: str, *, server: str = "", snapshot: str = "snapshot-{port}") -> str:
    """Distributed mode: state in Redis, polled often so that staleness shows within a second."""
    state = f"state:\n  redis_url: {redis_url}\n  poll_interval_s: 0.1\n  redis_timeout_s: 0.1\n"
    state += f"  snapshot_path: {{tmp}}/{snapshot}.json\n"
    return with_metrics(extra=server) + state


def healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gslb", "healthcheck", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for(
    check: Callable[[], subprocess.CompletedProcess[str]],
    want: Callable[[subprocess.CompletedProcess[str]], bool],
    what: str,
    timeout_s: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if want(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {result.returncode} {result.stdout!r} {result.stderr!r}")
        time.sleep(0.1)


def http_get(url: str, accept: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def readyz(server: GslbProcess, query: str = "") -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{server.extra_ports['metrics']}/readyz{query}")


def soa_rcode(server: GslbProcess) -> tuple[int, bool]:
    reply = dns.query.udp(dns.message.make_query(APEX, "SOA"), "127.0.0.1", port=server.port, timeout=5)
    return reply.rcode(), bool(reply.flags & dns.flags.AA)


def not_ready(line: str) -> Callable[[subprocess.CompletedProcess[str]], bool]:
    return lambda r: r.returncode == 1 and r.stderr == line + "\n"


# --- ready ---------------------------------------------------------------------------------------


def test_a_ready_node_exits_zero_with_one_line(gslb_factory: Factory) -> None:
    server = gslb_factory(with_metrics())

    result = healthcheck(server.config)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"ready: 1 zone answered by 127.0.0.1:{server.port}; state in memory (embedded)\n"
    assert http_get(f"http://127.0.0.1:{server.extra_ports['metrics']}/healthz") == (200, "ok\n")
    assert readyz(server) == (200, "ready\n")


def test_readyz_gives_each_condition_as_json(gslb_factory: Factory) -> None:
    server = gslb_factory(with_metrics())

    for query, accept in (("?format=json", None), ("", "application/json")):
        url = f"http://127.0.0.1:{server.extra_ports['metrics']}/readyz{query}"
        status, body = http_get(url, accept)
        doc: dict[str, Any] = json.loads(body)

        assert status == 200
        assert (doc["ready"], doc["reason"]) == (True, None)
        conditions = doc["conditions"]
        assert (conditions["listening"], conditions["draining"]) == (True, False)
        assert conditions["zones"] == {"configured": 1, "loaded": 1}
        assert conditions["state"]["mode"] == "embedded"


def test_without_a_metrics_listener_only_dns_is_checked(gslb_factory: Factory) -> None:
    server = gslb_factory()

    result = healthcheck(server.config)

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"ready: 1 zone answered by 127.0.0.1:{server.port}; "
        "state and draining not checked (no server.metrics_listen)\n"
    )


def test_server_overrides_the_address(gslb_factory: Factory) -> None:
    server, other = gslb_factory(), free_port()

    assert healthcheck(server.config, "--server", f"127.0.0.1:{server.port}").returncode == 0
    result = healthcheck(server.config, "--server", f"127.0.0.1:{other}")
    assert (result.returncode, result.stderr) == (
        1,
        f"not ready: zone {APEX} not answered by 127.0.0.1:{other} (connection refused: nothing listening)\n",
    )


# --- zones not loaded ---------------------------------------------------------------------------


def test_a_zone_the_responder_does_not_serve_fails(gslb_factory: Factory) -> None:
    """A zone added to the config whose reload failed: the responder refuses it."""
    server = gslb_factory(with_metrics())
    broken = server.config.parent / "other.example.zone"
    broken.write_text("$ORIGIN other.example.\n@ 60 IN SOA this is not a soa record\n")
    text = server.config.read_text().replace(
        "zones:\n", f"zones:\n  - origin: other.example\n    file: {broken}\n", 1
    )
    server.config.write_text(text)
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "failed; still serving the previous config" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)

    result = healthcheck(server.config)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"not ready: zone other.example. not answered authoritatively by 127.0.0.1:{server.port} (REFUSED)\n"
    )


# --- state --------------------------------------------------------------------------------------


def test_no_state_store_and_no_snapshot_is_not_ready(gslb_factory: Factory, tmp_path: Path) -> None:
    nobody = RedisServer(tmp_path, free_port())  # never started: nothing listens there
    server = gslb_factory(distributed(nobody.url))

    line = "not ready: no health state yet (state store not read since start, no snapshot loaded)"
    result = healthcheck(server.config)

    assert (result.returncode, result.stderr) == (1, line + "\n")
    assert readyz(server) == (503, line + "\n")
    assert soa_rcode(server) == (dns.rcode.NOERROR, True)  # it answers all the same


def test_a_saved_snapshot_makes_a_node_ready_while_the_store_is_away(
    gslb_factory: Factory, redis_server: RedisServer, tmp_path: Path
) -> None:
    config = distributed(redis_server.url, snapshot="kept")
    first = gslb_factory(config)
    wait_for(lambda: healthcheck(first.config), lambda r: r.returncode == 0, "synced")
    deadline = time.monotonic() + 30
    while not (tmp_path / "kept.json").exists():
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.1)
    first.stop()
    redis_server.stop()

    second = gslb_factory(config)
    result = healthcheck(second.config)

    assert result.returncode == 0, result.stderr
    assert "loaded state snapshot" in second.output()
    status, body = readyz(second, "?format=json")
    state = json.loads(body)["conditions"]["state"]
    assert (status, state["synced"], state["snapshot_loaded"], state["connected"]) == (
        200,
        False,
        True,
        False,
    )


@pytest.fixture
def frozen() -> Iterator[list[RedisServer]]:
    """Redis servers a test froze with SIGSTOP; thawed at teardown, so they can be stopped."""
    servers: list[RedisServer] = []
    yield servers
    for redis in servers:
        if redis.process is not None:
            redis.process.send_signal(signal.SIGCONT)


def test_stale_state_is_not_ready_until_the_store_is_back(
    gslb_factory: Factory, redis_server: RedisServer, frozen: list[RedisServer]
) -> None:
    server = gslb_factory(distributed(redis_server.url, server="  max_state_age_s: 1\n"))
    ready = wait_for(lambda: healthcheck(server.config), lambda r: r.returncode == 0, "synced")
    assert re.fullmatch(
        rf"ready: 1 zone answered by 127\.0\.0\.1:{server.port}; state [0-9.]+ s old \(limit 1 s\)\n",
        ready.stdout,
    ), ready.stdout

    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # Redis hangs: every poll times out
    frozen.append(redis_server)
    stale = re.compile(r"not ready: health state [0-9.]+ s old \(limit 1 s\)\n")
    result = wait_for(lambda: healthcheck(server.config), lambda r: bool(stale.fullmatch(r.stderr)), "stale")

    assert (result.returncode, result.stdout) == (1, "")
    status, body = readyz(server, "?format=json")
    doc = json.loads(body)
    assert (status, doc["ready"], doc["conditions"]["state"]["connected"]) == (503, False, False)
    assert doc["conditions"]["state"]["age_s"] > 1
    assert soa_rcode(server) == (dns.rcode.NOERROR, True)  # answering never waits for Redis
    # --max-state-age overrides the config's limit, both ways
    assert healthcheck(server.config, "--max-state-age", "3600").returncode == 0

    redis_server.process.send_signal(signal.SIGCONT)
    wait_for(lambda: healthcheck(server.config), lambda r: r.returncode == 0, "fresh again")


def test_max_state_age_flag_sets_a_limit_the_config_lacks(
    gslb_factory: Factory, redis_server: RedisServer, frozen: list[RedisServer]
) -> None:
    server = gslb_factory(distributed(redis_server.url))
    wait_for(lambda: healthcheck(server.config), lambda r: r.returncode == 0, "synced")
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    frozen.append(redis_server)
    stale = re.compile(r"not ready: health state [0-9.]+ s old \(limit 0\.5 s\)\n")

    wait_for(
        lambda: healthcheck(server.config, "--max-state-age", "0.5"),
        lambda r: r.returncode == 1 and bool(stale.fullmatch(r.stderr)),
        "stale for the flag's limit",
    )
    assert readyz(server) == (200, "ready\n")  # no limit in the config: static stability


# --- draining and stopped -----------------------------------------------------------------------

DRAINING = "not ready: draining (lame duck, stopping)"


def test_sigterm_drains_while_answering_then_a_second_sigterm_stops(gslb_factory: Factory) -> None:
    server = gslb_factory(with_metrics(lame_duck_s=300))
    assert healthcheck(server.config).returncode == 0

    server.signal(signal.SIGTERM)
    result = wait_for(lambda: healthcheck(server.config), not_ready(DRAINING), "draining")

    assert result.stdout == ""
    assert readyz(server) == (503, DRAINING + "\n")
    assert http_get(f"http://127.0.0.1:{server.extra_ports['metrics']}/healthz") == (200, "ok\n")
    assert soa_rcode(server) == (dns.rcode.NOERROR, True)
    assert server.proc.poll() is None
    lines = [line for line in server.output().splitlines() if "lame duck for 300 s" in line]
    assert len(lines) == 1, server.output()

    server.signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.output()  # a hang guard, far below 300 s

    stopped = healthcheck(server.config)
    metrics = server.extra_ports["metrics"]
    assert (stopped.returncode, stopped.stderr) == (
        1,
        f"not ready: http://127.0.0.1:{metrics}/readyz not answered "
        "(connection refused: nothing listening)\n",
    )


def test_sigint_during_the_lame_duck_stops_at_once(gslb_factory: Factory) -> None:
    server = gslb_factory(with_metrics(lame_duck_s=300))
    server.signal(signal.SIGTERM)
    wait_for(lambda: healthcheck(server.config), not_ready(DRAINING), "draining")

    server.signal(signal.SIGINT)

    assert server.proc.wait(timeout=60) == 0, server.output()


def test_the_lame_duck_ends_by_itself(gslb_factory: Factory) -> None:
    server = gslb_factory(with_metrics(lame_duck_s=1))

    server.signal(signal.SIGTERM)

    assert server.proc.wait(timeout=60) == 0, server.output()
    lines = server.output().splitlines()
    started = [i for i, line in enumerate(lines) if "lame duck for 1 s" in line]
    stopping = [i for i, line in enumerate(lines) if line.endswith("gslb.runtime: stopping")]
    assert len(started) == 1 and stopping and stopping[0] > started[0], server.output()


def test_a_stopped_node_without_metrics_says_nothing_listens(gslb_factory: Factory) -> None:
    server = gslb_factory()
    assert server.stop() == 0  # no metrics listener: no lame duck, SIGTERM stops at once

    result = healthcheck(server.config)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"not ready: zone {APEX} not answered by 127.0.0.1:{server.port} "
        "(connection refused: nothing listening)\n"
    )


# --- usage --------------------------------------------------------------------------------------


def test_usage_and_config_errors_exit_two(gslb_factory: Factory, tmp_path: Path) -> None:
    server = gslb_factory()

    bad_server = healthcheck(server.config, "--server", "nowhere")
    missing = healthcheck(tmp_path / "missing.yaml")
    flag = healthcheck(server.config, "--timeout", "0")

    for result in (bad_server, missing, flag):
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert "Traceback" not in result.stderr
    assert '"nowhere" is not HOST:PORT' in bad_server.stderr
    assert "missing.yaml" in missing.stderr


def test_max_state_age_without_a_metrics_listener_is_a_usage_error(gslb_factory: Factory) -> None:
    config = Path(gslb_factory().config)
    text = config.read_text() + "state:\n  redis_url: redis://127.0.0.1:1/0\n"
    distributed_config = config.with_name("distributed.yaml")
    distributed_config.write_text(text)

    result = healthcheck(distributed_config, "--max-state-age", "5")

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"gslb healthcheck: --max-state-age needs server.metrics_listen in {distributed_config} "
        "(the state's age is read from its /readyz)\n"
    )
