"""Two simulated homes on one machine stay apart: two `pyuse sim` processes both start every device, and each
announces its own mDNS names, which resolve to its own devices only."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sim.http_support import until
from simulators.base import SimContext
from simulators.httpdevice import HttpDevice
from simulators.runner import build
from simulators.scenario import load_scenario

SPECS = load_scenario("home").devices + load_scenario("lab").devices
START_S = 60  # two processes starting at once on a busy machine


@dataclass
class SimProcess:
    suffix: str
    addresses: dict[str, str]  # device id -> what it printed as the device's address


@asynccontextmanager
async def pyuse_sim(*args: str) -> AsyncIterator[SimProcess]:
    """`python -m simulators ARGS` until it prints "running"; stopped with Ctrl-C on leaving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None and process.stderr is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(START_S):
            while not lines or not lines[-1].startswith("running"):
                line = (await process.stdout.readline()).decode()
                assert line, f"pyuse sim ended early: {(await process.stderr.read()).decode()}"
                lines.append(line.rstrip())
        suffix = re.search(r"mDNS names end in -([a-z0-9]+)$", lines[0])
        assert suffix, lines[0]
        yield SimProcess(suffix.group(1), {line.split()[0]: line.split()[-1] for line in lines
                                           if line.startswith("  ")})
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def announced(suffix: str) -> dict[str, str]:
    """Full mDNS name -> device id, for the scenario run with `suffix`."""
    devices = build(SPECS, SimContext(mdns_suffix=suffix))
    return {name: device.id for device in devices if isinstance(device, HttpDevice)
            for name in device.mdns_names()}


async def test_two_simulator_processes_start_every_device_under_names_of_their_own() -> None:
    async with AsyncExitStack() as stack:
        first, second = await asyncio.gather(*(stack.enter_async_context(pyuse_sim("home", "lab"))
                                               for _ in range(2)))
        wanted_ids = {spec.id for spec in SPECS} | {"zigbee2mqtt"}
        assert set(first.addresses) == set(second.addresses) == wanted_ids
        assert first.suffix != second.suffix
        # Each WLED holds port 80 on a loopback address of its own: the second took the next free one.
        assert first.addresses["kitchen_counter_lights"] != second.addresses["kitchen_counter_lights"]
        assert first.addresses["kitchen_counter_lights"].endswith(":80")

        names = {name: (process, device_id) for process in (first, second)
                 for name, device_id in announced(process.suffix).items()}
        assert len(names) == 2 * len(announced(first.suffix))
        zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
        found: set[str] = set()

        def on_change(zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            if state_change is ServiceStateChange.Added:
                found.add(name)

        types = sorted({name.split(".", 1)[1] for name in names})
        browser = AsyncServiceBrowser(zeroconf.zeroconf, types, handlers=[on_change])
        try:
            await until(lambda: set(names) <= found, timeout=10)
            for name, (process, device_id) in names.items():
                info = AsyncServiceInfo(name.split(".", 1)[1], name)
                assert await info.async_request(zeroconf.zeroconf, 3000), f"{name} did not resolve"
                # The host behind the name is this process's device: no answer from the other home mixes in.
                assert [f"http://{address}:{info.port}" for address in info.parsed_addresses()] == [
                    process.addresses[device_id]], name
        finally:
            await browser.async_cancel()
            await zeroconf.async_close()
