"""Command-line front: `gslb serve | check | explain | probe | api | drain | undrain | state | audit | token`.

The only module that prints. It parses arguments, loads the config and hands over to the
runtime; every GslbError becomes one message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gslb import __version__
from gslb.config.loader import load, parse_listen
from gslb.config.model import Config
from gslb.errors import ConfigError, GslbError

if TYPE_CHECKING:
    from gslb.api.client import ApiClient

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
    if config.server.workers > 1 and args.worker is None:
        from gslb.runtime import supervise

        _run(supervise(config, sys.argv[1:]))
        return 0
    _run(serve(config, worker=args.worker))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from gslb.runtime import probe

    _run(probe(_config(args.config)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every problem of the config and its zone files in one report: when the YAML can be read
    but has problems, the zone files it names are checked all the same."""
    from gslb.config.loader import read
    from gslb.dns.zonefile import load_zones
    from gslb.health.view import HealthView
    from gslb.responder import DEFAULT_CONFIG, build_parts

    config, found = read(Path(args.config) if args.config else DEFAULT_CONFIG)
    problems = list(found.items)
    try:
        if not problems:
            build_parts(config, HealthView())
        else:  # what the loader could not place is reported above: check the rest
            zones = tuple(z for z in config.zones if z.file.is_file())
            services = {n: s for n, s in config.services.items() if s.zone}
            load_zones(replace(config, zones=zones, services=services))
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(str(config.source), problems)
    print(
        f"{config.source}: OK ({len(config.zones)} zones, {len(config.datacenters)} datacenters, "
        f"{len(config.services)} services)"
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.live:  # the running api's explain: live health and drains
        query = {"name": args.name, "client": args.client, "ecs": args.ecs, "type": args.type}
        reply = _client(args).request("GET", "/v1/explain", query=query)
        text = reply.pop("text", "")
        print(json.dumps(reply, indent=2) if args.json else text)
        return 0
    from gslb.explain import explain, render
    from gslb.health.view import HealthView
    from gslb.responder import build_parts, load_cached_maps
    from gslb.runtime import map_cache_dir

    parts = build_parts(_config(args.config), HealthView())
    load_cached_maps(parts, map_cache_dir())  # the scope responders give, once they compiled it
    result = explain(parts, None, args.name, args.client, ecs=args.ecs, qtype=args.type)
    print(json.dumps(result.to_json(), indent=2) if args.json else render(result))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from gslb.runtime import api

    _run(api(_config(args.config)))
    return 0


# -- talking to the api (standard library HTTP client) -------------------------------------------

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """'600', '90s', '10m', '2h', '1d' -> seconds (argparse type)."""
    text = text.strip().lower()
    unit = _DURATION.get(text[-1:], 0)
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f'"{text}" is not a duration like 600, 90s, 10m, 2h or 1d')
    return value


def _client(args: argparse.Namespace) -> ApiClient:
    from gslb.api.client import ApiClient, api_url, find_token

    return ApiClient(api_url(args.api), find_token(args.token_file))


def _when(iso: str | None) -> str:
    """ISO 8601 UTC from the api -> local time for people."""
    if not iso:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _drain_text(drain: dict[str, Any]) -> str:
    expiry = f", expires {_when(drain['expires_at'])}" if drain.get("expires_at") else ""
    return (
        f"{drain['kind']} {drain['target']}: {drain['reason']!r} by {drain['who']} "
        f"at {_when(drain['created_at'])}{expiry}"
    )


def _timing_lines(result: dict[str, Any]) -> list[str]:
    ttl = f"TTL {result['ttl']} s" + (
        f", negative TTL {result['negative_ttl']} s" if result.get("negative_ttl") else ""
    )
    return [
        f"  effective        {_when(result['effective_at'])} (store version {result['version']})",
        f"  responders by    {_when(result['responders_by'])}",
        f"  caches clear by  {_when(result['caches_clear_by'])} ({ttl})",
    ]


