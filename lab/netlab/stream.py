"""A steady DNS query stream, run inside a lab namespace: `python -m lab.netlab.stream ...`.

Sends one query every 1/RATE s whatever happened to the previous ones (a resolver does not
stop asking because one answer is late), matches replies by id, and counts a query lost when
no reply came within --timeout. Runs until SIGTERM or SIGINT, waits for the last replies,
then prints one JSON object: per query its send time (time.time()), round trip, rcode, the
node that answered (NSID) and the A records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype


@dataclass
class Sent:
    t: float
    name: str
    rtt_ms: float | None = None
    rcode: str | None = None
    by: str | None = None
    answer: list[str] = field(default_factory=list)


def query(name: str, *, recursion: bool, subnet: str | None) -> dns.message.QueryMessage:
    options: list[dns.edns.Option] = [dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")]
    if subnet is not None:
        address, _, length = subnet.partition("/")
        options.append(dns.edns.ECSOption(address, int(length or 24)))
    message = dns.message.make_query(name, "A", use_edns=0, options=options)
    message.flags = dns.flags.RD if recursion else dns.flags.Flag(0)
    return message


def record(entry: Sent, reply: dns.message.Message, now: float) -> None:
    entry.rtt_ms = round((now - entry.t) * 1000, 2)
    entry.rcode = dns.rcode.to_text(reply.rcode())
    for option in reply.options:
        if option.otype == dns.edns.OptionType.NSID:
            entry.by = option.to_wire().decode(errors="replace")
    entry.answer = sorted(r.to_text() for s in reply.answer if s.rdtype == dns.rdatatype.A for r in s)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.netlab.stream")
    parser.add_argument("--server", required=True)
    parser.add_argument("--name", default="www.gslb.example.com")
    parser.add_argument("--unique", action="store_true", help="a new name per query: q<N>-<pid>.NAME")
    parser.add_argument("--recursion", action="store_true", help="set RD (asking a resolver)")
    parser.add_argument("--subnet", help="send this ECS subnet")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((args.server, 53))
    sock.setblocking(False)
    sent: list[Sent] = []
    waiting: dict[int, Sent] = {}
    period = 1.0 / args.rate
    next_send = time.time()
    finish_at: float | None = None
    while True:
        now = time.time()
        if stopping and finish_at is None:
            finish_at = now + args.timeout
        if finish_at is not None and (now >= finish_at or not waiting):
            break
        if finish_at is None and now >= next_send:
            name = f"q{len(sent)}-{os.getpid()}.{args.name}" if args.unique else args.name
            message = query(name, recursion=args.recursion, subnet=args.subnet)
            message.id = len(sent) % 65536
            entry = Sent(now, name)
            sent.append(entry)
            waiting[message.id] = entry
            with contextlib.suppress(OSError):  # ICMP unreachable shows on a connected socket
                sock.send(message.to_wire())
            next_send += period
        # forget queries past their timeout: a late reply does not count
        for qid in [q for q, e in waiting.items() if now - e.t > args.timeout]:
            del waiting[qid]
        wait = max(0.0, min(next_send, finish_at or next_send) - time.time())
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            continue
        try:
            wire = sock.recv(65535)
        except OSError:
            continue
        try:
            reply = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            continue
        answered = waiting.pop(reply.id, None)
        if answered is not None:
            record(answered, reply, time.time())
    json.dump({"server": args.server, "queries": [asdict(e) for e in sent]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
