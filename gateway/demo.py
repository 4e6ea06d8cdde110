"""`pyuse demo`: an embedded broker, simulated devices and the gateway in one process, with a prompt."""

from __future__ import annotations

import sys

from gateway.agent.llm import NOT_CONFIGURED
from gateway.app import Gateway
from gateway.config import Config, DeviceEntry
from gateway.console import Console, TracePrinter, print_result
from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.scpi import ScpiPowerSupply
from simulators.shelly import ShellySwitch
from simulators.tasmota import TasmotaPlug

HELP = "Type a command (e.g. 'turn on the desk plug'), 'devices', 'state', or 'quit'."


async def run_demo(config: Config) -> int:
    broker = EmbeddedBroker("127.0.0.1")
    await broker.start()
    plug = ShellySwitch("desk_plug")
    tasmota = TasmotaPlug("tv_plug", "tasmota_A1B2C3", broker.host, broker.port)
    psu = ScpiPowerSupply("bench_psu")
    simulators = [plug, tasmota, psu]
    for simulator in simulators:
        await simulator.start()
    demo_config = config.model_copy(deep=True)
    demo_config.mqtt.host, demo_config.mqtt.port, demo_config.mqtt.embedded = broker.host, broker.port, False
    demo_config.devices = [
        DeviceEntry(id="desk_plug", name="Desk Plug", area="office", kind="shelly_switch", host=plug.host,
                    port=plug.port),
        DeviceEntry(id="tv_plug", name="TV Plug", area="living room", kind="tasmota_plug",
                    base_topic=tasmota.topic),
        DeviceEntry(id="bench_psu", name="Bench Supply", area="lab", kind="scpi_psu", serial_port=psu.port),
        *config.devices]
    try:
        async with Gateway(demo_config, "demo") as gateway:
            print(f"pyuse demo: MQTT broker on {broker.host}:{broker.port}, data in {config.gateway.data_dir}")
            for simulator in simulators:
                print(f"  {simulator.id:<10} {simulator.kind:<14} {simulator.address()}")
            if gateway.llm is None:
                print(f"\nNo model yet: {NOT_CONFIGURED}\n")
            print(HELP)
            await _prompt(gateway, simulators)
    finally:
        for simulator in simulators:
            await simulator.stop()
        await broker.close()
    return 0


async def _prompt(gateway: Gateway, simulators: list) -> None:
    console = Console(sys.stdout)
    await console.start()
    while True:
        line = await console.readline("pyuse> ")
        if line is None:
            print()
            return
        line = line.strip()
        if line in ("quit", "exit"):
            return
        if line == "devices":
            for device in gateway.registry.all():
                print(f"  {device.id:<10} {device.name!r:<16} [{device.area}] {device.kind} ({device.transport})")
        elif line == "state":
            for simulator in simulators:
                print(f"  {simulator.id:<10} {simulator.state()}")
        elif line:
            if gateway.llm is None:
                print(f"No model is configured, so commands cannot run yet: {NOT_CONFIGURED}")
                continue
            result = await gateway.run_task(line, origin="demo", on_event=TracePrinter(sys.stdout),
                                            confirm=console.confirm)
            print_result(result, sys.stdout)
