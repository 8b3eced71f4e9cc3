"""Answers per second over the last 15 minutes, by datacenter and by responder (`GET /v1/traffic`).

Adapter layer (the sampler is an aiohttp `cleanup_ctx`); the history itself is plain data and
takes time as a parameter. Every `SAMPLE_INTERVAL_S` the api reads the responders'
registrations from the store (`gslb.fleet` writes them about once a second with each
responder's answer totals per datacenter) and keeps, per responder and datacenter, the rate
between this sample and the last: the difference of the totals over the difference of the
heartbeat times. A responder seen for the first time (or restarted: a new pid or start time,
or totals that went down) gives the rate it reports itself (`answers_per_s`, averaged over its
last few seconds) until there are two samples to compare. A responder that stopped cleanly
counts as 0; one whose heartbeat did not move (stale) counts as unknown (null), not as 0:
a dead node's traffic has gone somewhere else, but we cannot see where from here. A sample
taken while the store could not be read is null throughout.

The history is kept in this process only (a restarted api starts an empty picture) and holds
`WINDOW_S / SAMPLE_INTERVAL_S` samples: a ring buffer, no store writes, one store read per
interval however many pages are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from gslb.api.audit import iso
from gslb.api.report import ResponderStatus, responder_status
from gslb.config.model import Config
from gslb.state.responders import ResponderRecord

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0
"""How often the api samples the responders' answer counters."""
WINDOW_S = 900.0
"""How far back the history goes."""

Rates = Mapping[str, float]  # datacenter -> answers per second
_NO_RATES: Rates = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampling: when, and each responder's answers per second by datacenter (None: unknown)."""

    at: float
    ok: bool  # False: the store could not be read, nothing is known
    responders: Mapping[str, Rates | None] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the previous sample saw of one responder, to take the next difference from."""

    incarnation: tuple[int, float]  # (pid, started_at): a restart begins new totals
    at: float
    totals: Mapping[str, int]


def _rates(record: ResponderRecord, previous: _Seen | None, *, now: float) -> Rates | None:
    """One responder's answers per second since the previous sample (see the module docstring)."""
    status = responder_status(record, now=now)
    same = previous is not None and previous.incarnation == (record.pid, record.started_at)
    if same and previous is not None and record.at > previous.at:
        dropped = any(record.answers.get(dc, 0) < n for dc, n in previous.totals.items())
        if not dropped:
            span = record.at - previous.at
            return MappingProxyType(
                {
                    dc: max(0, total - previous.totals.get(dc, 0)) / span
                    for dc, total in sorted(record.answers.items())
                }
            )
    if status is ResponderStatus.STOPPED:
        return MappingProxyType({dc: 0.0 for dc in sorted(record.answers)})
    if status is ResponderStatus.STALE:
        return None
    return MappingProxyType(dict(sorted(record.answers_per_s.items())))


class TrafficHistory:
    """A ring buffer of `Sample`s over the last `window_s` (see the module docstring)."""

    def __init__(self, *, interval_s: float = SAMPLE_INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=max(2, round(window_s / interval_s) + 1))
        self._seen: dict[str, _Seen] = {}

    def add(self, records: Sequence[ResponderRecord] | None, *, now: float) -> Sample:
        """Take one sample from the responders' `records` (None: the store could not be read)."""
        if records is None:
            sample = Sample(now, ok=False)
        else:
            by_id: dict[str, Rates | None] = {}
            for record in records:
                by_id[record.id] = _rates(record, self._seen.get(record.id), now=now)
                self._seen[record.id] = _Seen((record.pid, record.started_at), record.at, record.answers)
            for gone in set(self._seen) - set(by_id):  # forgotten by the store
                del self._seen[gone]
            sample = Sample(now, ok=True, responders=MappingProxyType(by_id))
        self.samples.append(sample)
        return sample

    def to_json(
        self, config: Config, records: Sequence[ResponderRecord] | None, *, now: float
    ) -> dict[str, Any]:
        """`GET /v1/traffic`: the series by datacenter and by responder, oldest sample first.

        `records` (the current registrations, None if unknown) give each responder's status."""
        samples = [s for s in self.samples if now - s.at <= self.window_s]
        dc_names = list(config.datacenters)
        seen_dcs = {dc for s in samples for rates in s.responders.values() if rates for dc in rates}
        dc_names += sorted(seen_dcs - set(dc_names))  # answered under a datacenter another config has
        responder_ids = sorted({rid for s in samples for rid in s.responders})
        status = {r.id: responder_status(r, now=now).value for r in records or ()}

        def dc_series(name: str) -> list[float | None]:
            return [
                _sum(s, (rates.get(name, 0.0) for rates in s.responders.values() if rates)) for s in samples
            ]

        def responder_series(rid: str) -> list[float | None]:
            out: list[float | None] = []
            for s in samples:
                rates = s.responders.get(rid, _NO_RATES) if s.ok else None
                out.append(None if rates is None else round(sum(rates.values()), 3))
            return out

        last = samples[-1] if samples else None
        datacenters = []
        for name in dc_names:
            series = dc_series(name)
            dc = config.datacenters.get(name)
            datacenters.append(
                {
                    "name": name,
                    "region": None if dc is None else dc.region,
                    "answers_per_s": series[-1] if series else None,
                    "series": series,
                }
            )
        responders = []
        for rid in responder_ids:
            series = responder_series(rid)
            latest = None if last is None or not last.ok else last.responders.get(rid, _NO_RATES)
            responders.append(
                {
                    "id": rid,
                    "status": status.get(rid, "gone"),
                    "answers_per_s": series[-1] if series else None,
                    "by_datacenter": None
                    if latest is None
                    else {dc: round(rate, 3) for dc, rate in latest.items()},
                    "series": series,
                }
            )
        totals = [_sum(s, (sum(rates.values()) for rates in s.responders.values() if rates)) for s in samples]
        return {
            "now": iso(now),
            "interval_s": self.interval_s,
            "window_s": self.window_s,
            "at": [round(s.at, 3) for s in samples],
            "total": {"answers_per_s": totals[-1] if totals else None, "series": totals},
            "datacenters": datacenters,
            "responders": responders,
        }


def _sum(sample: Sample, rates: Iterable[float]) -> float | None:
    """The sum of the known rates of one sample; None when nothing is known (store unreadable,
    or every responder unknown)."""
    if not sample.ok:
        return None
    known = any(r is not None for r in sample.responders.values())
    if sample.responders and not known:
        return None
    return round(sum(rates), 3)


def sampling(
    history: TrafficHistory,
    read: Callable[[], Awaitable[Sequence[ResponderRecord] | None]],
    *,
    clock: Callable[[], float],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp `cleanup_ctx` that adds a sample to `history` now and every `interval_s`
    while the app runs. `read` returns the registrations (None when the store failed; it
    logs that itself)."""

    async def loop() -> None:
        failing = False
        while True:
            try:
                history.add(await read(), now=clock())
                failing = False
            except Exception:
                if not failing:  # a bug: the traceback once, the page shows the gap as null
                    log.exception("cannot sample the responders' answer counters")
                failing = True
                history.add(None, now=clock())
            await asyncio.sleep(history.interval_s)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(), name="gslb-traffic-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


TRAFFIC = web.AppKey("traffic", TrafficHistory)
"""The api app's history (`gslb.api.app.build_app` sets it and its sampler)."""
