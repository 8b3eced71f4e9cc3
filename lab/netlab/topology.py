"""Build and tear down the namespace lab: namespaces, veths, addresses, routes and processes.

Every namespace is named PREFIX-NAME and reaches the others through the router namespace
(one veth per namespace, created directly inside the two namespaces: nothing is added to the
host's own network namespace, nothing leaves the machine). Every process runs inside a lab
namespace, so `teardown` finds them all with `ip netns pids` (also from another process than
the one that started them) before it deletes the namespaces, which removes the veths.

    router    BIRD, AS 65000: an eBGP session to each node; installs the best anycast route
    node1/2   gslb serve on two anycast addresses (lo) + its own address, ExaBGP + healthcheck
    parent    Knot: a private root and example.com, which delegates gslb.example.com
    resolver  unbound with subnetcache, root hints at the parent
    ops       redis-server (appendonly), gslb api, gslb probe
    eu/us/asia   clients whose addresses the GeoIP test database puts in Europe, America, Asia
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATES = HERE / "templates"
GEOIP = ROOT / "tests" / "data" / "geoip" / "GeoIP2-City-Test.mmdb"
GSLB = Path(sys.executable).parent / "gslb"  # the gslb of the venv that runs the lab

ANYCAST = ("10.53.1.53", "10.53.2.53")  # the glue of ns1/ns2.gslb.example.com, on both nodes
PARENT = "10.0.3.2"
RESOLVER = "10.0.4.2"
OPS = "10.0.5.2"
ROUTER_ID = "10.0.0.1"
ZONE = "gslb.example.com"
WWW = "www.gslb.example.com"


@dataclass(frozen=True, slots=True)
class Link:
    """One namespace's veth to the router: its address (with prefix) and the router's."""

    name: str
    address: str
    gateway: str

    @property
    def host(self) -> str:
        return self.address.split("/")[0]

    @property
    def router_side(self) -> str:
        return f"{self.gateway}/{self.address.split('/')[1]}"


LINKS = (
    Link("node1", "10.0.1.2/24", "10.0.1.1"),
    Link("node2", "10.0.2.2/24", "10.0.2.1"),
    Link("parent", "10.0.3.2/24", "10.0.3.1"),
    Link("resolver", "10.0.4.2/24", "10.0.4.1"),
    Link("ops", "10.0.5.2/24", "10.0.5.1"),
    Link("eu", "81.2.69.150/28", "81.2.69.145"),  # GeoIP2-City-Test: London (EU) -> ams
    Link("us", "216.160.83.58/29", "216.160.83.57"),  # Milton, WA (NA) -> iad
    Link("asia", "175.16.199.10/24", "175.16.199.1"),  # Changchun (AS) -> sin
)
ADDRESS = {link.name: link.host for link in LINKS}
NODES = ("node1", "node2")
MED = {"node1": 100, "node2": 200}  # lower wins: node1 is the nearest by route


@dataclass(frozen=True, slots=True)
class Settings:
    """What a lab run may change: names, TTL of the steered answers and the checker's timing."""

    prefix: str = "netlab"
    ttl: int = 10
    interval_s: int = 1
    rise: int = 2
    fall: int = 2
    lame_duck_s: float = 5.0  # used when this gslb has server.lame_duck_s (its default)
    stand_in_check: bool = False  # the health command: `dig +norec SOA`, not `gslb healthcheck`


class LabError(RuntimeError):
    pass


def run(
    command: Sequence[str], *, check: bool = True, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> str:
    """Run a command to completion; its stdout (stderr too in the error)."""
    done = subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def lab_namespaces(prefix: str) -> list[str]:
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]
    return [name for name in names if name.startswith(prefix + "-")]


