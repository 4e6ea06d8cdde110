"""Fixtures the HTTP-family simulator tests share: a manual clock, a loopback context on it, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sim.http_support import loopback_context
from simulators.base import ManualClock, SimContext


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def context(clock: ManualClock) -> SimContext:
    return loopback_context(clock)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
