"""What every simulator shares: the clock, loopback addresses, shared rooms, background jobs."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from simulators.base import LoopbackPool, SimClock, SimContext, cancel_and_wait


async def test_a_sleep_follows_a_change_of_clock_speed():
    clock = SimClock(speed=1.0)
    sleeper = asyncio.create_task(clock.sleep(3600))  # an hour of simulated time: an hour of real time at x1
    await asyncio.sleep(0.05)
    started = time.monotonic()
    clock.speed = 36000.0  # now the rest of the hour takes 0.1 s
    await asyncio.wait_for(sleeper, 2)
    assert time.monotonic() - started < 0.5
    with pytest.raises(ValueError, match="positive"):
        clock.speed = 0


def test_the_pool_starts_at_127_0_0_2_and_runs_on_past_254():
    pool = LoopbackPool()
    assert [pool.take(), pool.take()] == ["127.0.0.2", "127.0.0.3"]
    far = LoopbackPool(first=254)
    assert [far.take(), far.take()] == ["127.0.0.254", "127.0.1.1"]


def test_contexts_share_one_pool_unless_given_their_own():
    first, second = SimContext(), SimContext()
    assert first.addresses is second.addresses
    assert first.addresses.take() != second.addresses.take()
    assert SimContext(addresses=LoopbackPool(first=3000)).addresses is not first.addresses


async def test_bind_skips_an_address_whose_port_another_process_holds():
    with socket.socket() as holder:
        holder.bind(("127.0.19.174", 0))  # LoopbackPool(first=5000)'s first address
        holder.listen()
        port = holder.getsockname()[1]
        host, server = await LoopbackPool(first=5000).bind(
            lambda address: asyncio.start_server(lambda reader, writer: None, address, port))
        server.close()
        await server.wait_closed()
    assert host == "127.0.19.175"


def test_a_context_gives_each_area_one_room():
    context = SimContext()
    assert context.room("lab") is context.room("lab")
    assert context.room("lab") is not context.room("kitchen")


async def test_cancel_and_wait_ends_a_loop_that_swallows_its_first_cancellation():
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                rounds += 1
                if rounds == 1:
                    continue  # what Python 3.11's wait_for does when its future completes at that moment
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, None), 2)
    assert task.cancelled() and rounds == 2
