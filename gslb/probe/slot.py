"""A restartable in-process prober: `gslb serve` (embedded) and `gslb probe` restart it on reload."""

from __future__ import annotations

import contextlib

from gslb.config.model import Config
from gslb.probe.prober import Prober, default_prober_id
from gslb.state.store import Store


class ProberSlot:
    """The in-process prober, restartable on reload with the new config's endpoints."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.prober: Prober | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self, config: Config) -> None:
        await self.stop()
        stack = contextlib.AsyncExitStack()
        self.prober = await stack.enter_async_context(Prober(config, self.store, default_prober_id(config)))
        self._stack = stack

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self.prober = None
