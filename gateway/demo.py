"""`pyuse demo`: an embedded broker, the simulated home and lab, and the gateway with its web page, in one
process, at a prompt.

The gateway is given no devices: it finds the MQTT ones (Tasmota, Zigbee2MQTT) by discovery, the HTTP ones
(Shelly, WLED, Elgato) by browsing mDNS on loopback; the lab's instruments are declared on their serial ports.
Commands typed at the prompt run as tasks of the daemon, so the web page shows them too. Without a model the
fast path and saved skills still take simple commands (`help` lists them for this home). The demo keeps its data
in a temporary directory, found by `pyuse ask` and `pyuse devices` while it runs (gateway/demo_link.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.config import Config, DeviceEntry
from gateway.console import Console, TracePrinter, print_prompt, print_result
from gateway.daemon import Daemon
from gateway.demo_link import announced
from gateway.errors import GatewayError
from gateway.runner import Busy
from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.korad import KoradPowerSupply
from simulators.runner import SimHome, running_home
from simulators.scenario import DeviceSpec, load_scenario
from simulators.scpi import LineInstrument

SCENARIOS = ("home", "lab")
COMMANDS = ("At this prompt also: 'help' (this again), 'devices', 'state' (the simulators' own view), 'prompt COMMAND' "
            "(what the model would be sent), 'quit' (or Ctrl-D).")


class DemoError(GatewayError):
    """The demo could not start (a simulator did not); the message says why, in one line."""


async def run_demo(config: Config, data_dir: Path | None = None) -> int:
    """The demo at a prompt, with its data in `data_dir`, else in a temporary directory removed at exit; the
    user's own data dir only holds demo.json while it runs (for `pyuse ask`, gateway/demo_link.py)."""
    main = asyncio.current_task()
    assert main is not None
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        main.cancel()

    # SIGTERM ends it as Ctrl-C does: through the cleanup below, so no temporary data dir is left behind.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await _run(config, data_dir)
    except asyncio.CancelledError:
        if not terminated.is_set():
            raise  # Ctrl-C: asyncio.run turns it back into KeyboardInterrupt
        return 128 + signal.SIGTERM
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run(config: Config, data_dir: Path | None) -> int:
    with contextlib.ExitStack() as cleanup:
        directory = data_dir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pyuse-demo-")))
        demo = config.model_copy(deep=True)
        demo.gateway.data_dir = directory
        try:
            async with demo_world(demo) as (daemon, home):
                assert daemon.server is not None
                if directory != config.gateway.data_dir:
                    cleanup.enter_context(announced(config.gateway.data_dir, directory, daemon.server.port))
                _introduce(daemon, home, directory, (await daemon.gateway.help()).text)
                await _prompt(daemon, home)
        except DemoError as exc:
            print(f"pyuse demo: {exc}", file=sys.stderr)
            return 1
    return 0


@contextlib.asynccontextmanager
async def demo_world(config: Config) -> AsyncIterator[tuple[Daemon, SimHome]]:
    """The embedded broker, the simulated home and lab, and the daemon that found them, until the block ends."""
    specs = [spec for name in SCENARIOS for spec in load_scenario(name).devices]
    async with contextlib.AsyncExitStack() as stack:
        broker = EmbeddedBroker("127.0.0.1")
        await broker.start()
        stack.push_async_callback(broker.close)
        try:
            home = await stack.enter_async_context(running_home(specs, broker.host, broker.port))
        except RuntimeError as exc:  # SimHome.start names the device and why
            raise DemoError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        daemon = Daemon(demo_config(config, specs, home, broker), "demo", any_port_if_taken=True)
        stack.push_async_callback(daemon.close)
        await daemon.start()
        await daemon.gateway.settle_discovery()
        yield daemon, home


def _introduce(daemon: Daemon, home: SimHome, data_dir: Path, help_text: str) -> None:
    assert daemon.server is not None
    mqtt = daemon.gateway.config.mqtt
    print(f"pyuse demo: MQTT broker on {mqtt.host}:{mqtt.port}, web page at {daemon.server.url}/, data in "
          f"{data_dir} (`pyuse ask` and `pyuse devices` reach this demo while it runs)")
    print(f"simulated {', '.join(SCENARIOS)}:")
    for device_id, device in home.devices.items():
        print(f"  {device_id:<26} {device.kind:<22} {device.address()}")
    print()
    print(help_text)
    print(COMMANDS)


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
    demo.discovery.instruments = False  # the lab's instruments, which announce themselves too, are declared below
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
        if line in ("help", "?"):
            print((await gateway.help()).text)
            print(COMMANDS)
            continue
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
                task = daemon.runner.submit(line, "demo", confirm=console.confirm, ask=console.ask)
            except Busy as exc:
                print(f"busy: {exc}")
                continue
            trace = TracePrinter(sys.stdout)
            async for event in task.follow():
                trace(event)
            print_result(await daemon.runner.wait(task.id), sys.stdout)
