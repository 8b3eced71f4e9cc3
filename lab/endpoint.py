#!/usr/bin/env python3
"""A tiny HTTP endpoint for the lab and the health tests: `/health` answers 200 "ok".

    python lab/endpoint.py --bind 127.0.0.11 --port 8080 --name ams-1

SIGUSR1 toggles slow mode (every answer waits --slow-ms first); SIGTERM stops it.
Standard library only, so the lab needs nothing but gslb's own venv.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class State:
    slow = False
    slow_ms = 300.0


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if State.slow:
                time.sleep(State.slow_ms / 1000)
            body = f"ok {name}\n".encode()
            self.send_response(200 if self.path.startswith("/health") else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per probe would drown the lab's output

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default="endpoint")
    parser.add_argument("--slow-ms", type=float, default=300.0)
    parser.add_argument("--slow", action="store_true", help="start in slow mode")
    args = parser.parse_args()
    State.slow, State.slow_ms = args.slow, args.slow_ms
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(args.name))
    server.daemon_threads = True

    def toggle(signum: int, frame: FrameType | None) -> None:
        State.slow = not State.slow
        print(f"{args.name}: slow={State.slow}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGUSR1, toggle)
    signal.signal(signal.SIGTERM, stop)
    print(f"{args.name}: listening on {args.bind}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
