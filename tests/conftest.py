"""Shared test equipment: real brokers, real simulators, the scripted model server, a gateway factory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.config import Config, DeviceEntry
from gateway.daemon import Daemon
from gateway.transports.embedded_broker import EmbeddedBroker, free_port
from simulators.llm import ScriptedLLM
from simulators.scpi import ScpiPowerSupply
from simulators.shelly import ShellySwitch
from simulators.tasmota import TasmotaPlug


@dataclass
class BrokerAddress:
    host: str
    port: int
    kind: str


def _wait_for_port(host: str, port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port}")


MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


@contextmanager
def mqtt_listener(broker: BrokerAddress, *topic_filters: str) -> Iterator[tuple[paho.Client, asyncio.Queue[Any]]]:
    """A paho client on the test's broker, subscribed to `topic_filters`, putting each (topic, payload) it receives
    on a queue (a JSON object decoded, anything else as bytes); disconnected on leaving."""
    received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: loop.call_soon_threadsafe(
        received.put_nowait, (m.topic, json.loads(m.payload) if m.payload.startswith(b"{") else m.payload))
    client.connect(broker.host, broker.port)
    for topic_filter in topic_filters:
        client.subscribe(topic_filter)
    client.loop_start()
    try:
        yield client, received
    finally:
        client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
        client.loop_stop()


@pytest.fixture
async def mqtt_broker(tmp_path: Path) -> AsyncIterator[BrokerAddress]:
    """Mosquitto on a free loopback port when it is installed; the embedded broker (amqtt) otherwise."""
    port = free_port()
    mosquitto = MOSQUITTO
    if mosquitto:
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n")
        process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            await asyncio.to_thread(_wait_for_port, "127.0.0.1", port)
            yield BrokerAddress("127.0.0.1", port, "mosquitto")
        finally:
            process.terminate()
            process.wait(5)
    else:
        broker = EmbeddedBroker("127.0.0.1", port)
        await broker.start()
        try:
            yield BrokerAddress("127.0.0.1", port, "amqtt")
        finally:
            await broker.close()


class Mosquitto:
    """A Mosquitto of the test's own on a fixed loopback port, without persistence, to stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.address = BrokerAddress("127.0.0.1", free_port(), "mosquitto")
        self.conf = directory / "restartable-mosquitto.conf"
        self.conf.write_text(f"listener {self.address.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        await asyncio.to_thread(_wait_for_port, self.address.host, self.address.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


@pytest.fixture
async def restartable_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """For broker outages: `.stop()` and `await .start()` again on the same port."""
    if MOSQUITTO is None:
        pytest.skip("needs mosquitto, to stop and start a broker")
    broker = Mosquitto(tmp_path)
    await broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def scripted_llm() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[ScriptedLLM]]]:
    servers: list[ScriptedLLM] = []

    async def start(script: dict[str, Any]) -> ScriptedLLM:
        server = ScriptedLLM(script)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def shelly() -> AsyncIterator[ShellySwitch]:
    async with ShellySwitch("desk_plug") as device:
        yield device


@pytest.fixture
async def tasmota(mqtt_broker: BrokerAddress) -> AsyncIterator[TasmotaPlug]:
    async with TasmotaPlug("tv_plug", "tasmota_A1B2C3", mqtt_broker.host, mqtt_broker.port) as device:
        yield device


@pytest.fixture
async def psu() -> AsyncIterator[ScpiPowerSupply]:
    async with ScpiPowerSupply("bench_psu") as device:
        yield device


def make_config(tmp_path: Path, model_server: ScriptedLLM | None = None, devices: list[DeviceEntry] = (),
                broker: BrokerAddress | None = None, **sections: dict[str, Any]) -> Config:
    """A config for a test: its own data dir, the scripted model, the given devices and section overrides."""
    # mDNS on lo is shared by every process on the machine: tests that want it turn it on themselves.
    data: dict[str, Any] = {"gateway": {"data_dir": str(tmp_path / "data")},
                            "sandbox": {"exec_timeout_s": 2.0}, "discovery": {"mdns": False},
                            "llm": ({"base_url": model_server.base_url, "model": model_server.model}
                                    if model_server else {})}
    if broker:
        data["mqtt"] = {"host": broker.host, "port": broker.port}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    config = Config.model_validate(data)
    config.devices = list(devices)
    return config


def shelly_entry(device: ShellySwitch, **overrides: Any) -> DeviceEntry:
    return DeviceEntry(**{"id": device.id, "name": "Desk Plug", "area": "office", "kind": "shelly_switch",
                          "host": device.host, "port": device.port, **overrides})


def tasmota_entry(device: TasmotaPlug) -> DeviceEntry:
    return DeviceEntry(id=device.id, name="TV Plug", area="living room", kind="tasmota_plug",
                       base_topic=device.topic)


def psu_entry(device: ScpiPowerSupply) -> DeviceEntry:
    return DeviceEntry(id=device.id, name="Bench Supply", area="lab", kind="scpi_psu", serial_port=device.port)


@pytest.fixture
async def gateway_factory() -> AsyncIterator[Callable[[Config], Awaitable[Gateway]]]:
    gateways: list[Gateway] = []

    async def start(config: Config) -> Gateway:
        gateway = Gateway(config, "test")
        await gateway.start()
        gateways.append(gateway)
        return gateway

    yield start
    for gateway in gateways:
        await gateway.close()


@pytest.fixture
async def daemon_factory() -> AsyncIterator[Callable[[Config], Awaitable[Daemon]]]:
    """Starts `pyuse run`'s Daemon in this process, its API on a free port; closes them after the test."""
    daemons: list[Daemon] = []

    async def start(config: Config) -> Daemon:
        config.api.port = 0
        daemon = Daemon(config)
        await daemon.start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.close()


def code_reply(code: str, thought: str = "Let me do that.") -> str:
    return f"Thought: {thought}\n```python\n{code}\n```"


async def serve_app(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """A real aiohttp server for a test's own device or page, on a free port: (its runner, to clean up; the port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """For asynchronous outcomes (discovery, MQTT, automations): wait until true, failing after `timeout`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
