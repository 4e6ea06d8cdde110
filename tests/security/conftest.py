"""Fixtures for the red team's tests: a gateway whose data lives where file modes would let the job in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import BrokerAddress, make_config

from gateway.app import Gateway
from gateway.config import DeviceEntry
from security.attack import LIMITS, SECRET, Attacker, Listener, StartAttacker, world_open_dir


@asynccontextmanager
async def attacker_gateways() -> AsyncIterator[StartAttacker]:
    """Starts gateways with small limits and the fake secret in their config; closes and removes them after.

    The data dir sits in a world-enterable directory (mode 0755, not pytest's private 0700 tmp dir), and is
    opened up again after the gateway made it private (0700, the store 0600), so the files in it are readable by
    the job's uid as far as file modes go: only the sandbox can keep them out.
    """
    started: list[tuple[Gateway, Path]] = []

    async def start(devices: list[DeviceEntry] = (), broker: BrokerAddress | None = None,
                    model_server: Any = None, **sections: dict[str, Any]) -> Attacker:
        base = world_open_dir("pyuse-redteam-")
        sandbox = {**LIMITS, **sections.pop("sandbox", {})}
        llm = {"api_key": SECRET, **sections.pop("llm", {})}
        config = make_config(base, model_server, devices, broker, sandbox=sandbox, llm=llm, **sections)
        gateway = Gateway(config, "red team")
        started.append((gateway, base))
        await gateway.start()
        config.gateway.data_dir.chmod(0o755)
        config.db_path.chmod(0o644)
        await gateway.poller.settle()  # the gateway's own first state reads are not the attack's
        return Attacker(gateway, base)

    yield start
    for gateway, base in started:
        await gateway.close()
        # Not shutil.rmtree: it recurses, and a job may have nested directories deeper than Python's stack.
        remover = await asyncio.create_subprocess_exec("rm", "-rf", "--", str(base))
        assert await remover.wait() == 0


@pytest.fixture
async def start_attacker() -> AsyncIterator[StartAttacker]:
    """For a test that needs a gateway of its own: other devices or limits, or one it may break."""
    async with attacker_gateways() as start:
        yield start


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def attacker() -> AsyncIterator[Attacker]:
    """One gateway for all of a module's attacks: starting one per attack cost most of this suite's time, and
    `Attacker.run` checks after every attack that the gateway is as healthy as a new one. The tests that use it
    run on the module's event loop, where it lives: they are marked `MODULE_LOOP` (security.attack)."""
    async with attacker_gateways() as start:
        yield await start()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = await Listener().start()
    yield server
    await server.close()
