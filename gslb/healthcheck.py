"""`gslb healthcheck`: is the local responder ready for traffic? One line, and an exit code.

Blocking, standard library only (it runs every few seconds from ExaBGP's healthcheck, a BIRD
checker, a container HEALTHCHECK or a Kubernetes exec probe, so it must start fast and never
print a traceback). Two checks, in this order:

1. when `server.metrics_listen` is set, `GET /readyz?format=json` on it (on every worker's
   port when `server.workers` > 1): the responder's own facts (draining, starting, zones
   loaded, health state synced and its age), decided by `gslb.nodehealth.decide` with
   `max_state_age_s` (the config's `server.max_state_age_s` or `--max-state-age`);
   without a metrics listener the state and draining cannot be seen and are not checked;
2. for each configured zone, a real SOA query for its apex over UDP to the responder's first
   `server.listen` address (or `--server`): NOERROR, AA set, and the apex SOA in the answer.

The first failure is the result. Exit status: 0 ready, 1 not ready, 2 the check could not
run (bad usage or config).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from dataclasses import dataclass

from gslb.config.model import Config, Listen
from gslb.dnswire import pack_query, parse_reply, rcode_name
from gslb.nodehealth import NodeFacts, decide, seconds

READY, NOT_READY, CANNOT_CHECK = 0, 1, 2
SOA = 6


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int  # READY or NOT_READY
    line: str


class NotReady(Exception):
    """One reason, as the line `gslb healthcheck` prints after "not ready: "."""


def local_address(listen: Listen) -> Listen:
    """Where to reach a listener from this host: a wildcard address means loopback."""
    if listen.host in ("0.0.0.0", ""):
        return Listen("127.0.0.1", listen.port)
    if listen.host == "::":
        return Listen("::1", listen.port)
    return listen


def show(listen: Listen) -> str:
    return f"[{listen.host}]:{listen.port}" if ":" in listen.host else f"{listen.host}:{listen.port}"


def check(
    config: Config,
    *,
    server: Listen | None = None,
    max_state_age_s: float | None = None,
    timeout_s: float = 1.0,
) -> Outcome:
    """Run both checks (module docstring); `max_state_age_s` None: the config's limit."""
    limit = max_state_age_s if max_state_age_s is not None else config.server.max_state_age_s
    dns = local_address(server or config.server.listen[0])
    try:
        state = readiness_part(config, limit, timeout_s)
        for zone in config.zones:
            query_soa(dns, zone.origin, timeout_s)
    except NotReady as e:
        return Outcome(NOT_READY, f"not ready: {e}")
    count = len(config.zones)
    return Outcome(READY, f"ready: {count} zone{'s' if count != 1 else ''} answered by {show(dns)}; {state}")


def readiness_part(config: Config, limit: float | None, timeout_s: float) -> str:
    """Check /readyz of every worker; what to say about the state when all are ready."""
    metrics = config.server.metrics_listen
    if metrics is None:
        return "state and draining not checked (no server.metrics_listen)"
    base = local_address(metrics)
    said = ""
    for worker in range(config.server.workers):
        listen = Listen(base.host, base.port + worker)
        facts = fetch_facts(listen, timeout_s)
        verdict = decide(facts, max_state_age_s=limit)
        if verdict.reason is not None:
            raise NotReady(verdict.reason)
        if facts.embedded:
            said = "state in memory (embedded)"
        elif facts.state_age_s is None:
            said = "state from the snapshot file"
        else:
            said = f"state {seconds(facts.state_age_s)} old" + (
                f" (limit {seconds(limit)})" if limit is not None else ""
            )
    return said


def fetch_facts(listen: Listen, timeout_s: float) -> NodeFacts:
    """`GET /readyz?format=json` from one metrics listener; NotReady when it cannot be read."""
    where = f"http://{show(listen)}/readyz"
    connection = http.client.HTTPConnection(listen.host, listen.port, timeout=timeout_s)
    try:
        connection.request("GET", "/readyz?format=json", headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(65536)
    except ConnectionRefusedError:
        raise NotReady(f"{where} not answered (connection refused: nothing listening)") from None
    except TimeoutError:
        raise NotReady(f"{where} not answered (timeout {seconds(timeout_s)})") from None
    except (OSError, http.client.HTTPException) as e:
        raise NotReady(f"{where} not answered ({_why(e)})") from None
    finally:
        connection.close()
    if response.status not in (200, 503):
        raise NotReady(f"{where} answered HTTP {response.status} (not a gslb responder of this version?)")
    try:
        doc = json.loads(body)
        return NodeFacts.from_json(doc["conditions"])
    except (ValueError, KeyError, TypeError) as e:
        raise NotReady(f"{where} gave an unreadable reply ({e})") from None


def query_soa(server: Listen, origin: str, timeout_s: float) -> None:
    """One SOA query for `origin` over UDP; NotReady unless NOERROR, AA and the apex SOA."""
    where = f"zone {origin} not answered by {show(server)}"
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    query_id = int.from_bytes(os.urandom(2), "big")
    query = pack_query(origin, SOA, query_id)
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((server.host, server.port))  # replies from elsewhere are not ours
            sock.send(query)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                reply = sock.recv(65535)
                try:
                    answered = judge_soa_reply(reply, query_id, origin)
                except ValueError as e:
                    raise NotReady(f"{where} (malformed reply: {e})") from None
                if answered is not None:
                    break
        except ConnectionRefusedError:
            raise NotReady(f"{where} (connection refused: nothing listening)") from None
        except TimeoutError:
            raise NotReady(f"{where} (timeout {seconds(timeout_s)})") from None
        except OSError as e:
            raise NotReady(f"{where} ({_why(e)})") from None
    if answered:
        raise NotReady(f"zone {origin} not answered authoritatively by {show(server)} ({answered})")


def judge_soa_reply(wire: bytes, query_id: int, origin: str) -> str | None:
    """Judge one datagram: None if it is not the reply to our query (wrong id or question),
    "" if it is a good authoritative SOA answer, else what is wrong ("REFUSED", "AA not set",
    "no SOA in the answer"). ValueError if it is malformed."""
    if len(wire) >= 12 and not wire[2] & 0x80:
        return None  # a query (QR=0), not a reply
    reply = parse_reply(wire)
    apex = origin.lower() if origin.endswith(".") else origin.lower() + "."
    if reply.id != query_id or reply.question != (apex, SOA):
        return None
    if reply.rcode != 0:
        return rcode_name(reply.rcode)
    if not reply.authoritative:
        return "AA not set"
    if (apex, SOA) in reply.answer_types:
        return ""
    return "no SOA in the answer"


def _why(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
