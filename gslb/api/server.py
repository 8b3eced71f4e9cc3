"""Placeholder until the api lands: the lifecycle hook `gslb serve` enters in embedded mode."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gslb.api.context import ApiContext
from gslb.config.model import ApiConfig


@contextlib.asynccontextmanager
async def run_api(config: ApiConfig, context: ApiContext) -> AsyncIterator[None]:
    yield
