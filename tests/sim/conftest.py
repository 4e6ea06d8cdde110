"""Test equipment for the HTTP-family simulators: a clock the test moves, a context, a client session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from simulators.base import LoopbackPool, SimClock, SimContext


class ManualClock(SimClock):
    """Simulated time that moves only when the test advances it, so timers and energy are exact."""

    def __init__(self) -> None:
        super().__init__()
        self._now = float(int(time.time()))
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            moved = self._moved
            await moved.wait()

    async def advance(self, seconds: float) -> None:
        """Move time on and let everything that was waiting for it run."""
        self._now += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
def http_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def http_context(http_clock: ManualClock) -> SimContext:
    # Far from the pool's default start, so a scenario running next to the tests does not collide on port 80.
    return SimContext(clock=http_clock, addresses=LoopbackPool(first=3000))


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def http_until() -> Callable[[Callable[[], bool]], Awaitable[None]]:
    """Wait (at most 5 s) until a condition holds: for effects that travel over a socket."""

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                await asyncio.sleep(0.01)

    return until
