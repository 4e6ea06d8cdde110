"""Capability methods meet the same rules as native calls (issue 11, point 3, last sentence).

A handle's methods (unlock(), output(True), set_voltage(13)...) are built inside the job from the doc's templates
and reach the broker only as native calls. Every shipped method that can do what a shipped rule names is run here
as model code, through the sandbox and the real broker, against a simulator: a person is asked, nobody to ask is
a denial, and the device is unchanged. And every shipped method's native calls read as the actions its doc says
it performs (`does`), so the docs cannot drift from what the policy sees.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import BrokerAddress, make_config, psu_entry, shelly_entry, until

from gateway.app import Gateway
from gateway.config import DeviceEntry
from gateway.devices.actions import IMPLIED
from gateway.devices.capabilities import Method
from gateway.devices.docs import DocLibrary
from gateway.policy import ConfirmationRequest, Reading
from simulators.base import SimContext
from simulators.elgato import ElgatoKeyLight
from simulators.korad import KoradPowerSupply
from simulators.scpi import ScpiMultimeter
from simulators.tasmota import TasmotaDimmer, TasmotaPlug
from simulators.wled import WledStrip
from simulators.zigbee2mqtt import Bulb, DoorLock, Thermostat, Zigbee2MqttBridge

DOCS = DocLibrary.load()
SLOW_DEVICES = {"exec_timeout_s": 20.0}  # a Korad answers after a pause; many calls in one job add up
INCIDENTAL = {"read", "select_channel"}  # what a method does on the way; `does` leaves them out
# Home Assistant entities as discovery announces them: (component, device name, config). Nothing listens on their
# command topics but the test's own recorder.
HA_ENTITIES = [
    ("switch", "Garden Pump", {"command_topic": "garden/pump/set"}),
    ("light", "Porch Lamp", {"command_topic": "garden/lamp/set", "brightness_command_topic": "garden/lamp/bri",
                             "brightness_scale": 100}),
    ("fan", "Shed Fan", {"command_topic": "garden/fan/set", "percentage_command_topic": "garden/fan/speed"}),
    ("cover", "Shed Door", {"command_topic": "garden/door/set", "set_position_topic": "garden/door/position"}),
    ("lock", "Garden Gate", {"command_topic": "garden/gate/set"}),
    ("climate", "Shed Heater", {"mode_command_topic": "garden/heater/mode", "modes": ["off", "heat"],
                                "temperature_command_topic": "garden/heater/temperature"}),
]


@dataclass
class Recorder:
    """What was published under garden/: what a Home Assistant device would have received."""

    received: list[tuple[str, str]]
    client: paho.Client


@pytest.fixture
async def home_assistant(mqtt_broker: BrokerAddress) -> AsyncIterator[Recorder]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    recorder = Recorder([], client)
    client.on_message = lambda _client, _data, message: recorder.received.append(
        (message.topic, message.payload.decode()))
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.subscribe("garden/#")
    client.loop_start()
    for component, name, config in HA_ENTITIES:
        slug = name.lower().replace(" ", "_")
        payload = {"name": component, "unique_id": slug, "device": {"identifiers": [slug], "name": name}, **config}
        client.publish(f"homeassistant/{component}/{slug}/config", json.dumps(payload), retain=True).wait_for_publish(5)
    yield recorder
    for component, name, _ in HA_ENTITIES:
        slug = name.lower().replace(" ", "_")
        client.publish(f"homeassistant/{component}/{slug}/config", b"", retain=True).wait_for_publish(5)
    client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
    client.loop_stop()


@pytest.fixture
async def zigbee(mqtt_broker: BrokerAddress) -> AsyncIterator[dict[str, Any]]:
    devices = {"bulb": Bulb("bulb", "Desk Bulb"), "lock": DoorLock("lock", "Front Door Lock"),
               "radiator": Thermostat("radiator", "Office Radiator")}
    devices["radiator"].values["system_mode"] = "off"
    bridge = Zigbee2MqttBridge(devices=devices.values())
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield devices
    await bridge.stop()


@pytest.fixture
async def korad() -> AsyncIterator[KoradPowerSupply]:
    async with KoradPowerSupply("lab_korad") as device:
        yield device


def korad_entry(device: KoradPowerSupply) -> DeviceEntry:
    return DeviceEntry(id="lab_korad", name="Korad", area="lab", kind="korad_psu", serial_port=device.port)


def ids_by_kind(gateway: Gateway) -> dict[str, str]:
    return {device.kind: device.id for device in gateway.registry.all()}


# kind -> (the call, what the person is asked about)
DANGEROUS: dict[str, list[tuple[str, str]]] = {
    "scpi_psu": [("output(True)", "output on"), ("output(True, channel=2)", "output on"),
                 ("set_voltage(13)", "above 12 V"), ("set_voltage(24, channel=2)", "above 12 V"),
                 ("set_current(3)", "above 2 A")],
    "korad_psu": [("output(True)", "output on"), ("set_voltage(13)", "above 12 V"), ("set_current(2.5)", "above 2 A")],
    "zigbee_lock": [("unlock()", "unlocks a door")], "zigbee_thermostat": [("set_mode('heat')", "heating on")],
    "ha_lock": [("unlock()", "unlocks a door")], "ha_climate": [("set_mode('heat')", "heating on")],
}

# kind -> calls of the same methods that stay within the rules: they pass without asking.
HARMLESS: dict[str, list[str]] = {
    "scpi_psu": ["output(False)", "set_voltage(12)", "set_voltage(5, channel=2)", "set_current(2)"],
    "korad_psu": ["output(False)", "set_voltage(12)", "set_current(2)"],
    "zigbee_lock": ["lock()"], "zigbee_thermostat": ["set_mode('auto')", "off()"],
    "ha_lock": ["lock()"], "ha_climate": ["set_mode('off')"],
}


def cases(*kinds: str) -> list[tuple[str, str, str]]:
    return [(kind, code, reason) for kind in kinds for code, reason in DANGEROUS[kind]]


async def assert_asked_and_refused(start_attacker, broker: BrokerAddress, devices: list[DeviceEntry], kind: str,
                                   code: str, reason: str, unchanged: Callable[[], bool]) -> None:
    """As model code in a job: a person is asked once (and says no), nobody to ask is a denial, nothing changes."""
    attacker = await start_attacker(devices=devices, broker=broker)
    await until(lambda: kind in ids_by_kind(attacker.gateway))
    call = f"devices[{ids_by_kind(attacker.gateway)[kind]!r}].{code}"
    asked: list[ConfirmationRequest] = []

    async def says_no(question: ConfirmationRequest) -> bool:
        asked.append(question)
        return False

    answered = await attacker.run(call, confirm=says_no)
    unanswered = await attacker.run(call)

    assert len(asked) == 1 and reason in asked[0].reason, asked
    assert "PermissionError: denied:" in answered.output and "the user said no" in answered.output
    assert "PermissionError: denied:" in unanswered.output and "nobody can confirm it" in unanswered.output
    assert unchanged(), f"{kind}.{code} changed the device"


@pytest.mark.parametrize(("kind", "code", "reason"), cases("scpi_psu"))
async def test_a_dangerous_scpi_supply_method_is_asked_about(start_attacker, mqtt_broker, psu, kind, code, reason):
    await assert_asked_and_refused(
        start_attacker, mqtt_broker, [psu_entry(psu)], kind, code, reason,
        lambda: [(c.output, c.volts_set, c.amps_set) for c in psu.channels] == [(False, 0.0, 1.0)] * 2)


@pytest.mark.parametrize(("kind", "code", "reason"), cases("korad_psu"))
async def test_a_dangerous_korad_method_is_asked_about(start_attacker, mqtt_broker, korad, kind, code, reason):
    channel = korad.channel
    before = (channel.output, channel.volts_set, channel.amps_set)
    await assert_asked_and_refused(start_attacker, mqtt_broker, [korad_entry(korad)], kind, code, reason,
                                   lambda: (channel.output, channel.volts_set, channel.amps_set) == before)


@pytest.mark.parametrize(("kind", "code", "reason"), cases("zigbee_lock", "zigbee_thermostat"))
async def test_a_dangerous_zigbee_method_is_asked_about(start_attacker, mqtt_broker, zigbee, kind, code, reason):
    await assert_asked_and_refused(
        start_attacker, mqtt_broker, [], kind, code, reason,
        lambda: zigbee["lock"].values["state"] == "LOCK" and zigbee["radiator"].values["system_mode"] == "off")


@pytest.mark.parametrize(("kind", "code", "reason"), cases("ha_lock", "ha_climate"))
async def test_a_dangerous_home_assistant_method_is_asked_about(start_attacker, mqtt_broker, home_assistant, kind,
                                                                code, reason):
    await assert_asked_and_refused(start_attacker, mqtt_broker, [], kind, code, reason,
                                   lambda: home_assistant.received == [])


async def assert_pass_unasked(gateway: Gateway, kinds: list[str]) -> None:
    await until(lambda: set(kinds) <= set(ids_by_kind(gateway)))
    asked: list[ConfirmationRequest] = []

    async def records(question: ConfirmationRequest) -> bool:
        asked.append(question)
        return False

    code = "\n".join(f"devices[{ids_by_kind(gateway)[kind]!r}].{call}" for kind in kinds for call in HARMLESS[kind])
    _, execution = await gateway.run_code(code, "harmless", confirm=records)
    assert execution.status == "ok" and asked == [], (execution.output, asked)


async def test_the_same_methods_within_the_rules_pass_unasked(tmp_path, mqtt_broker, psu, korad, zigbee,
                                                              home_assistant, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu), korad_entry(korad)],
                                                broker=mqtt_broker, sandbox=SLOW_DEVICES))
    await assert_pass_unasked(gateway, list(HARMLESS))
    assert psu.channels[1].volts_set == 5.0 and korad.channel.volts_set == 12.0
    assert zigbee["radiator"].values["system_mode"] == "off"
    assert ("garden/gate/set", "LOCK") in home_assistant.received


def test_every_shipped_method_that_can_do_what_a_rule_names_is_tested_above():
    tested = {(kind, code.partition("(")[0]) for kind, calls in DANGEROUS.items() for code, _ in calls}
    tested |= {(kind, code.partition("(")[0]) for kind, calls in HARMLESS.items() for code in calls}
    for doc in DOCS.docs.values():
        guarded = {rule.condition.action for rule in doc.danger if rule.action != "allow"}
        for name, method in doc.methods.items():
            does = set(method.does) | {implied for action in method.does for implied in IMPLIED.get(action, ())}
            if does & guarded:
                assert (doc.kind, name) in tested, f"{doc.kind}.{name} does {sorted(does & guarded)}: add it"


def variants(method: Method) -> list[str]:
    """Argument lists that take each path of a method: both booleans, every choice, a range's bottom and middle."""
    options = []
    for param in method.parameters:
        if not param.required:
            continue
        if param.type == "bool":
            values: list[Any] = [True, False]
        elif param.choices:
            values = param.choices
        elif param.type == "str":
            values = ["heat", "off"]
        else:
            low = param.low or 0
            high = param.high if param.high is not None else low + 2
            values = [type_(param.type)((low + high) / 2)] + ([type_(param.type)(low)] if low == 0 else [])
        options.append([repr(value) for value in values])
    return [", ".join(combination) for combination in itertools.product(*options)]


