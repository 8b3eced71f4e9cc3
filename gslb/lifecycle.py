"""Ending background tasks for sure: the one place that cancels and waits.

Used by every component that owns tasks (prober, health sync, TCP server). Standard
library only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], *, retry_s: float = 0.1) -> None:
    """Cancel the tasks and wait until every one has ended.

    A task still running after `retry_s` is cancelled again: on Python 3.11 a cancel that
    arrives just as an `asyncio.timeout()` expires can be turned into a TimeoutError, and a
    loop that suppresses timeouts would then run on and hang the shutdown (seen here).
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