def teardown(prefix: str, *, grace_s: float = 5.0) -> list[str]:
    """Stop every process in the lab's namespaces (SIGTERM, then SIGKILL), delete them."""
    namespaces = lab_namespaces(prefix)
    pids: set[int] = set()
    for ns in namespaces:
        pids |= {int(p) for p in run(["ip", "netns", "pids", ns], check=False).split()}
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if _alive(pid)}
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    for ns in namespaces:
        run(["ip", "netns", "del", ns], check=False)
    return namespaces


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float, *, step_s: float = 0.1) -> float:
    """Seconds until `condition()` holds; LabError after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise LabError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(step_s)
    return time.monotonic() - started


@dataclass
class Lab:
    """The lab under `work` (configs, logs); `up()` builds it, `down()` removes all of it."""

    work: Path
    settings: Settings = Settings()
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    health_command_kind: str = "stand-in"  # or "gslb healthcheck"
    lame_duck: bool = False
    token: str = ""

    # --- names --------------------------------------------------------------------------

    @property
    def python(self) -> str:
        return sys.executable

    def ns(self, name: str) -> str:
        return f"{self.settings.prefix}-{name}"

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def disable_file(self, node: str) -> Path:
        return self.work / f"{node}.disabled"

    def config(self, name: str) -> Path:
        return self.work / f"{name}.yaml"

    # --- running things in namespaces ----------------------------------------------------

    def exec(self, ns: str, command: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
        return run(
            ["ip", "netns", "exec", self.ns(ns), *command], check=check, timeout=timeout, env=self.env()
        )

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "XDG_STATE_HOME": str(self.work / "state"),
            "XDG_CACHE_HOME": str(self.work / "cache"),
            "GSLB_API_URL": f"http://{OPS}:8053",
            "GSLB_API_TOKEN": self.token,
        }

    def spawn(self, name: str, ns: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Start `command` in namespace `ns`; a node's processes also get their own host name
        (gslb names a responder by host and port, and both nodes listen on the same port)."""
        if ns in NODES:
            command = ["unshare", "--uts", "sh", "-c", f'hostname {ns} && exec "$@"', "sh", *command]
        with self.log(name).open("ab") as out:
            self.processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(ns), *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env(), **(env or {})},
                cwd=self.work,
                start_new_session=True,  # Ctrl-C reaches the driver, which stops them in order
            )

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        proc = self.processes.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def dig(self, ns: str, server: str, *args: str) -> str:
        return self.exec(ns, ["dig", f"@{server}", "+time=1", "+tries=1", *args], check=False, timeout=10)

    def route(self, address: str = ANYCAST[0]) -> str | None:
        """The node the router sends `address` to (None: no route)."""
        routes = json.loads(run(["ip", "-n", self.ns("router"), "-j", "route", "show", f"{address}/32"]))
        by_address = {ADDRESS[node]: node for node in NODES}
        for route in routes:
            gateway = route.get("gateway")
            if gateway in by_address:
                return by_address[gateway]
        return None

    def gslb(self, ns: str, *args: str, check: bool = True) -> str:
        return self.exec(ns, [str(GSLB), *args], check=check)

    # --- up and down ---------------------------------------------------------------------

    def up(self) -> None:
        if lab_namespaces(self.settings.prefix):
            raise LabError(
                f"namespaces {self.settings.prefix}-* exist already: another lab runs "
                f"(`bin/dev netlab down` removes it)"
            )
        if self.work.exists():
            shutil.rmtree(self.work)
        for sub in ("logs", "knot", "state", "cache"):
            (self.work / sub).mkdir(parents=True)
        self._network()
        self._files()
        self._start()

    def down(self) -> None:
        for name in list(self.processes):
            if self.processes[name].poll() is None:
                self.processes[name].terminate()
        for name in list(self.processes):
            self.stop(name, timeout_s=5)
        teardown(self.settings.prefix)

    def _network(self) -> None:
        router = self.ns("router")
        for name in ("router", *(link.name for link in LINKS)):
            run(["ip", "netns", "add", self.ns(name)])
            self.exec(name, ["ip", "link", "set", "lo", "up"])
        for sysctl in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"):
            self.exec("router", ["sysctl", "-q", "-w", sysctl])
        for link in LINKS:
            leaf = self.ns(link.name)
            veth = ["type", "veth", "peer", link.name, "netns", router]
            run(["ip", "link", "add", "eth0", "netns", leaf, *veth])
            self.exec(link.name, ["ip", "addr", "add", link.address, "dev", "eth0"])
            self.exec(link.name, ["ip", "link", "set", "eth0", "up"])
            self.exec(link.name, ["ip", "route", "add", "default", "via", link.gateway])
            self.exec("router", ["ip", "addr", "add", link.router_side, "dev", link.name])
            self.exec("router", ["ip", "link", "set", link.name, "up"])
        for node in NODES:
            for address in ANYCAST:
                self.exec(node, ["ip", "addr", "add", f"{address}/32", "dev", "lo"])

    def _render(self, template: str, target: str | None = None, mode: int = 0o644, **values: object) -> Path:
        common = {
            "work": self.work,
            "parent": PARENT,
            "resolver": RESOLVER,
            "ops": OPS,
            "anycast1": ANYCAST[0],
            "anycast2": ANYCAST[1],
            "geoip": GEOIP,
            "ttl": self.settings.ttl,
            "router_id": ROUTER_ID,
        }
        text = Template((TEMPLATES / template).read_text()).substitute({**common, **values})
        path = self.work / (target or template)
        path.write_text(text)
        path.chmod(mode)
        return path

    def _files(self) -> None:
        for name in ("knot.conf", "root.zone", "example.com.zone", "gslb.example.com.zone", "unbound.conf"):
            self._render(name)
        self._render("root.hints")
        self._render("check-standin.sh", mode=0o755)
        sessions = "\n".join(
            Template((TEMPLATES / "bird-session.conf").read_text()).substitute(
                name=node,
                local=next(link.gateway for link in LINKS if link.name == node),
                neighbor=ADDRESS[node],
            )
            for node in NODES
        )
        self._render("bird.conf", bgp_sessions=sessions)
        self.lame_duck = self._node_configs()
        has_healthcheck = self._has_healthcheck() and not self.settings.stand_in_check
        self.health_command_kind = "gslb healthcheck" if has_healthcheck else "stand-in"
        for node in NODES:
            link = next(link for link in LINKS if link.name == node)
            self._render(
                "exabgp.conf", f"{node}.exabgp.conf", name=node, router=link.gateway, unicast=link.host
            )
            self._render(
                "healthcheck.sh",
                f"{node}.healthcheck.sh",
                mode=0o755,
                name=node,
                health_command=self.health_command(node),
                interval_s=self.settings.interval_s,
                rise=self.settings.rise,
                fall=self.settings.fall,
                disable=self.disable_file(node),
                med=MED[node],
            )
        token = run(
            [str(GSLB), "token", "create", "lab", "--role", "operate", "--file", str(self.work / "tokens")]
        )
        self.token = token.strip()

    def _node_configs(self) -> bool:
        """Write node1/node2/ops.yaml, with server.lame_duck_s when this gslb knows it."""
        lame = f"  lame_duck_s: {self.settings.lame_duck_s}"
        for extra in (lame, ""):
            for name in (*NODES, "ops"):
                self._render(
                    "node.yaml", f"{name}.yaml", name=name, unicast=ADDRESS[name], server_extra=extra
                )
            checked = subprocess.run(
                [str(GSLB), "check", "-c", str(self.config("node1"))],
                capture_output=True,
                text=True,
                check=False,
            )
            if checked.returncode == 0:
                return bool(extra)
            if "lame_duck" not in checked.stdout + checked.stderr:
                raise LabError(f"gslb check refused the lab config:\n{checked.stdout}{checked.stderr}")
        raise AssertionError("unreachable")

    def health_command(self, node: str) -> str:
        """The command ExaBGP's healthcheck runs: `gslb healthcheck` once it exists, else the stand-in."""
        if self.health_command_kind == "gslb healthcheck":
            return f"{GSLB} healthcheck -c {self.config(node)} --server {ADDRESS[node]}:53"
        return f"{self.work / 'check-standin.sh'} {ADDRESS[node]}"  # the same contract

    @staticmethod
    def _has_healthcheck() -> bool:
        probe = subprocess.run([str(GSLB), "healthcheck", "--help"], capture_output=True, check=False)
        return probe.returncode == 0

    def _start(self) -> None:
        self.spawn("knot", "parent", ["knotd", "-c", str(self.work / "knot.conf")])
        # appendonly as a deployment runs it; protected mode off: the nodes are not on loopback
        redis = ["redis-server", "--bind", OPS, "--port", "6379", "--dir", str(self.work), "--save", ""]
        self.spawn("redis", "ops", [*redis, "--appendonly", "yes", "--protected-mode", "no"])
        wait_for(
            "redis", lambda: "PONG" in self.exec("ops", ["redis-cli", "-h", OPS, "ping"], check=False), 20
        )
        self.spawn("api", "ops", [str(GSLB), "api", "-c", str(self.config("ops"))])
        self.spawn("prober", "ops", [str(GSLB), "probe", "-c", str(self.config("ops"))])
        for node in NODES:
            self.start_node(node)
        self.spawn(
            "bird",
            "router",
            ["bird", "-f", "-c", str(self.work / "bird.conf"), "-s", str(self.work / "bird.ctl")],
        )
        for node in NODES:
            self.spawn(
                f"{node}-exabgp",
                node,
                ["exabgp", str(self.work / f"{node}.exabgp.conf")],
                env={
                    "exabgp_daemon_user": "root",
                    "exabgp_daemon_drop": "false",
                    "exabgp_api_cli": "false",
                    "exabgp_log_destination": "stdout",
                },
            )
        self.spawn("unbound", "resolver", ["unbound", "-d", "-c", str(self.work / "unbound.conf")])
        wait_for(
            "knot answers", lambda: "flags: qr aa" in self.dig("resolver", PARENT, "example.com", "SOA"), 30
        )
        wait_for(
            "unbound answers", lambda: "status: NOERROR" in self.dig("eu", RESOLVER, "localhost", "A"), 30
        )
        wait_for("the api listens", self._api_ready, 30)
        wait_for(f"the router routes {ANYCAST[0]} to node1", lambda: self.route() == "node1", 60)

    def _api_ready(self) -> bool:
        return "distributed mode" in self.gslb("ops", "state", check=False)

    def start_node(self, node: str) -> None:
        self.spawn(node, node, [str(GSLB), "serve", "-c", str(self.config(node))])
        wait_for(f"{node} answers", lambda: self.node_answers(node), 60)

    def node_answers(self, node: str) -> bool:
        return "flags: qr aa" in self.dig(node, ADDRESS[node], "+norec", ZONE, "SOA")