def cmd_drain(args: argparse.Namespace) -> int:
    from gslb.api.client import ApiError

    client = _client(args)
    try:
        result = client.drain(
            args.kind, args.name, reason=args.reason, expires_in_s=args.expires_in, force=args.force
        )
    except ApiError as e:
        print(f"gslb: drain refused: {e}", file=sys.stderr)
        if e.status == 409:
            print("gslb: repeat with --force to drain anyway", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    services = ", ".join(s.rstrip(".") for s in result["affected_services"]) or "none"
    datacenters = ", ".join(result["affected_datacenters"]) or "none"
    print(f"drained {args.kind} {args.name}" + (" (forced)" if result["forced"] else ""))
    print(f"  reason           {result['drain']['reason']}")
    if result["drain"].get("expires_at"):
        print(f"  expires          {_when(result['drain']['expires_at'])}")
    print(f"  datacenters      {datacenters} ({result['affected_endpoints']} endpoints)")
    print(f"  services         {services}")
    for line in _timing_lines(result):
        print(line)
    for emptied in result["emptied"]:
        print(
            f"  warning          {emptied['service'].rstrip('.')} {emptied['family']} "
            "has nothing left to answer"
        )
    return 0


def cmd_undrain(args: argparse.Namespace) -> int:
    from gslb.api.client import ApiError

    try:
        result = _client(args).undrain(args.kind, args.name, reason=args.reason or "")
    except ApiError as e:
        print(f"gslb: undrain refused: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if result["removed"] is None:
        print(f"{args.kind} {args.name} was not drained: nothing changed")
    else:
        print(f"undrained {args.kind} {args.name}")
        for line in _timing_lines(result):
            print(line)
    for drain in result["still_drained_by"]:
        print(f"  still drained by {_drain_text(drain)}")
    return 0


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def render_state(state: dict[str, Any], *, endpoints: bool = False) -> str:
    """The text `gslb state` prints."""
    sync = state["sync"]
    age = "never" if sync["age_s"] is None else f"{sync['age_s']:.1f} s ago"
    lines = [
        f"gslb state: {state['mode']} mode, store version {state['version']['store']}, "
        f"last sync {age}"
        + ("" if sync["connected"] else ", STORE UNREACHABLE")
        + (", STALE" if sync["stale"] else "")
        + (", HOLDING LAST VERDICTS" if state.get("hold", {}).get("holding") else "")
    ]
    lines += _hold_lines(state.get("hold"))
    rows = [["REGION", "DATACENTER", "STATE", "UP", "DRAIN"]]
    by_name = {dc["name"]: dc for dc in state["datacenters"]}
    listed = set()
    for region in state["regions"]:
        for name in region["datacenters"]:
            dc = by_name[name]
            listed.add(name)
            up = sum(s["endpoints_up"] for s in dc["services"])
            total = sum(s["endpoints"] for s in dc["services"])
            drain = dc["drain"]
            rows.append(
                [
                    region["name"],
                    name,
                    dc["state"],
                    f"{up}/{total}",
                    f"{drain['kind']} {drain['target']}: {drain['reason']}" if drain else "",
                ]
            )
    lines += ["", *_table(rows)]
    rows = [["SERVICE", "TTL", "ELIGIBLE", "WHEN ALL DOWN"]]
    for service in state["services"]:
        eligible = ", ".join(service["eligible_datacenters"]) or "none (when_all_down answers)"
        rows.append([service["name"].rstrip("."), str(service["ttl"]), eligible, service["when_all_down"]])
    lines += ["", *_table(rows)]
    if endpoints:
        rows = [["ENDPOINT", "HEALTH", "DRAINED", "PROBERS (health, ewma ms, last check)"]]
        for e in state["endpoints"]:
            probers = "; ".join(
                f"{p['prober']} {p['health']}"
                + (f" {p['ewma_rtt_ms']:.1f}" if p["ewma_rtt_ms"] is not None else "")
                + (f" {p['last_check_age_s']:.1f}s ago" if p["last_check_age_s"] is not None else "")
                for p in e["probers"]
            )
            health = e["health"] + (" (held)" if e.get("held") else "")
            rows.append([e["id"], health, "yes" if e["drained"] else "", probers])
        lines += ["", *_table(rows)]
    lines += ["", "drains:" if state["drains"] else "drains: none"]
    lines += [f"  {_drain_text(d)}" for d in state["drains"]]
    probers = state["probers"]
    lines.append("probers:" if probers else "probers: none reporting")
    for p in probers:
        stale = f" (STALE since {p['stale_since']})" if p.get("stale_since") else " (STALE)"
        lines.append(
            f"  {p['id']}: heartbeat {p['heartbeat_age_s']:.1f} s ago" + (stale if p["stale"] else "")
        )
    return "\n".join(lines)


def _hold_lines(hold: dict[str, Any] | None) -> list[str]:
    """What `gslb state` says when no prober is fresh (nothing when some prober is)."""
    if not hold or hold["since"] is None:
        return []
    held = ", ".join(f"{e} {h}" for e, h in hold["endpoints"].items()) or "none"
    since = f"no fresh prober since {hold['since']} ({hold['age_s']:.1f} s)"
    if hold["released"]:
        return [
            f"{since}: the held verdicts were RELEASED after prober.hold_stale_s "
            f"({hold['hold_stale_s']:g} s); every endpoint counts as up (were held: {held})"
        ]
    limit = "forever" if hold["hold_stale_s"] is None else f"for at most {hold['hold_stale_s']:g} s"
    return [
        f"{since}: holding the last verdicts of {', '.join(hold['probers'])} {limit}",
        f"held out of answers: {held}",
    ]


def cmd_state(args: argparse.Namespace) -> int:
    state = _client(args).state()
    print(json.dumps(state, indent=2) if args.json else render_state(state, endpoints=args.endpoints))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    entries = _client(args).audit(args.limit)["entries"]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [["TIME", "TOKEN", "SOURCE", "ACTION", "TARGET", "RESULT", "REASON"]]
    for e in reversed(entries):
        rows.append(
            [_when(e["at"]), e["token"], e["source"], e["action"], e["target"], e["result"], e["reason"]]
        )
    print("\n".join(_table(rows)) if len(rows) > 1 else "no audit entries")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from gslb.api.tokens import Role, append_token_line, new_token, parse_tokens_file, token_line, valid_name

    if not valid_name(args.name):
        raise GslbError(f'"{args.name}" is not a token name (letters, digits, "_.-", at most 64)')
    path = Path(args.file) if args.file else None
    if args.config:
        path = _config(args.config).api.tokens_file
        if path is None:
            raise GslbError(f"{args.config} sets no api.tokens_file: set it, or pass --file")
    secret = new_token()
    line = token_line(args.name, Role(args.role), secret)
    if path is None:
        print(secret)
        print(
            f"add this line to your api.tokens_file (the token above is shown only now):\n{line}",
            file=sys.stderr,
        )
        return 0
    if path.exists():
        existing = parse_tokens_file(path.read_text(), str(path))
        if any(t.name == args.name for t in existing):
            raise GslbError(f'{path} already has a token named "{args.name}"')
    append_token_line(path, line)
    print(secret)
    print(
        f'token "{args.name}" ({args.role}) added to {path}; it is shown only now. '
        f"A running api picks it up within a second.",
        file=sys.stderr,
    )
    return 0


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", metavar="URL", help="the api (default: $GSLB_API_URL or http://127.0.0.1:8053)"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the token (default: $GSLB_API_TOKEN, else the file gslb serve creates)",
    )
    parser.add_argument("--json", action="store_true", help="print the api's JSON reply")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gslb", description="GSLB authoritative DNS server")
    parser.add_argument("--version", action="version", version=f"gslb {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer DNS (embedded default with no -c)")
    serve.add_argument("-c", "--config", help="gslb.yaml (default: the bundled example)")
    serve.add_argument("--listen", action="append", help="ADDRESS:PORT, overrides server.listen (repeatable)")
    serve.add_argument("--api-listen", metavar="ADDR:PORT", help="overrides api.listen (embedded mode)")
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor
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
    explain.add_argument("-c", "--config", help="gslb.yaml (default: the bundled example)")
    explain.add_argument(
        "--live", action="store_true", help="ask the running api (live health and drains), not the config"
    )
    _api_options(explain)  # --api, --token-file, --json
    explain.set_defaults(func=cmd_explain)

    api = sub.add_parser("api", help="the ops api over Redis state (gslb serve runs it in embedded mode)")
    api.add_argument("-c", "--config", required=True, help="gslb.yaml with state.redis_url")
    api.set_defaults(func=cmd_api)

    for verb in ("drain", "undrain"):
        command = sub.add_parser(
            verb,
            help="take a region, datacenter or endpoint out of answers"
            if verb == "drain"
            else "put a drained region, datacenter or endpoint back",
        )
        command.add_argument("kind", choices=["region", "datacenter", "endpoint"])
        command.add_argument(
            "name", help="region or datacenter name, or endpoint id SERVICE/DATACENTER/ADDRESS"
        )
        if verb == "drain":
            command.add_argument("--reason", required=True, help="why (kept in the audit log)")
            command.add_argument(
                "--expires-in",
                type=duration_s,
                metavar="DURATION",
                help="undrain by itself after 600, 10m, 2h...",
            )
            command.add_argument(
                "--force", action="store_true", help="drain even if a service is left with nothing to answer"
            )
            command.set_defaults(func=cmd_drain)
        else:
            command.add_argument("--reason", help="why (kept in the audit log)")
            command.set_defaults(func=cmd_undrain)
        _api_options(command)

    state = sub.add_parser("state", help="datacenters, drains and probers as the api sees them")
    state.add_argument("--endpoints", action="store_true", help="also list every endpoint")
    state.set_defaults(func=cmd_state)
    _api_options(state)

    audit = sub.add_parser("audit", help="recent drains and undrains")
    audit.add_argument("--limit", type=int, default=20)
    audit.set_defaults(func=cmd_audit)
    _api_options(audit)

    token = sub.add_parser("token", help="api tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="make a token: prints it once, stores only its hash")
    create.add_argument("name", help="who the token is for (shown in the audit log)")
    create.add_argument("--role", required=True, choices=["read", "operate"])
    where = create.add_mutually_exclusive_group()
    where.add_argument("--file", help="the tokens file to append to")
    where.add_argument("-c", "--config", help="append to this config's api.tokens_file")
    create.set_defaults(func=cmd_token_create)
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
