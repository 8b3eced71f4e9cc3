"""Run commands from a container image's files, the way a container runtime would, without one.

Podman builds images here but cannot run them (crun and runc are refused cgroup set-up and
setrlimit). So a process "in the container" is: a network namespace of its own (`ip netns`, with
`net.ipv4.ip_unprivileged_port_start` as Docker and the Kubernetes manifests set it), a private
mount namespace (`unshare --mount`) in which the image's read-only root (`podman image mount`)
is overlaid, read only, with the files a runtime injects (/etc/hosts), gets /dev, /proc, a /tmp
tmpfs and the volumes bind-mounted, then `chroot` into it as the image's numeric user with no
capabilities and no_new_privs (`setpriv`), and the image's Env, WorkingDir and Entrypoint.

What this does not have of a real runtime: cgroups, seccomp, a PID or UTS namespace, and the
runtime's own /dev. Needs root.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Inside the mount namespace: overlay the image (read only), mount what a runtime mounts, then
# become the image's user in a chroot. $1 root mountpoint, $2 lower dirs, $3 user, then argv.
_ENTER = r"""
set -eu
root=$1 lower=$2 user=$3
shift 3
mount -t overlay gslb-image -o "ro,lowerdir=$lower" "$root"
mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
for node in null zero random urandom full; do
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"
while [ "$1" != -- ]; do
    mount --bind "$1" "$root$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
    shift 3
done
shift
exec setpriv --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid \
    -- chroot --userspec="$user" --groups= "$root" "$@"
"""


@dataclass(frozen=True, slots=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


@dataclass
class Sandbox:
    """One network namespace; `run` and `start` put a process of the image in it."""

    name: str
    image_root: Path
    image_config: dict[str, Any]
    work: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inject = self.work / "inject"
        (self.inject / "etc").mkdir(parents=True, exist_ok=True)
        (self.inject / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.name,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_unprivileged_port_start=53",
            ],
            check=True,
        )

    def add_host(self, name: str) -> None:
        """Resolve `name` to 127.0.0.1, as compose's DNS resolves a service name."""
        with (self.inject / "etc" / "hosts").open("a") as hosts:
            hosts.write(f"127.0.0.1 {name}\n")

    def volume(self, name: str) -> Path:
        """A host directory owned by the image's user, for a writable mount."""
        path = self.work / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        uid, gid = (int(x) for x in self.user.split(":"))
        os.chown(path, uid, gid)
        return path

    @property
    def user(self) -> str:
        user: str = self.image_config["User"]
        return user

    def argv(self, command: list[str] | None, mounts: tuple[Mount, ...], env: dict[str, str]) -> list[str]:
        """Entrypoint + (command or Cmd) with the image's Env and WorkingDir, in the sandbox."""
        config = self.image_config
        environment = dict(item.split("=", 1) for item in config.get("Env", []))
        environment.update(env)
        root = self.work / f"root-{len(self.processes)}-{time.monotonic_ns()}"
        root.mkdir()
        program = [*config.get("Entrypoint", []), *(command if command is not None else config["Cmd"])]
        mount_args = [x for m in mounts for x in (str(m.source), m.target, "ro" if m.read_only else "rw")]
        inside = [
            "/usr/bin/env",
            "-i",
            f"--chdir={config.get('WorkingDir') or '/'}",
            *(f"{k}={v}" for k, v in environment.items()),
            *program,
        ]
        lower = f"{self.inject}:{self.image_root}"
        return [
            *("ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private"),
            *("sh", "-c", _ENTER, "enter", str(root), lower, self.user, *mount_args, "--", *inside),
        ]

    def run(
        self,
        command: list[str],
        mounts: tuple[Mount, ...] = (),
        env: dict[str, str] | None = None,
        timeout_s: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, mounts, env or {}),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(
        self,
        command: list[str] | None,
        log: Path,
        mounts: tuple[Mount, ...] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process; every exec in the chain replaces the last, so its
        pid is the image's process itself."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.argv(command, mounts, env or {}), stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def host(self, command: list[str], timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """A host program (dig) inside the network namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def close(self) -> None:
        """Stop what was started here (SIGTERM, then SIGKILL), then what they started in the
        namespace (gslb's map compiler), by pid, then the namespace."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        left = self.host_pids()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def host_pids(self) -> list[int]:
        found = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    """Poll `condition` until it holds; fail with `what` and `why()` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s:.0f} s\n{why()}")


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def shell(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def sandboxes(image_root: Path, image_config: dict[str, Any], work: Path) -> Iterator[Sandbox]:
    """One sandbox, closed after use (a generator for a fixture)."""
    box = Sandbox(f"gslbimg{os.getpid()}", image_root, image_config, work)
    try:
        yield box
    finally:
        box.close()
