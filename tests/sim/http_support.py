"""Helpers for testing the HTTP-family simulators: a clock the test moves, a context, waiting for effects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


def loopback_context(clock: SimClock) -> SimContext:
    # Loopback addresses far from the pool's default start, so a scenario running next to the tests does not
    # collide with them on port 80.
    return SimContext(clock=clock, addresses=LoopbackPool(first=3000))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until a condition holds, for effects that travel over a socket."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
