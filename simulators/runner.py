"""Runs a scenario: builds its simulators, wires them together, starts them side by side and stops them.

Every device gets the same SimContext: one clock, one MQTT broker, one zeroconf instance bound to 127.0.0.1
with one random suffix for the home's mDNS names, one pool of loopback addresses and the rooms whose air devices
share. Zigbee devices are started through a Zigbee2MQTT bridge, as in a real home; a large home gets one bridge
per `devices_per_bridge` devices (base topics `zigbee2mqtt`, `zigbee2mqtt_2`, ...), since one coordinator
serves about that many and a bigger `bridge/devices` inventory grows past what MQTT clients accept in one
message.

A running home is graded with `state()` and steered with `apply()`, by device id, in process (tests) or
through the admin endpoint (simulators/admin.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zeroconf.asyncio import AsyncZeroconf

from simulators.base import SimClock, SimContext, Simulator
from simulators.elgato import ElgatoKeyLight
from simulators.korad import KoradPowerSupply
from simulators.scenario import DeviceSpec
from simulators.scpi import ScpiMultimeter, ScpiPowerSupply
from simulators.shelly import ShellySwitch
from simulators.tasmota import TasmotaDimmer, TasmotaPlug
from simulators.wled import WledStrip
from simulators.zigbee2mqtt import (
    Bulb,
    ClimateSensor,
    ContactSensor,
    DoorLock,
    MotionSensor,
    Thermostat,
    Zigbee2MqttBridge,
    ZigbeeDevice,
)

log = logging.getLogger(__name__)
SIMULATORS: dict[str, type[Simulator]] = {cls.kind: cls for cls in (
    ShellySwitch, WledStrip, ElgatoKeyLight, TasmotaPlug, TasmotaDimmer, ScpiPowerSupply, ScpiMultimeter,
    KoradPowerSupply, Bulb, DoorLock, Thermostat, ClimateSensor, MotionSensor, ContactSensor)}
ROOM_KINDS = {ClimateSensor.kind, Thermostat.kind}  # they read (and heat) their area's air
# Options the runner consumes to connect devices; every other option is a simulator's constructor argument.
WIRING = {ScpiMultimeter.kind: ("source", "source_channel"), ShellySwitch.kind: ("heating_c_per_hour",)}
DEVICES_PER_BRIDGE = 100
STOP_S = 15.0  # an MQTT device's farewell may wait 10 s for a broker that is gone


def build(specs: Iterable[DeviceSpec], context: SimContext,
          devices_per_bridge: int = DEVICES_PER_BRIDGE) -> list[Simulator]:
    """The simulators to start for `specs`: every non-Zigbee device, then the bridges holding the Zigbee ones.

    Raises ValueError naming the device and the option that is wrong.
    """
    specs = list(specs)
    built: dict[str, Simulator] = {}
    for spec in specs:
        if spec.id in built:
            raise ValueError(f"{spec.id}: a second device with this id")
        built[spec.id] = _create(spec, context)
    for spec in specs:
        _wire(spec, built, context)
    zigbee = [device for device in built.values() if isinstance(device, ZigbeeDevice)]
    bridges = []
    for number, first in enumerate(range(0, len(zigbee), devices_per_bridge), 1):
        topic = "zigbee2mqtt" if number == 1 else f"zigbee2mqtt_{number}"
        if topic in built:
            raise ValueError(f"{topic}: a device id that the Zigbee2MQTT bridge needs")
        bridges.append(Zigbee2MqttBridge(topic, zigbee[first:first + devices_per_bridge], base_topic=topic))
    return [device for device in built.values() if not isinstance(device, ZigbeeDevice)] + bridges


def _create(spec: DeviceSpec, context: SimContext) -> Simulator:
    cls = SIMULATORS.get(spec.kind)
    if cls is None:
        raise ValueError(f"{spec.id}: unknown kind {spec.kind!r}; known: {', '.join(sorted(SIMULATORS))}")
    options = {key: value for key, value in spec.options.items() if key not in WIRING.get(spec.kind, ())}
    if spec.kind in ROOM_KINDS:
        options["room"] = context.room(spec.area)
    try:
        device = cls(spec.id, name=spec.name, area=spec.area, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{spec.id}: options: {error}") from None
    device.context = context  # so what it computes before starting already runs on the scenario's clock
    return device


def _wire(spec: DeviceSpec, built: dict[str, Simulator], context: SimContext) -> None:
    device, options = built[spec.id], spec.options
    if isinstance(device, ScpiMultimeter) and "source" in options:
        supply = built.get(options["source"])
        if not isinstance(supply, ScpiPowerSupply):
            raise ValueError(f"{spec.id}: options.source: {options['source']!r} is no scpi_psu of this "
                             "scenario")
        channel = options.get("source_channel", 1)
        if channel not in range(1, len(supply.channels) + 1):
            raise ValueError(f"{spec.id}: options.source_channel: {supply.id} has channels "
                             f"1..{len(supply.channels)}, got {channel!r}")
        device.source = supply.channels[channel - 1]
    if isinstance(device, ShellySwitch) and "heating_c_per_hour" in options:
        rate = options["heating_c_per_hour"]
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate < 0:
            raise ValueError(f"{spec.id}: options.heating_c_per_hour: expected a number >= 0, got {rate!r}")
        relay = device
        context.room(spec.area).heaters.append(lambda: float(rate) if relay.output else 0.0)


class SimHome:
    """A scenario's devices on one context: start and stop them, read and steer them by id."""

    def __init__(self, specs: Iterable[DeviceSpec], context: SimContext,
                 devices_per_bridge: int = DEVICES_PER_BRIDGE) -> None:
        specs = list(specs)
        self.context = context
        self.roots = build(specs, context, devices_per_bridge)
        # Every device in the scenario's order, those reached through a bridge included, then the bridges.
        every = {device.id: device for root in self.roots for device in (root, *root.children())}
        self.devices: dict[str, Simulator] = {spec.id: every[spec.id] for spec in specs} | every
        self._started: list[Simulator] = []

    def device(self, device_id: str) -> Simulator:
        """The device with this id; KeyError naming it otherwise."""
        try:
            return self.devices[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r}") from None

    def state(self) -> dict[str, dict[str, Any]]:
        return {device_id: device.state() for device_id, device in self.devices.items()}

    def apply(self, device_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Set sensor values or a fault on one device; returns its new state. KeyError for an unknown device,
        ValueError naming the key for a bad patch."""
        device = self.device(device_id)
        device.apply(patch)
        return device.state()

    def directory(self) -> dict[str, dict[str, str]]:
        """What each device is and where a client reaches it."""
        return {device_id: {"kind": device.kind, "name": device.name, "area": device.area,
                            "address": device.address()} for device_id, device in self.devices.items()}

    async def start(self) -> None:
        """Start every device at once; if any fails, stop them all (a failed start may have bound a port
        already) and raise naming it."""
        now = self.context.clock.now()
        for room in self.context.rooms.values():
            room.advance(now)  # the air's own clock starts with the home
        self._started = list(self.roots)
        results = await asyncio.gather(*(root.start(self.context) for root in self.roots),
                                       return_exceptions=True)
        failure = next(((root, result) for root, result in zip(self.roots, results, strict=True)
                        if isinstance(result, BaseException)), None)
        if failure is not None:
            await self.stop()
            root, error = failure
            reason = str(error) or type(error).__name__  # some errors (zeroconf's) carry no message
            raise RuntimeError(f"{root.id} ({root.kind}) did not start: {reason}") from error

    async def stop(self) -> None:
        """Stop every device at once; one that hangs is left behind after STOP_S (and logged), so Ctrl-C and
        test teardowns always end."""
        started, self._started = self._started, []
        results = await asyncio.gather(*(asyncio.wait_for(root.stop(), STOP_S) for root in started),
                                       return_exceptions=True)
        for root, result in zip(started, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s (%s) did not stop cleanly", root.id, root.kind, exc_info=result)


@contextlib.asynccontextmanager
async def running_home(specs: Iterable[DeviceSpec], mqtt_host: str, mqtt_port: int,
                       clock: SimClock | None = None, mdns: bool = True,
                       devices_per_bridge: int = DEVICES_PER_BRIDGE,
                       mdns_suffix: str | None = None) -> AsyncIterator[SimHome]:
    """A started home on its own context, with mDNS on 127.0.0.1 only; stopped on leaving. Its mDNS names end
    in `-<mdns_suffix>` (default: a random one, `home.context.mdns_suffix`)."""
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"]) if mdns else None
    context = SimContext(clock=clock or SimClock(), mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                         zeroconf=zeroconf)
    if mdns_suffix is not None:
        context.mdns_suffix = mdns_suffix
    try:
        home = SimHome(specs, context, devices_per_bridge)
        await home.start()
        try:
            yield home
        finally:
            await home.stop()
    finally:
        if zeroconf is not None:
            await zeroconf.async_close()
