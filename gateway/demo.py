"""`pyuse demo`: an embedded broker, the simulated home and lab, and the gateway with its web page, in one
process, at a prompt.

The gateway is given no devices: it finds the MQTT ones (Tasmota, Zigbee2MQTT) by discovery, the HTTP ones
(Shelly, WLED, Elgato) by browsing mDNS on loopback; the lab's instruments are declared on their serial ports.
Commands typed at the prompt run as tasks of the daemon, so the web page shows them too. Without a model the
fast path and saved skills still take simple commands.
"""

from __future__ import annotations

import socket
import sys

from gateway.agent.llm import NOT_CONFIGURED
from gateway.config import Config, DeviceEntry
from gateway.console import Console, TracePrinter, print_prompt, print_result
from gateway.daemon import Daemon
from gateway.runner import Busy
from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.korad import KoradPowerSupply
from simulators.runner import SimHome, running_home
from simulators.scenario import DeviceSpec, load_scenario
from simulators.scpi import LineInstrument

SCENARIOS = ("home", "lab")
HELP = ("Type a command (e.g. 'turn on the kitchen ceiling light', '打开客厅的灯', 'what is the temperature in the "
        "lab'), 'devices', 'state', 'prompt COMMAND' (what the model would be sent), or 'quit'.")


async def run_demo(config: Config) -> int:
    broker = EmbeddedBroker("127.0.0.1")
    await broker.start()
    specs = [spec for name in SCENARIOS for spec in load_scenario(name).devices]
    try:
        async with running_home(specs, broker.host, broker.port) as home:
            daemon = Daemon(demo_config(config, specs, home, broker), "demo")
            try:
                await daemon.start()
                gateway = daemon.gateway
                await gateway.settle_discovery()
                assert daemon.server is not None
                print(f"pyuse demo: MQTT broker on {broker.host}:{broker.port}, web page at {daemon.server.url}/, "
                      f"data in {config.gateway.data_dir}")
                print(f"simulated {', '.join(SCENARIOS)}:")
                for device_id, device in home.devices.items():
                    print(f"  {device_id:<26} {device.kind:<22} {device.address()}")
                if gateway.llm is None:
                    print(f"\nNo model yet: simple commands (on, off, a level, a reading) work without one; for "
                          f"anything else, {NOT_CONFIGURED}\n")
                print(HELP)
                await _prompt(daemon, home)
            finally:
                await daemon.close()
    finally:
        await broker.close()
    return 0


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def demo_config(config: Config, specs: list[DeviceSpec], home: SimHome, broker: EmbeddedBroker) -> Config:
    """The user's config pointed at the demo's broker and loopback mDNS, with the lab's instruments declared on
    their serial ports and the scenario's aliases given to the devices discovery will find (their ids are the
    scenario's). The web page gets the configured port, or any free one when a `pyuse run` holds it."""
    demo = config.model_copy(deep=True)
    if not port_free(demo.api.host, demo.api.port):
        demo.api.port = 0
    demo.mqtt.host, demo.mqtt.port, demo.mqtt.embedded = broker.host, broker.port, False
    demo.discovery.mqtt = demo.discovery.mdns = True
    demo.discovery.mdns_interfaces = ["127.0.0.1"]
    demo.discovery.mdns_names = [f"*-{home.context.mdns_suffix}"]  # its own simulators, not another demo's
    # Lab instruments are declared on their ports, as a bench is configured: `*IDN?` names a model, not which
    # supply of the bench it is or where it stands.
    by_id = {spec.id: spec for spec in specs}
    instruments = [DeviceEntry(id=spec.id, name=spec.name, kind=spec.kind, area=spec.area, aliases=list(spec.aliases),
                               serial_port=device.port)
                   for spec, device in ((by_id[device_id], device) for device_id, device in home.devices.items()
                                        if device_id in by_id)
                   if isinstance(device, (LineInstrument, KoradPowerSupply))]
    declared = {entry.id for entry in instruments}
    aliases = [DeviceEntry(id=spec.id, aliases=list(spec.aliases)) for spec in specs
               if spec.aliases and spec.id not in declared]
    demo.devices = [*instruments, *aliases, *config.devices]
    return demo


async def _prompt(daemon: Daemon, home: SimHome) -> None:
    assert daemon.runner is not None
    gateway = daemon.gateway
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
            for device in gateway.devices():
                print(f"  {device.id:<26} {device.name!r:<28} [{device.area}] {device.kind} "
                      f"({device.transport})")
        elif line == "state":
            for device_id, state in home.state().items():
                print(f"  {device_id:<26} {state}")
        elif line.startswith("prompt "):
            print_prompt(gateway.build_prompt(line[len("prompt "):].strip()), gateway.config.agent.prompt_budget_tokens,
                         sys.stdout)
        elif line:
            try:
                task = daemon.runner.submit(line, "demo", confirm=console.confirm)
            except Busy as exc:
                print(f"busy: {exc}")
                continue
            trace = TracePrinter(sys.stdout)
            async for event in task.follow():
                trace(event)
            print_result(await daemon.runner.wait(task.id), sys.stdout)
