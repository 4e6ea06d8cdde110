"""`pyuse demo`: an embedded broker, the simulated home and lab, and the gateway in one process, at a prompt.

The gateway is given no devices: it finds the MQTT ones (Tasmota, Zigbee2MQTT) by discovery and the lab's
instruments by probing their serial ports. The HTTP devices (Shelly, WLED, Elgato) are declared from their
simulated addresses until the gateway browses mDNS for them.
"""

from __future__ import annotations

import sys

from gateway.agent.llm import NOT_CONFIGURED
from gateway.app import Gateway
from gateway.config import Config, DeviceEntry
from gateway.console import Console, TracePrinter, print_result
from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.httpdevice import HttpDevice
from simulators.korad import KoradPowerSupply
from simulators.runner import SimHome, running_home
from simulators.scenario import DeviceSpec, load_scenario
from simulators.scpi import LineInstrument

SCENARIOS = ("home", "lab")
HELP = "Type a command (e.g. 'turn on the kitchen ceiling light'), 'devices', 'state', or 'quit'."


async def run_demo(config: Config) -> int:
    broker = EmbeddedBroker("127.0.0.1")
    await broker.start()
    specs = [spec for name in SCENARIOS for spec in load_scenario(name).devices]
    try:
        async with running_home(specs, broker.host, broker.port) as home:
            async with Gateway(demo_config(config, specs, home, broker), "demo") as gateway:
                await gateway.settle_discovery()
                print(f"pyuse demo: MQTT broker on {broker.host}:{broker.port}, "
                      f"data in {config.gateway.data_dir}")
                print(f"simulated {', '.join(SCENARIOS)}:")
                for device_id, device in home.devices.items():
                    print(f"  {device_id:<26} {device.kind:<22} {device.address()}")
                if gateway.llm is None:
                    print(f"\nNo model yet: {NOT_CONFIGURED}\n")
                print(HELP)
                await _prompt(gateway, home)
    finally:
        await broker.close()
    return 0


def demo_config(config: Config, specs: list[DeviceSpec], home: SimHome, broker: EmbeddedBroker) -> Config:
    """The user's config, pointed at the demo's broker and serial ports, with the HTTP devices declared and
    the scenario's aliases given to the devices discovery will find (their ids are the scenario's)."""
    demo = config.model_copy(deep=True)
    demo.mqtt.host, demo.mqtt.port, demo.mqtt.embedded = broker.host, broker.port, False
    demo.discovery.mqtt = True
    demo.discovery.serial_ports = [*config.discovery.serial_ports,
                                   *(device.port for device in home.devices.values()
                                     if isinstance(device, (LineInstrument, KoradPowerSupply)))]
    declared = []
    for spec in specs:
        device = home.devices[spec.id]
        if isinstance(device, HttpDevice):
            declared.append(DeviceEntry(id=spec.id, name=spec.name, area=spec.area, kind=spec.kind,
                                        aliases=list(spec.aliases), host=device.host, port=device.port))
        elif spec.aliases:
            declared.append(DeviceEntry(id=spec.id, aliases=list(spec.aliases)))
    demo.devices = [*declared, *config.devices]
    return demo


async def _prompt(gateway: Gateway, home: SimHome) -> None:
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
                print(f"  {device.id:<26} {device.name!r:<28} [{device.area}] {device.kind} "
                      f"({device.transport})")
        elif line == "state":
            for device_id, state in home.state().items():
                print(f"  {device_id:<26} {state}")
        elif line:
            if gateway.llm is None:
                print(f"No model is configured, so commands cannot run yet: {NOT_CONFIGURED}")
                continue
            result = await gateway.run_task(line, origin="demo", on_event=TracePrinter(sys.stdout),
                                            confirm=console.confirm)
            print_result(result, sys.stdout)
