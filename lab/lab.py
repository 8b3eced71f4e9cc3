#!/usr/bin/env python3
"""The local lab: endpoints on 127.0.0.x, Redis, a prober, a responder and the api.

    bin/dev lab                 start everything (foreground; Ctrl-C stops it all)
    bin/dev lab down ams-1      stop one endpoint        bin/dev lab up ams-1     start it again
    bin/dev lab slow ams-1      toggle a 300 ms delay    bin/dev lab status       who is running

Everything listens on loopback only: DNS on 127.0.0.1:5354, the api on 127.0.0.1:8054,
Redis on 127.0.0.1:6390, endpoints on 127.0.0.11-32 port 8080.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LAB = Path(__file__).resolve().parent
ROOT = LAB.parent
VAR = LAB / "var"
PIDS = VAR / "pids"
GSLB = [sys.executable, "-m", "gslb"]
CONFIG = LAB / "gslb-lab.yaml"
ENDPOINTS = {
    "ams-1": "127.0.0.11",
    "ams-2": "127.0.0.12",
    "iad-1": "127.0.0.21",
    "iad-2": "127.0.0.22",
    "sin-1": "127.0.0.31",
    "sin-2": "127.0.0.32",
}


def spawn(name: str, command: list[str]) -> int:
    log = (VAR / f"{name}.log").open("ab")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=LAB, start_new_session=True)
    (PIDS / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def pid_of(name: str) -> int | None:
    path = PIDS / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def stop(name: str) -> bool:
    pid = pid_of(name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
    return True


def endpoint(name: str) -> int:
    return spawn(name, [sys.executable, str(LAB / "endpoint.py"), "--bind", ENDPOINTS[name], "--name", name])


def start() -> None:
    # children stopped by `lab down` from another terminal must not linger as zombies
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # SIGTERM (e.g. `timeout`) stops the whole lab like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    PIDS.mkdir(parents=True, exist_ok=True)
    for name in [*ENDPOINTS, "redis", "prober", "responder", "api"]:
        stop(name)
    redis = ["redis-server", "--port", "6390", "--bind", "127.0.0.1", "--dir", str(VAR)]
    spawn("redis", [*redis, "--appendonly", "yes", "--save", ""])
    for name in ENDPOINTS:
        endpoint(name)
    time.sleep(0.5)
    spawn("prober", [*GSLB, "probe", "-c", str(CONFIG)])
    spawn("responder", [*GSLB, "serve", "-c", str(CONFIG)])
    spawn("api", [*GSLB, "api", "-c", str(CONFIG)])
    print(__doc__)
    print("Logs are in lab/var/*.log. Try, in another terminal:")
    print("  watch -n 0.5 dig @127.0.0.1 -p 5354 www.gslb.example.com +short   # ams: 127.0.0.11, 127.0.0.12")
    print("  bin/dev lab down ams-1; bin/dev lab down ams-2                    # within ~4 s: iad")
    print("  bin/dev lab up ams-1; bin/dev lab up ams-2                        # within ~3 s: ams again")
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for name in ["api", "responder", "prober", *ENDPOINTS, "redis"]:
            stop(name)
        print("lab stopped")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    if command == "start":
        start()
        return 0
    if command == "status":
        for name in [*ENDPOINTS, "redis", "prober", "responder", "api"]:
            pid = pid_of(name)
            print(f"{name:<10} {'running, pid ' + str(pid) if pid else 'stopped'}")
        return 0
    if len(argv) != 2 or argv[1] not in ENDPOINTS:
        print(f"usage: lab.py down|up|slow NAME   (NAME: {', '.join(ENDPOINTS)})", file=sys.stderr)
        return 2
    name = argv[1]
    if command == "down":
        print(f"{name}: {'stopped' if stop(name) else 'was not running'}")
    elif command == "up":
        if pid_of(name) is None:
            endpoint(name)
        print(f"{name}: running")
    elif command == "slow":
        pid = pid_of(name)
        if pid is None:
            print(f"{name} is not running", file=sys.stderr)
            return 1
        os.kill(pid, signal.SIGUSR1)
        print(f"{name}: slow mode toggled (see lab/var/{name}.log)")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
