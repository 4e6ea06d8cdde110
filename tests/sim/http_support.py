"""Helpers for testing the HTTP-family simulators: a context of their own, waiting for effects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from simulators.base import LoopbackPool, SimClock, SimContext


def loopback_context(clock: SimClock) -> SimContext:
    # Loopback addresses far from the pool's default start, so a scenario running next to the tests does not
    # collide with them on port 80.
    return SimContext(clock=clock, addresses=LoopbackPool(first=3000))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until a condition holds, for effects that travel over a socket."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
