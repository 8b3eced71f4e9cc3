"""Command-line front: `gslb serve | check | explain | probe | api | drain | undrain | state`.

The only module that prints. It parses arguments, loads the config and hands over to the
runtime; every GslbError becomes one message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gslb import __version__
from gslb.config.loader import load, parse_listen
from gslb.config.model import Config
from gslb.errors import ConfigError, GslbError

log = logging.getLogger("gslb")


def _config(path: str | None) -> Config:
    from gslb.responder import DEFAULT_CONFIG

    return load(Path(path) if path else DEFAULT_CONFIG)


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    from gslb.runtime import serve

    config = _config(args.config)
    if args.listen:
        listen = tuple(parse_listen(x) for x in args.listen)
        config = replace(config, server=replace(config.server, listen=listen))
    if args.api_listen:
        config = replace(config, api=replace(config.api, listen=parse_listen(args.api_listen)))
    _run(serve(config))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from gslb.runtime import probe

    _run(probe(_config(args.config)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gslb.health.view import HealthView
    from gslb.responder import build_parts

    config = _config(args.config)
    build_parts(config, HealthView())
    print(
        f"{config.source}: OK ({len(config.zones)} zones, {len(config.datacenters)} datacenters, "
        f"{len(config.services)} services)"
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from gslb.explain import explain, render
    from gslb.health.view import HealthView
    from gslb.responder import build_parts

    config = _config(args.config)
    parts = build_parts(config, HealthView())
    result = explain(parts, HealthView(), args.name, args.client, ecs=args.ecs, qtype=args.type)
    if args.json:
        import json

        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gslb", description="GSLB authoritative DNS server")
    parser.add_argument("--version", action="version", version=f"gslb {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer DNS (embedded default with no -c)")
    serve.add_argument("-c", "--config", help="gslb.yaml (default: the bundled example)")
    serve.add_argument("--listen", action="append", help="ADDRESS:PORT, overrides server.listen (repeatable)")
    serve.add_argument("--api-listen", metavar="ADDR:PORT", help="overrides api.listen (embedded mode)")
    serve.set_defaults(func=cmd_serve)

    probe = sub.add_parser("probe", help="probe every endpoint and keep verdicts in Redis")
    probe.add_argument("-c", "--config", required=True, help="gslb.yaml with state.redis_url")
    probe.set_defaults(func=cmd_probe)

    check = sub.add_parser("check", help="validate a config and its zone files")
    check.add_argument("-c", "--config", help="gslb.yaml (default: the bundled example)")
    check.set_defaults(func=cmd_check)

    explain = sub.add_parser("explain", help="why a client gets the answer it gets")
    explain.add_argument("name", help="the name asked, e.g. www.gslb.example.com")
    explain.add_argument("client", help="the address the query comes from (the resolver)")
    explain.add_argument(
        "--ecs", metavar="PREFIX", help="the client subnet the resolver sends, e.g. 193.0.14.0/24"
    )
    explain.add_argument("--type", default="A", choices=["A", "AAAA"])
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument("-c", "--config", help="gslb.yaml (default: the bundled example)")
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command not in ("serve", "probe", "api")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except GslbError as exc:
        print(f"gslb: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
