"""Command-line front: `gslb serve | check | healthcheck | explain | probe | api | drain | undrain |
state | audit | token | config`.

The only module that prints. It parses arguments, loads the config and hands over to the
runtime; every GslbError becomes one message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gslb import __version__
from gslb.config.loader import load, parse_listen
from gslb.config.model import Config, Listen, Setting
from gslb.config.overrides import add_flags
from gslb.errors import ConfigError, GslbError, ListenError
from gslb.logs import LogFormat, counted, log_format, setup_logging

if TYPE_CHECKING:
    from gslb.api.client import ApiClient

log = logging.getLogger("gslb")


BUNDLED_CONFIG = Path(__file__).parent / "data" / "gslb.yaml"


def config_path(path: str | None, *, required: bool = False) -> Path:
    """-c FILE, else $GSLB_CONFIG, else the bundled example (or an error where a command
    needs a config of its own)."""
    chosen = path or os.environ.get("GSLB_CONFIG")
    if chosen:
        return Path(chosen)
    if required:
        raise GslbError("this command needs a config with state.redis_url: pass -c FILE or set GSLB_CONFIG")
    return BUNDLED_CONFIG


def _config(path: str | None, args: argparse.Namespace | None = None) -> Config:
    """The config file with the GSLB_* variables and the command's override flags over it."""
    required = args is not None and args.command in ("probe", "api")
    return load(config_path(path, required=required), _settings(args))


