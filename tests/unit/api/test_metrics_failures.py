"""The metrics collector when collecting fails: never silent for good, never a traceback per
scrape. Each kind of failure is logged with its traceback once per streak, then counted."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client.core import Metric

from gslb.config.model import Config
from tests.unit.api.harness import running

COUNT = re.compile(r"^(\d+) more failed metrics collections")


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def broken_health() -> Iterator[Metric]:
    raise ZeroDivisionError("a bug in _health")


def broken_state() -> Iterator[Metric]:
    raise KeyError("a bug in _state")


def test_collection_failures_are_logged_per_kind_and_counted(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()

    async def main() -> None:
        async with running(config, clock=clock) as h:
            collector = h.api_state.collector

            async def scrapes(n: int) -> None:
                for _ in range(n):
                    assert (await h.client.get("/metrics")).status == 200

            collector._health = broken_health  # type: ignore[method-assign]
            await scrapes(5)
            collector._state = broken_state  # type: ignore[method-assign]
            await scrapes(5)  # _health fails first: the same kind
            del collector._health  # the class's own again
            await scrapes(5)  # now _state: a new kind, logged in full
            assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ZeroDivisionError, KeyError]

            clock.t += 5
            await scrapes(1)  # still the same streak and window: counted
            clock.t += 5  # the first failure after the interval says how many there were
            await scrapes(1)
            summaries = [r.getMessage() for r in caplog.records if COUNT.match(r.getMessage())]
            assert summaries == [
                "14 more failed metrics collections in the last 10 s; last: KeyError: 'a bug in _state'"
            ]

            del collector._state
            await scrapes(3)
            clock.t += 20  # quiet: the streak ends, and a new failure is logged in full again
            collector._health = broken_health  # type: ignore[method-assign]
            await scrapes(1)
            assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [
                ZeroDivisionError,
                KeyError,
                ZeroDivisionError,
            ]

    asyncio.run(main())
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.name == "gslb.api.metrics")
