"""Two `pyuse demo` processes on one machine stay two worlds: both start (the second on another web port), each
gateway adopts only its own simulators' devices, and a command given to one never reaches the other's."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

PYUSE = [sys.executable, "-m", "gateway"]
FIRST_LINE = re.compile(r"web page at (http://\S+)/, data in (\S+) ")


@dataclass
class Demo:
    url: str
    token: str

    async def devices(self, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        async with http.get(f"{self.url}/api/devices", headers={"Authorization": f"Bearer {self.token}"}) as reply:
            assert reply.status == 200, await reply.text()
            return {device["id"]: device for device in await reply.json()}


@asynccontextmanager
async def demo(user_data_dir: Path) -> AsyncIterator[Demo]:
    """`pyuse demo` with its input held open, until it has introduced itself; ended by closing its input."""
    process = await asyncio.create_subprocess_exec(
        *PYUSE, "demo", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYUSE_GATEWAY_DATA_DIR": str(user_data_dir)})
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(90):
            first = (await process.stdout.readline()).decode()
            assert (found := FIRST_LINE.search(first)), first + (await process.stderr.read()).decode()
            while b"(or Ctrl-D)" not in await process.stdout.readline():
                pass
        yield Demo(found.group(1), (Path(found.group(2)) / "api_token").read_text().strip())
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_demos_side_by_side_see_and_switch_only_their_own_devices(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        first, second = await asyncio.gather(*(stack.enter_async_context(demo(tmp_path / name))
                                               for name in ("first", "second")))
        assert first.url != second.url
        for world in (first, second):
            devices = await world.devices(http)
            assert len(devices) == 22 and not [key for key in devices if re.search(r"_\d+$", key)], sorted(devices)
            assert all(device["online"] for device in devices.values())

        async with http.post(f"{first.url}/api/tasks", json={"text": "turn on the garage light"},
                             headers={"Authorization": f"Bearer {first.token}"}) as reply:
            assert reply.status == 202, await reply.text()
        async with asyncio.timeout(30):
            while not (await first.devices(http))["garage_ceiling_light"]["state"].get("output"):
                await asyncio.sleep(0.2)
        assert (await second.devices(http))["garage_ceiling_light"]["state"]["output"] is False