def _settings(args: argparse.Namespace | None) -> tuple[Setting, ...]:
    from gslb.config.overrides import settings

    return settings(args.command if args is not None else "", args, os.environ)


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio  # here: gslb healthcheck must start fast, and needs no event loop

        asyncio.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    from gslb.runtime import serve

    config = _config(args.config, args)
    if config.server.workers > 1 and args.worker is None:
        from gslb.runtime import supervise

        _run(supervise(config, sys.argv[1:]))
        return 0
    _run(serve(config, worker=args.worker))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from gslb.runtime import probe

    _run(probe(_config(args.config, args)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every problem of the config and its zone files in one report: when the YAML can be read
    but has problems, the zone files it names are checked all the same."""
    from gslb.config.loader import read
    from gslb.dns.zonefile import load_zones
    from gslb.health.view import HealthView
    from gslb.responder import build_parts

    config, found = read(config_path(args.config), _settings(None))
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
        f"{config.source}: OK ({counted(len(config.zones), 'zone')}, "
        f"{counted(len(config.datacenters), 'datacenter')}, {counted(len(config.services), 'service')})"
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


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 ready (one line on stdout), 1 not ready (one line on stderr), 2 cannot check."""
    from gslb.healthcheck import CANNOT_CHECK, check

    config = _config(args.config)
    distributed = config.state.redis_url is not None
    if args.max_state_age is not None and distributed and config.server.metrics_listen is None:
        print(
            f"gslb healthcheck: --max-state-age needs server.metrics_listen in {config.source} "
            "(the state's age is read from its /readyz)",
            file=sys.stderr,
        )
        return CANNOT_CHECK
    try:
        outcome = check(
            config,
            server=args.server,
            max_state_age_s=args.max_state_age,
            timeout_s=args.timeout,
        )
    except Exception as exc:  # a checker must get one line, never a traceback
        print(f"gslb healthcheck: cannot check (a bug): {type(exc).__name__}: {exc}", file=sys.stderr)
        return CANNOT_CHECK
    print(outcome.line, file=sys.stdout if outcome.status == 0 else sys.stderr)
    return outcome.status


def _listen_arg(text: str) -> Listen:
    try:
        return parse_listen(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f'"{text}" is not HOST:PORT (e.g. 127.0.0.1:53 or [::1]:53)'
        ) from None


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f'"{text}" is not a number of seconds above 0')
    return value


def cmd_api(args: argparse.Namespace) -> int:
    from gslb.runtime import api

    _run(api(_config(args.config, args)))
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
    from gslb.api.client import ApiClient, api_url
    from gslb.api.tokens import find_client_token

    return ApiClient(api_url(args.api), find_client_token(args.token_file))


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
    how = (
        ""
        if "responders_reported" not in result
        else (" (reported)" if result["responders_reported"] else " (predicted)")
    )
    lines = [
        f"  effective        {_when(result['effective_at'])} (state version {result['state_version']})",
        f"  responders by    {_when(result['responders_by'])}{how}",
    ]
    fleet = result.get("responders")
    if fleet is not None:
        applied = ", ".join(a["id"] for a in fleet["applied"]) or "none"
        lines.append(f"  applied by       {applied}")
        if fleet["pending"]:
            lines.append(f"  not yet applied  {', '.join(p['id'] for p in fleet['pending'])}")
        if fleet["not_reporting"]:
            lines.append(f"  not reporting    {', '.join(p['id'] for p in fleet['not_reporting'])} (stale)")
    lines.append(f"  caches clear by  {_when(result['caches_clear_by'])} ({ttl})")
    return lines


def cmd_drain(args: argparse.Namespace) -> int:
    from gslb.api.client import ApiError

    client = _client(args)
    try:
        result = client.drain(
            args.kind, args.name, reason=args.reason, expires_in_s=args.expires_in, force=args.force
        )
    except ApiError as e:
        print(f"gslb: drain refused: {e}", file=sys.stderr)  # a 409 already says --force
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
    print(f"  datacenters      {datacenters} ({counted(result['affected_endpoints'], 'endpoint')})")
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
    """The text `gslb state` prints: drains of every level as drained (who, why, until when),
    why a datacenter or endpoint is not up, and no round-trip time for a failing check."""
    sync = state["sync"]
    age = "never" if sync["age_s"] is None else f"{sync['age_s']:.1f} s ago"
    version = state["state_version"]
    lines = [
        f"gslb state: {state['mode']} mode, state version {version}, last sync {age}"
        + ("" if sync["connected"] else ", STORE UNREACHABLE")
        + (", STALE" if sync["stale"] else "")
        + (", HOLDING LAST VERDICTS" if state.get("hold", {}).get("holding") else "")
    ]
    lines += _hold_lines(state.get("hold"))
    in_dc: dict[str, list[dict[str, Any]]] = {}
    for e in state.get("endpoints", []):
        in_dc.setdefault(e["datacenter"], []).append(e)
    rows = [["REGION", "DATACENTER", "STATE", "UP", "WHY"]]
    by_name = {dc["name"]: dc for dc in state["datacenters"]}
    for region in state["regions"]:
        for name in region["datacenters"]:
            dc = by_name[name]
            up = sum(s["endpoints_up"] for s in dc["services"])
            total = sum(s["endpoints"] for s in dc["services"])
            drained = sum(s.get("endpoints_drained", 0) for s in dc["services"])
            count = f"{up}/{total}" + (f" ({drained} drained)" if drained else "")
            rows.append([region["name"], name, dc["state"], count, _datacenter_why(dc, in_dc.get(name, []))])
    lines += ["", *_table(rows)]
    rows = [["SERVICE", "TTL", "ELIGIBLE", "WHEN ALL DOWN"]]
    for service in state["services"]:
        eligible = ", ".join(service["eligible_datacenters"]) or "none (when_all_down answers)"
        rows.append([service["name"].rstrip("."), str(service["ttl"]), eligible, service["when_all_down"]])
    lines += ["", *_table(rows)]
    if endpoints:
        rows = [["ENDPOINT", "STATE", "DRAIN", "PROBERS (health, ewma ms or why it fails, last check)"]]
        for e in state["endpoints"]:
            shown = "drained" if e["drained"] else e["health"]
            drain = e.get("drain")
            rows.append(
                [
                    e["id"],
                    shown + (" (held)" if e.get("held") else ""),
                    "" if not drain else _drain_short(drain, own=drain["kind"] == "endpoint"),
                    "; ".join(_prober_text(p) for p in e["probers"]),
                ]
            )
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
    lines += _responder_lines(state)
    return "\n".join(lines)


REASON_WIDTH = 40
"""A drain's reason or a check's failure is cut to this many characters in the tables
(`--json` has them whole)."""

TROUBLES_SHOWN = 2
"""The WHY column names this many failing endpoints of a datacenter, then counts the rest."""


def _short(text: str, width: int = REASON_WIDTH) -> str:
    """One line of at most `width` characters, cut at a word when one ends in its second
    half: 'connection refused', 'replacing the second power supply of…'."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space > width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def _until(iso: str | None) -> str:
    """', until 14:05' in local time (with the date when not today), '' for no expiry."""
    if not iso:
        return ""
    from datetime import datetime

    when = datetime.fromisoformat(iso).astimezone()
    today = datetime.now().astimezone().date()
    return f", until {when.strftime('%H:%M' if when.date() == today else '%Y-%m-%d %H:%M')}"


def _drain_words(drain: dict[str, Any]) -> str:
    """Who, why, until when: 'by alice: disk swap, until 14:05' (the token name only)."""
    name = drain.get("token") or drain["who"].partition("@")[0]
    by = f"by {name}: " if name else ""
    return f"{by}{_short(drain['reason'])}{_until(drain.get('expires_at'))}"


def _drain_short(drain: dict[str, Any], *, own: bool = False) -> str:
    """'region europe by alice: disk swap, until 14:05'; `own`: the row is the drained thing."""
    return _drain_words(drain) if own else f"{drain['kind']} {drain['target']} {_drain_words(drain)}"


def _datacenter_why(dc: dict[str, Any], endpoints: list[dict[str, Any]]) -> str:
    """Why a datacenter is not simply up: its region or datacenter drain, its endpoint
    drains, and its endpoints that are down or degraded with the check's own words."""
    parts = []
    if dc["drain"]:
        parts.append(_drain_short(dc["drain"]))
    drains = dc.get("endpoint_drains") or []
    if len(drains) == 1:
        address = drains[0]["target"].rsplit("/", 1)[-1]
        parts.append(f"endpoint {address} drained {_drain_words(drains[0])}")
    elif drains:
        groups = "; ".join(dict.fromkeys(_drain_words(d) for d in drains))
        parts.append(f"{len(drains)} endpoints drained {groups}")
    troubles = [
        e
        for e in endpoints
        if e["health"] != "up" and not (e.get("drain") and e["drain"]["kind"] == "endpoint")
    ]
    for e in troubles[:TROUBLES_SHOWN]:
        failure = next((p["failure"] for p in e["probers"] if p.get("failure")), None)
        held = " (held)" if e.get("held") else ""
        parts.append(f"{e['address']} {e['health']}{held}" + (f": {_short(failure)}" if failure else ""))
    if len(troubles) > TROUBLES_SHOWN:
        parts.append(f"{len(troubles) - TROUBLES_SHOWN} more not up")
    return "; ".join(parts)


def _prober_text(p: dict[str, Any]) -> str:
    """'p1 up 12.3 ms 0.5s ago', or for a failing check 'p1 down: connection refused 0.5s ago'
    (no round-trip time: the EWMA of a failing check is its timeout, not a measurement)."""
    failing = p.get("last_ok") is False or p["health"] == "down"
    rtt = p["ewma_rtt_ms"]
    text = f"{p['prober']} {p['health']}"
    if p.get("failure"):
        text += f": {_short(p['failure'])}"
    elif rtt is not None and not failing:
        text += f" {rtt:.1f} ms"
    if p["last_check_age_s"] is not None:
        text += f" {p['last_check_age_s']:.1f}s ago"
    return text


def _responder_lines(state: dict[str, Any]) -> list[str]:
    """The fleet part of `gslb state`: every responder, then what is wrong across them."""
    if "responders" not in state:
        return []  # an api from before the fleet view
    responders, fleet = state["responders"], state["fleet"]
    if not responders:
        return ["responders: " + ("none registered" if fleet["known"] else "unknown (store unreadable)")]
    rows = [
        ["RESPONDER", "STATUS", "HEARTBEAT", "STATE VERSION", "SYNC AGE", "ZONES", "CONFIG", "LAST RELOAD"]
    ]
    for r in responders:
        reload = r["last_reload"]
        rows.append(
            [
                r["id"],
                r["status"].upper() if r["status"] != "up" else "up",
                f"{r['heartbeat_age_s']:.1f} s ago",
                str(r["state_version"]),
                "-" if r["sync_age_s"] is None else f"{r['sync_age_s']:.1f} s",
                ", ".join(f"{z.rstrip('.')} {serial}" for z, serial in r["zones"].items()) or "-",
                r["config_hash"][:12] or "-",
                "-" if reload is None else f"{'ok' if reload['ok'] else 'FAILED'} {_when(reload['at'])}",
            ]
        )
    lines = ["", *_table(rows)]
    rates = fleet.get("answers_per_s") or {}
    if rates:
        lines.append("answers per second: " + ", ".join(f"{dc} {rate:.1f}" for dc, rate in rates.items()))
    if fleet["problems"]:
        lines.append("fleet problems:")
        lines += [f"  {problem}" for problem in fleet["problems"]]
    return lines


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


def cmd_config(args: argparse.Namespace) -> int:
    """`gslb config reference | schema`: generated from the config model (gslb.config.reference)."""
    from gslb.config.reference import markdown, schema_json

    sys.stdout.write(markdown() if args.config_command == "reference" else schema_json())
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
        help="file holding the token (default: $GSLB_API_TOKEN, else the file gslb serve creates in "
        "embedded mode; api.tokens_file holds only hashes, the CLI never reads it)",
    )
    parser.add_argument("--json", action="store_true", help="print the api's JSON reply")


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        help="plain lines, or one JSON object per line (default: $GSLB_LOG_FORMAT, else plain)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gslb", description="GSLB authoritative DNS server")
    parser.add_argument("--version", action="version", version=f"gslb {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer DNS (embedded default with no -c)")
    serve.add_argument("-c", "--config", help="gslb.yaml (default: $GSLB_CONFIG, else the bundled example)")
    add_flags(serve, "serve")  # --listen, --metrics-listen, --identity, ... (gslb.config.overrides)
    _log_options(serve)
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    serve.set_defaults(func=cmd_serve)

    probe = sub.add_parser("probe", help="probe every endpoint and keep verdicts in Redis")
    probe.add_argument("-c", "--config", help="gslb.yaml with state.redis_url (default: $GSLB_CONFIG)")
    add_flags(probe, "probe")
    _log_options(probe)
    probe.set_defaults(func=cmd_probe)

    check = sub.add_parser("check", help="validate a config and its zone files")
    check.add_argument("-c", "--config", help="gslb.yaml (default: $GSLB_CONFIG, else the bundled example)")
    check.set_defaults(func=cmd_check)

    explain = sub.add_parser("explain", help="why a client gets the answer it gets")
    explain.add_argument("name", help="the name asked, e.g. www.gslb.example.com")
    explain.add_argument("client", help="the address the query comes from (the resolver)")
    explain.add_argument(
        "--ecs", metavar="PREFIX", help="the client subnet the resolver sends, e.g. 193.0.14.0/24"
    )
    explain.add_argument("--type", default="A", choices=["A", "AAAA"])
    explain.add_argument("-c", "--config", help="gslb.yaml (default: $GSLB_CONFIG, else the bundled example)")
    explain.add_argument(
        "--live", action="store_true", help="ask the running api (live health and drains), not the config"
    )
    _api_options(explain)  # --api, --token-file, --json
    explain.set_defaults(func=cmd_explain)

    healthcheck = sub.add_parser(
        "healthcheck",
        help="is the local responder ready? exit 0 ready, 1 not ready (one line why), 2 cannot check",
        description="Query every configured zone's SOA on the local responder (NOERROR, AA) and read "
        "its /readyz on server.metrics_listen (draining, health state synced and fresh). For ExaBGP's "
        "healthcheck --cmd, BIRD checkers, container HEALTHCHECK and Kubernetes exec probes. "
        "Exit status: 0 ready (one line on stdout), 1 not ready (one line on stderr), "
        "2 bad usage or config.",
    )
    healthcheck.add_argument(
        "-c", "--config", help="gslb.yaml (default: $GSLB_CONFIG, else the bundled example)"
    )
    healthcheck.add_argument(
        "--server",
        type=_listen_arg,
        metavar="HOST:PORT",
        help="the DNS address to query (default: the first server.listen; 0.0.0.0 and :: mean loopback)",
    )
    healthcheck.add_argument(
        "--max-state-age",
        type=_seconds_arg,
        metavar="S",
        help="not ready when the health state is older (default: server.max_state_age_s, else no limit)",
    )
    healthcheck.add_argument(
        "--timeout",
        type=_seconds_arg,
        default=1.0,
        metavar="S",
        help="seconds to wait for each answer (default: 1)",
    )
    healthcheck.set_defaults(func=cmd_healthcheck)

    api = sub.add_parser("api", help="the ops api over Redis state (gslb serve runs it in embedded mode)")
    api.add_argument("-c", "--config", help="gslb.yaml with state.redis_url (default: $GSLB_CONFIG)")
    add_flags(api, "api")
    _log_options(api)
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

    state = sub.add_parser("state", help="datacenters, drains, probers and responders as the api sees them")
    state.add_argument("--endpoints", action="store_true", help="also list every endpoint")
    state.set_defaults(func=cmd_state)
    _api_options(state)

    audit = sub.add_parser("audit", help="recent drains and undrains")
    audit.add_argument("--limit", type=int, default=20)
    audit.set_defaults(func=cmd_audit)
    _api_options(audit)

    config = sub.add_parser("config", help="the configuration reference and JSON Schema")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("reference", help="every key of gslb.yaml, as Markdown (docs/configuration.md)")
    config_sub.add_parser("schema", help="JSON Schema of gslb.yaml for editors (docs/gslb.schema.json)")
    config.set_defaults(func=cmd_config)

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
    try:
        fmt = log_format(getattr(args, "log_format", None))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(fmt, logging.DEBUG if args.verbose else logging.ERROR if quiet else logging.INFO)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return status
    except BrokenPipeError:
        return _closed_pipe()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"gslb {args.command}: {exc}", file=sys.stderr)
        return 1
    except GslbError as exc:
        print(f"gslb: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _closed_pipe() -> int:
    """`gslb explain ... | head -1`: the reader left; stop quietly, as a tool killed by SIGPIPE
    would (status 128 + 13, what a shell shows for `yes | head -1`). Python's recipe: point
    stdout at /dev/null, so that the flush at exit does not raise a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
