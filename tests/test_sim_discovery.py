"""`pyuse sim home` and `pyuse run` as two real processes, with no device in the gateway's config: everything
it knows it discovered (MQTT, mDNS on loopback), and it follows the devices going offline, being removed and
surviving its own restart."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from gateway.transports.embedded_broker import free_port
from simulators.scenario import load_scenario
from test_daemon import PYUSE, start_daemon

HOME = load_scenario("home").devices
POLL_S = 1.0  # how often the gateway reads HTTP devices: their availability timeout in this test
# Only this test's simulators are adopted, whatever other simulated homes run on the machine.
MDNS_SUFFIX = secrets.token_hex(2)


@pytest.fixture
async def sim_home(mqtt_broker) -> AsyncIterator[str]:
    """`pyuse sim home` on the test's broker; yields its admin API's base URL."""
    admin_port = free_port()
    process = await asyncio.create_subprocess_exec(
        *PYUSE, "sim", "home", "--broker", f"{mqtt_broker.host}:{mqtt_broker.port}", "--admin-port",
        str(admin_port), "--mdns-suffix", MDNS_SUFFIX, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while not (line := (await process.stdout.readline()).decode()).startswith("running"):
                assert line, f"pyuse sim ended early: {(await process.stderr.read()).decode()}"
        yield f"http://127.0.0.1:{admin_port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


def gateway_config(tmp_path: Path, broker: Any) -> tuple[Path, int]:
    api_port = free_port()
    path = tmp_path / "pyuse.toml"
    path.write_text(f"""[gateway]
data_dir = "{tmp_path / 'data'}"

[mqtt]
embedded = false
host = "{broker.host}"
port = {broker.port}

[api]
port = {api_port}
mqtt_intake = false

[discovery]
poll_s = {POLL_S}
mdns_names = ["*-{MDNS_SUFFIX}"]
""")
    return path, api_port


async def devices_of(http: aiohttp.ClientSession, api_port: int, data_dir: Path) -> dict[str, dict[str, Any]]:
    token = (data_dir / "api_token").read_text().strip()  # as a script on the machine reads it
    async with http.get(f"http://127.0.0.1:{api_port}/api/devices",
                        headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
        return {device["id"]: device for device in await response.json()}


async def eventually(read: Any, condition: Any, timeout: float) -> Any:
    """Read until condition(value) holds; the last value read, or a failure naming it after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if condition(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s; last read: {value}")
        await asyncio.sleep(0.1)


async def stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0


async def tasmota_config_topic(broker: Any, device_name: str) -> str:
    """The retained Tasmota discovery topic whose config names this device."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("tasmota/discovery/+/config")
        async with asyncio.timeout(5):
            async for message in client.messages:
                if json.loads(message.payload).get("dn") == device_name:
                    return str(message.topic)
    raise AssertionError(device_name)


async def test_the_gateway_finds_the_simulated_home_and_follows_it(tmp_path, mqtt_broker, sim_home):
    config, api_port = gateway_config(tmp_path, mqtt_broker)
    env: dict[str, str] = {}
    started = time.monotonic()
    gateway, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], env)
    try:
        async with aiohttp.ClientSession() as http:
            async def read() -> dict[str, dict[str, Any]]:
                return await devices_of(http, api_port, tmp_path / "data")

            expected = {spec.id: (spec.kind, spec.area) for spec in HOME}
            found = await eventually(read, lambda devices: expected.items() <= {
                device_id: (device["kind"], device["area"]) for device_id, device in devices.items()}.items(),
                timeout=10 - (time.monotonic() - started))
            assert all(found[device_id]["online"] for device_id in expected)
            assert found["kitchen_counter_lights"]["transport"] == "http"  # by mDNS: nothing was configured

            # Offline three ways: a Tasmota's LWT, a Zigbee device's availability, an HTTP device not answering.
            for device_id in ("living_room_tv", "kitchen_window", "garage_ceiling_light"):
                async with http.post(f"{sim_home}/state/{device_id}", json={"fault": "offline"}) as response:
                    assert response.status == 200, await response.text()
            await eventually(read, lambda devices: not any(devices[device_id]["online"] for device_id in (
                "living_room_tv", "kitchen_window", "garage_ceiling_light")), timeout=POLL_S + 5)
            async with http.post(f"{sim_home}/state/living_room_tv", json={"fault": "none"}) as response:
                assert response.status == 200
            await eventually(read, lambda devices: devices["living_room_tv"]["online"], timeout=5)

            # A discovery config removed (an empty retained payload) removes the device.
            topic = await tasmota_config_topic(mqtt_broker, "Garage Freezer")
            async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as client:
                await client.publish(topic, b"", retain=True)
            before_restart = await eventually(read, lambda devices: "garage_freezer" not in devices, timeout=5)
    finally:
        await stop(gateway)

    # A restart restores the registry from the store and rediscovery adds no second copy of anything.
    gateway, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], env)
    try:
        async with aiohttp.ClientSession() as http:
            restored = await devices_of(http, api_port, tmp_path / "data")
            assert set(restored) == set(before_restart)
            await asyncio.sleep(3)  # rediscovery: mDNS answers and retained MQTT configs arrive again
            after = await devices_of(http, api_port, tmp_path / "data")
            assert set(after) == set(before_restart)
            assert {device["kind"] for device in after.values()} == {device["kind"] for device in restored.values()}
    finally:
        await stop(gateway)
