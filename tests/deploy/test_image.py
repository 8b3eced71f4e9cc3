"""The container image, built for real from a locally bootstrapped Debian, and run from its files.

What runs: `deploy/container/build.sh image` (what `bin/dev image` runs): debootstrap of Debian
minbase with python3 (cached per suite in ~/.cache/gslb/debootstrap), `podman import` as the
base, `podman build` of deploy/container/Containerfile (pip installs the source tree and its
dependencies from PyPI inside the build) into a private podman store. Then the image's own
files are run as a runtime would, but without one (see tests/deploy/rootfs.py): read-only root,
uid 10053 with no capabilities, port 53 in a network namespace, the image's Env, Entrypoint and
Cmd. `gslb check`, `gslb serve`, `gslb healthcheck`, `dig`, SIGTERM's lame duck; then the compose
file's distributed mode: its config, commands and api healthcheck, with redis-server from the host.

What does not run: podman run (crun and runc are refused here), the image's HEALTHCHECK by a
runtime (the same command is run by hand), cgroups, seccomp, the compose tool itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import ROOT, compose, compose_config_view, image_uid
from tests.deploy.rootfs import Mount, Sandbox, sandboxes, status, wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

BUILD = ROOT / "deploy" / "container" / "build.sh"
TAG = "localhost/gslb:test"
TOOLS = ("podman", "debootstrap", "ip", "unshare", "setpriv", "dig", "redis-server")
SUITE = os.environ.get("GSLB_DEBIAN_SUITE", "bookworm")
CACHE = Path(os.environ.get("GSLB_DEBOOTSTRAP_CACHE") or Path.home() / ".cache" / "gslb" / "debootstrap")
ADDRESSES = {"192.0.2.10", "192.0.2.11", "198.51.100.10", "198.51.100.11", "203.0.113.10", "203.0.113.11"}


@dataclass(frozen=True, slots=True)
class Image:
    root: Path  # the image's files, mounted read only
    config: dict[str, Any]  # `podman image inspect`'s Config
    healthcheck: dict[str, Any]


def which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def mirror_unreachable() -> str | None:
    """Why the Debian mirror cannot be reached (None: it can, or the base is cached already)."""
    if (CACHE / f"{SUITE}.tar").is_file():
        return None
    url = subprocess.run([BUILD, "mirror"], capture_output=True, text=True, check=True).stdout.strip()
    if not url:
        return None  # debootstrap's own default mirror: its run will tell
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        return f"no network to the Debian mirror {host}:{port} ({e}) and no cached base in {CACHE}"
    return None


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap, podman's image store, network namespaces, chroot")
    missing = [tool for tool in TOOLS if which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (bin/dev test installs them with apt-get)")
    reason = mirror_unreachable()
    if reason:
        pytest.skip(reason)
    store = tmp_path_factory.mktemp("podman")
    podman = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run")]
    log = store / "build.log"
    env = {**os.environ, "PODMAN": " ".join(podman), "GSLB_DEBOOTSTRAP_CACHE": str(CACHE)}
    with log.open("w") as out:
        built = subprocess.run(
            [BUILD, "image", TAG], stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1500, check=False
        )
    assert built.returncode == 0, f"build failed:\n{log.read_text()[-6000:]}"
    try:
        inspected = json.loads(
            subprocess.run([*podman, "image", "inspect", TAG], capture_output=True, check=True).stdout
        )[0]
        mounted = subprocess.run([*podman, "image", "mount", TAG], capture_output=True, text=True, check=True)
        yield Image(Path(mounted.stdout.strip()), inspected["Config"], inspected.get("Healthcheck") or {})
    finally:
        subprocess.run([*podman, "image", "unmount", "--all", "--force"], capture_output=True, check=False)
        subprocess.run([*podman, "rmi", "--all", "--force"], capture_output=True, check=False)
        shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def sandbox(image: Image, tmp_path: Path) -> Iterator[Sandbox]:
    yield from sandboxes(image.root, image.config, tmp_path)


def dig(box: Sandbox, *query: str) -> subprocess.CompletedProcess[str]:
    return box.host(["dig", "@127.0.0.1", "-p", "53", "+time=1", "+tries=1", *query])


def answers(box: Sandbox) -> set[str]:
    result = dig(box, "+short", "www.gslb.example.com", "A")
    return set(result.stdout.split()) if result.returncode == 0 else set()


def readyz(box: Sandbox) -> str:
    """`/readyz`'s status and line, asked with the image's own python from inside."""
    script = (
        "import urllib.request, urllib.error\n"
        "try:\n r = urllib.request.urlopen('http://127.0.0.1:9153/readyz', timeout=2)\n"
        "except urllib.error.HTTPError as e:\n r = e\n"
        "except OSError as e:\n print('down', e); raise SystemExit\n"
        "print(r.status, r.read().decode().strip())\n"
    )
    return box.run(["python3", "-c", script]).stdout.strip()


def log_of(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def test_image_config_is_what_the_deployments_expect(image: Image) -> None:
    uid = image_uid()
    assert image.config["User"] == f"{uid}:{uid}"
    assert image.config["Entrypoint"] == ["gslb-entrypoint"]
    assert image.config["Cmd"] == ["serve"]
    assert {"/etc/gslb", "/var/lib/gslb", "/var/cache/gslb"} <= set(image.config["Volumes"])
    assert {"53/udp", "53/tcp", "9153/tcp"} <= set(image.config["ExposedPorts"])
    assert image.healthcheck["Test"] == ["CMD", "gslb-entrypoint", "healthcheck"]
    env = dict(item.split("=", 1) for item in image.config["Env"])
    assert env["GSLB_CONFIG"] == "/etc/gslb/gslb.yaml"
    assert not [key for key in env if key.startswith("PIP")], "build-time settings leaked into the image"
    # what the build mounted (the host's CA bundle, a pip.conf) and copied (the sources) is gone
    assert not (image.root / "etc" / "pip.conf").exists()
    assert not (image.root / "src").exists()
    for path in ("var/lib/gslb", "var/cache/gslb"):
        assert (image.root / path).stat().st_uid == uid, path


def test_image_checks_serves_and_stops_its_own_config(image: Image, sandbox: Sandbox, tmp_path: Path) -> None:
    volumes = (
        Mount(sandbox.volume("state"), "/var/lib/gslb"),
        Mount(sandbox.volume("cache"), "/var/cache/gslb"),
    )
    checked = sandbox.run(["check"], volumes)
    assert checked.returncode == 0 and "/etc/gslb/gslb.yaml: OK" in checked.stdout, checked

    log = tmp_path / "serve.log"
    server = sandbox.start(None, log, volumes)  # the image's Cmd: serve
    wait_for(
        "no answer from the image's gslb serve on 53", lambda: bool(answers(sandbox)), 90, lambda: log_of(log)
    )
    assert answers(sandbox) <= ADDRESSES
    soa = dig(sandbox, "+norec", "gslb.example.com", "SOA")
    assert "status: NOERROR" in soa.stdout and " aa" in soa.stdout.split("flags:")[1].split(";")[0]

    process = status(server.pid)
    assert process["Name"] == "gslb" and process["Uid"].split() == [str(image_uid())] * 4
    assert int(process["CapEff"], 16) == 0 and int(process["CapPrm"], 16) == 0
    assert process["NoNewPrivs"] == "1"

    healthy = sandbox.run(["healthcheck"], volumes)
    assert healthy.returncode == 0 and healthy.stdout.startswith("ready"), healthy
    assert readyz(sandbox).startswith("200 ready")
    written = sandbox.run(["sh", "-c", "touch /opt/gslb/x"], volumes)
    assert written.returncode != 0 and "Read-only file system" in written.stderr

    server.send_signal(signal.SIGTERM)  # lame duck: not ready at once, DNS answered meanwhile
    wait_for(
        "/readyz still ready after SIGTERM",
        lambda: readyz(sandbox).startswith("503"),
        10,
        lambda: log_of(log),
    )
    assert answers(sandbox) <= ADDRESSES and answers(sandbox)
    assert server.wait(60) == 0, log_of(log)
    stopped = sandbox.run(["healthcheck"], volumes)
    assert stopped.returncode == 1 and "not ready" in stopped.stdout + stopped.stderr, stopped


def test_image_runs_the_compose_distributed_mode(image: Image, sandbox: Sandbox, tmp_path: Path) -> None:
    """The compose file's config and commands, one process of each, sharing one Redis."""
    services = compose()["services"]
    redis_args = services["redis"]["command"][1:]
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    logs = {name: tmp_path / f"{name}.log" for name in ("redis", "api", "prober", "ns1")}
    with logs["redis"].open("wb") as out:
        redis = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                sandbox.name,
                "redis-server",
                *redis_args,
                "--dir",
                str(redis_dir),
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sandbox.processes.append(redis)
    sandbox.add_host("redis")
    maps = sandbox.volume("maps")
    started = {}
    for name in ("api", "prober", "ns1"):
        service = services[name]
        etc = compose_config_view(service, tmp_path / f"etc-{name}")
        mounts = (
            Mount(etc, "/etc/gslb", read_only=True),
            Mount(sandbox.volume(f"{name}-state"), "/var/lib/gslb"),
            Mount(maps, "/var/cache/gslb"),
        )
        env = {k: str(v) for k, v in service.get("environment", {}).items() if "${" not in str(v)}
        started[name] = mounts, env
        sandbox.start(service["command"], logs[name], mounts, env)

    everything = lambda: "\n".join(f"== {n}\n{log_of(p)}" for n, p in logs.items())  # noqa: E731
    wait_for("no answer from the compose responder", lambda: bool(answers(sandbox)), 90, everything)
    assert answers(sandbox) <= ADDRESSES
    mounts, env = started["ns1"]
    wait_for(
        "the compose responder is not ready (state from Redis)",
        lambda: sandbox.run(["healthcheck"], mounts, env).returncode == 0,
        60,
        everything,
    )
    assert (redis_dir / "appendonlydir").is_dir() or list(redis_dir.glob("*.aof")), "appendonly is on"

    healthcheck = services["api"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    api_mounts, api_env = started["api"]
    checked = sandbox.run(healthcheck[1:], api_mounts, api_env)
    assert checked.returncode == 0, checked
    state = sandbox.run(["state"], api_mounts, api_env)
    assert state.returncode == 0 and "distributed mode" in state.stdout, state
    assert "probers:" in state.stdout and "none reporting" not in state.stdout, state.stdout
