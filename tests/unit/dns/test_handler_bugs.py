"""A bug on the query path: SERVFAIL for every query, one traceback per kind, then a count.

Every packet can hit the same bug, so logging a traceback per packet turns a flood into a
full disk. The handler's `BUGS` rate gets a fake clock here: lines are counted, not waited for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import dns.message
import dns.rcode
import pytest

from gslb.config.loader import load
from gslb.dns import handler as handler_module
from gslb.dns.handler import Handler
from gslb.health.view import HealthView
from gslb.lograte import LogRate
from gslb.responder import build_parts
from tests.server_fixture import EXAMPLE_CONFIG, GEOIP_DATA

COUNT = re.compile(r"^(\d+) more queries that hit a bug")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    fresh = LogRate(handler_module.log, handler_module.BUGS.what, level=logging.ERROR, clock=clock)
    monkeypatch.setattr(handler_module, "BUGS", fresh)
    return clock


@pytest.fixture(scope="module")
def handler() -> Handler:
    base = load(EXAMPLE_CONFIG)
    config = replace(base, geoip=replace(base.geoip, database=GEOIP_DATA / "GeoIP2-City-Test.mmdb"))
    return build_parts(config, HealthView()).handler


def query(i: int) -> bytes:
    message = dns.message.make_query(f"n{i}.gslb.example.com", "A")
    message.id = i % 65536
    return message.to_wire()


def servfail(wire: bytes | None) -> bool:
    assert wire is not None
    return dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL


def first_bug(*args: object) -> object:
    raise RuntimeError("first bug")


def second_bug(*args: object) -> object:
    raise KeyError("second bug")


def test_a_bug_logs_one_traceback_then_a_count(
    handler: Handler, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "_build", first_bug)
    for i in range(1000):  # a flood: 100 queries a second for 10 s
        if i and i % 100 == 0:
            clock.t += 1
        assert servfail(handler.handle(query(i), "192.0.2.1"))
    records = [r for r in caplog.records if r.name == "gslb.dns.handler"]
    assert len(records) == 1
    (record,) = records
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert record.getMessage().startswith("bug while answering a query from 192.0.2.1; replying SERVFAIL")

    clock.t += 1  # the first bug after the interval says how many there were
    assert servfail(handler.handle(query(1000), "198.51.100.1"))
    handler_module.BUGS.flush()
    records = [r for r in caplog.records if r.name == "gslb.dns.handler"]
    assert [r for r in records if r.exc_info] == [record]
    summaries = [r.getMessage() for r in records if COUNT.match(r.getMessage())]
    assert summaries[0] == (
        "999 more queries that hit a bug already logged, answered SERVFAIL in the last 10 s; "
        "last: RuntimeError: first bug (query from 192.0.2.1)"
    )
    assert sum(int(m.group(1)) for s in summaries if (m := COUNT.match(s))) == 1000
    assert len(records) == 3


def test_each_kind_of_bug_gets_its_traceback_once(
    handler: Handler, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bug in (first_bug, second_bug, first_bug, second_bug):
        monkeypatch.setattr(handler, "_build", bug)
        for i in range(100):
            assert servfail(handler.handle(query(i), "192.0.2.1"))
    tracebacks = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert tracebacks == [RuntimeError, KeyError]


def test_after_a_quiet_interval_the_bug_is_logged_in_full_again(
    handler: Handler, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "_build", first_bug)
    handler.handle(query(1), "192.0.2.1")
    clock.t += 10  # a whole interval without the bug: the streak ends
    handler.handle(query(2), "192.0.2.1")
    assert len([r for r in caplog.records if r.exc_info]) == 2