def type_(name: str) -> Callable[[float], Any]:
    return int if name == "int" else float


@pytest.mark.slow
async def test_every_shipped_methods_native_calls_read_as_the_actions_its_doc_names(
        tmp_path, mqtt_broker, psu, korad, shelly, zigbee, home_assistant, gateway_factory):
    async with (ScpiMultimeter("lab_dmm") as dmm, WledStrip("strip", port=0) as strip,
                ElgatoKeyLight("key_light", port=0) as key_light,
                TasmotaPlug("tv_plug", "tasmota_A1B2C3", mqtt_broker.host, mqtt_broker.port) as plug,
                TasmotaDimmer("desk_lamp", "tasmota_D1D2D3", mqtt_broker.host, mqtt_broker.port,
                              color=True) as lamp):
        devices = [psu_entry(psu), korad_entry(korad), shelly_entry(shelly),
                   DeviceEntry(id="lab_dmm", name="DMM", kind="scpi_dmm", serial_port=dmm.port),
                   DeviceEntry(id="strip", name="Strip", kind="wled_strip", host=strip.host, port=strip.port),
                   DeviceEntry(id="key_light", name="Key Light", kind="elgato_light", host=key_light.host,
                               port=key_light.port),
                   DeviceEntry(id="tv_plug", name="TV Plug", kind="tasmota_plug", base_topic=plug.topic),
                   DeviceEntry(id="desk_lamp", name="Desk Lamp", kind="tasmota_dimmer", base_topic=lamp.topic)]
        gateway = await gateway_factory(make_config(tmp_path, devices=devices, broker=mqtt_broker,
                                                    sandbox=SLOW_DEVICES, policy={"rate_limit_per_minute": 6000}))
        kinds = {kind for kind, doc in DOCS.docs.items() if doc.methods}
        await until(lambda: kinds <= set(ids_by_kind(gateway)))
        readings: list[Reading] = []
        read = gateway.policy.read
        gateway.policy.read = lambda device, operation: readings.append(read(device, operation)) or readings[-1]

        async def yes(question: ConfirmationRequest) -> bool:
            return True

        for kind in sorted(kinds):
            device_id = ids_by_kind(gateway)[kind]
            for name, method in DOCS.get(kind).methods.items():
                seen: set[str] = set()
                for arguments in variants(method):
                    readings.clear()
                    _, execution = await gateway.run_code(f"devices[{device_id!r}].{name}({arguments})",
                                                          f"{kind}.{name}", confirm=yes)
                    assert execution.status == "ok", f"{kind}.{name}({arguments}): {execution.output}"
                    done = {action.name for reading in readings for action in reading.actions}
                    assert "unknown" not in done, f"{kind}.{name}({arguments}): {readings}"
                    seen |= done - INCIDENTAL
                assert seen == set(method.does), f"{kind}.{name} does {sorted(seen)}, its doc says {method.does}"
