"""Each protocol reader on its own: a native call in, the canonical actions out, read as the device reads it
(the simulators in simulators/ are the reference, and the last tests check the readers against them on generated
lines). The broker-level tests are in test_danger_spellings.py."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.policy import describe
from gateway.policy.calls import Operation
from gateway.policy.protocols import read_call
from simulators.korad import KoradPowerSupply
from simulators.scpi import ScpiPowerSupply
from simulators.tasmota import TasmotaDimmer

DOCS = DocLibrary.load()
PSU = Device(id="psu", name="PSU", kind="scpi_psu", transport="serial")
KORAD = Device(id="korad", name="Korad", kind="korad_psu", transport="serial")
LOCK = Device(id="lock", name="Lock", kind="zigbee_lock", transport="mqtt", base_topic="zigbee2mqtt/Front Door")
PLUG = Device(id="plug", name="Plug", kind="tasmota_dimmer", transport="mqtt", base_topic="lamp")
GATE = {"component": "lock", "name": "lock", "command_topic": "garden/gate/set", "state_topic": "garden/gate",
        "payload_lock": "LOCK", "payload_unlock": "UNLOCK", "payload_open": "OPEN"}
LIGHT = {"component": "light", "name": "light", "command_topic": "garden/lamp/set", "payload_on": "ON",
         "payload_off": "OFF", "brightness_command_topic": "garden/lamp/bri", "brightness_scale": 100}
HOME_ASSISTANT = Device(id="gate", name="Gate", kind="ha_lock", transport="mqtt",
                        api={"main": GATE, "entities": [GATE, LIGHT]})


def read(device: Device, memory: dict | None = None, **call) -> str:
    transport = device.transport
    return describe(read_call(Operation(transport, **call), device, DOCS.get(device.kind), memory or {}).actions)


@pytest.mark.parametrize(("line", "actions"), [
    ("VOLT 5;CURR 1", "set_voltage 5 V, set_current 1 A"),
    ("SOUR2:VOLT:LEV 5;:OUTP ON", "set_voltage 5 V ch2, output_on"),
    ("VOLT:PROT 33;LEV 13", "set_ovp 33 V, set_voltage 13 V"),  # the path is VOLT:, so LEV is VOLT:LEV
    ("SOUR:VOLT:PROT:STAT OFF", "protection_off ovp"),
    ("INST:NSEL 2;OUTP ON;INST:NSEL 1;OUTP OFF", "select_channel 2, output_on ch2, select_channel 1, output_off ch1"),
    ("*RST;VOLT 1", "configure *RST, set_voltage 1 V ch1"),
    ("APPL 5", "set_voltage 5 V"), ("VOLT MIN", "set_voltage 0 V"), ("VOLT DEF", "set_voltage DEF"),
    ("OUTP ON,CH1", "unknown 'OUTP ON,CH1'"), ("VOLT 5,6", "unknown 'VOLT 5,6'"),
    ("OUTP \"ON\"", "unknown 'OUTP \"ON\"'"), ("  ;;VOLT?  ", "read"),
])
def test_scpi_lines(line, actions):
    assert read(PSU, command=line) == actions


def test_the_selected_channel_comes_from_earlier_calls_and_counts_as_selected():
    memory = read_call(Operation("serial", command="INST CH2"), PSU, DOCS.get("scpi_psu"), {}).memory
    [action] = read_call(Operation("serial", command="OUTP ON"), PSU, DOCS.get("scpi_psu"), memory).actions
    assert (action.channel, action.selected) == (2, True)


@pytest.mark.parametrize(("burst", "actions"), [
    ("VSET1:12.3456", "set_voltage 12.345 V ch1, unknown '6'"),
    ("ISET1:0.5OCP1OVP0", "set_current 0.5 A ch1, protection_on ocp ch1, protection_off ovp ch1"),
    ("SAV2 RCL2", "configure memory 2, set_voltage ch1, set_current ch1"),
    ("*IDN?STATUS?", "read ×2"), ("OUT", "unknown 'OUT'"),
])
def test_korad_bursts(burst, actions):
    assert read(KORAD, command=burst) == actions


@pytest.mark.parametrize(("topic", "payload", "actions"), [
    ("zigbee2mqtt/Front Door/set", '{"state": "UNLOCK", "brightness": 0}', "unlock, output_off"),
    ("zigbee2mqtt/Front Door/set", '"UNLOCK"', "nothing"),  # a JSON string on /set is no message at all
    ("zigbee2mqtt/Front Door/set/state", '"UNLOCK"', "unlock"),
    ("zigbee2mqtt/Front Door/get/state", "", "read"),
    ("zigbee2mqtt/Front Door", '{"state": "UNLOCK"}', "nothing"),  # its own state topic: no command
    ("zigbee2mqtt/Front Door/set", '{"color_temp": "warm"}', "set_color_temp 2203 K"),
    ("zigbee2mqtt/Front Door/set", '{"brightness": "127"}', "output_on, set_brightness 50 %"),
])
def test_zigbee2mqtt_messages(topic, payload, actions):
    assert read(LOCK, topic=topic, payload=payload) == actions


def test_a_zigbee_name_the_bridge_would_read_as_another_device_asks():
    tricky = Device(id="x", name="X", kind="zigbee_lock", transport="mqtt", base_topic="zigbee2mqtt/a/set/b")
    assert read(tricky, topic="zigbee2mqtt/a/set/b/set", payload="LOCK") == "unknown 'zigbee2mqtt/a/set/b/set'"


@pytest.mark.parametrize(("command", "payload", "actions"), [
    ("Power0", "on", "output_on"), ("POWER2", "Toggle", "output_toggle ch2"),
    ("Power", "blink", "unknown 'Power blink'"),
    ("Power", "", "read"), ("Power", "?", "read"), ("Dimmer", "+", "set_brightness +, output_on"),
    ("Dimmer", "0", "set_brightness 0 %, output_off"), ("Color2", "#FF0000", "set_color #FF0000"),
    ("Backlog", "Dimmer 30; Restart 1; Reset 1", "set_brightness 30 %, output_on, reboot, factory_reset"),
    ("Power=1", "", "unknown 'POWER=1'"), ("Upgrade", "1", "firmware_update"),
])
def test_tasmota_commands(command, payload, actions):
    assert read(PLUG, topic=f"cmnd/lamp/{command}", payload=payload) == actions


@pytest.mark.parametrize(("topic", "payload", "actions"), [
    ("garden/gate/set", "UNLOCK", "unlock"), ("garden/gate/set", " unlock ", "unlock"),
    ("garden/gate/set", "OPEN", "unlock"), ("garden/gate/set", "LOCK", "lock"),
    ("garden/gate/set", "let me in", "unknown 'let me in'"), ("garden/gate", "UNLOCK", "nothing"),
    ("garden/lamp/bri", "50", "set_brightness 50 %, output_on"), ("garden/lamp/set", "ON", "output_on"),
    ("garden/other", "ON", "unknown 'garden/other'"),
])
def test_home_assistant_entities(topic, payload, actions):
    assert read(HOME_ASSISTANT, topic=topic, payload=payload) == actions


# --- the readers against the simulators: whatever a line changes on the device, its reading names -------------

UNITS = ["VOLT 13", "VOLT 5", "volt:lev 13000mV", "LEV 13", "STAT ON", "SOUR2:VOLT 13", ":VOLT 13", "CURR 3",
         "APPL 13,1", "APPL CH2,13", "OUTP ON", "OUTP 2", "OUTP CH2,ON", "OUTP2 1", "OUTP:STAT ON", "STAT 1",
         "INST CH2", "INST:NSEL 1", "NSEL 2", "VOLT?", "*RST", "VOLT MAX", "OUTP OFF", "SYST:ERR?", "MEAS:VOLT?",
         "PROT 33", "VOLT:PROT:STAT OFF", "*CLS", "", " ", "OUTP:PROT:CLE", "CURR:LEV MAX", "INST OUT1"]
KORAD_TOKENS = ["VSET1:13", "VSET1:1", "3", "OUT1", "OUT0", "x", "ISET1:3", "RCL1", "SAV1", "BEEP1", ".5", " ",
                "VSET1?", "STATUS?", "OVP1", "OCP0"]


def covers(actions, name: str, value: float, channel: int | None) -> bool:
    """Whether a reading names a change the device made: the action with that value (or one not known), on that
    channel (or one the command leaves to the selection), or something it could not read at all."""
    return any(action.name == "unknown" or (
        action.name in (name, "output_toggle") and (action.value is None or not isinstance(action.value, float)
                                                    or abs(action.value - value) < 1e-9 or name.startswith("output"))
        and (channel is None or action.channel in (channel, None) or action.selected)) for action in actions)


FUZZ = settings(max_examples=300, deadline=None, derandomize=True)  # the same lines every run, however busy


def changes(channels) -> list[tuple[float, float, bool]]:
    return [(channel.volts_set, channel.amps_set, channel.output) for channel in channels]


@FUZZ
@given(st.lists(st.sampled_from(UNITS), min_size=1, max_size=4), st.sampled_from([1, 2]))
def test_scpi_whatever_the_supply_changes_its_reading_names(units, selected):
    supply = ScpiPowerSupply("fuzz")
    supply.selected = selected
    before = changes(supply.channels)
    line = ";".join(units)
    supply.answer_line(line)
    actions = read_call(Operation("serial", command=line), PSU, DOCS.get("scpi_psu"), {"selected": selected}).actions
    for number, ((volts, amps, on), (volts_after, amps_after, on_after)) in enumerate(
            zip(before, changes(supply.channels)), start=1):
        if volts_after != volts:
            assert covers(actions, "set_voltage", volts_after, number), (line, actions)
        if amps_after != amps:
            assert covers(actions, "set_current", amps_after, number), (line, actions)
        if on_after and not on:
            assert covers(actions, "output_on", 1.0, number), (line, actions)


@FUZZ
@given(st.lists(st.sampled_from(KORAD_TOKENS), min_size=1, max_size=5))
def test_korad_whatever_the_supply_changes_its_reading_names(tokens):
    supply = KoradPowerSupply("fuzz")
    supply.memories[1] = (24.0, 3.0)  # set from the front panel: the gateway cannot know
    burst = "".join(tokens)
    supply.run(burst.encode())
    actions = read_call(Operation("serial", command=burst), KORAD, DOCS.get("korad_psu"), {}).actions
    channel = supply.channel
    if channel.volts_set != 0.0:
        assert covers(actions, "set_voltage", channel.volts_set, 1), (burst, actions)
    if channel.output:
        assert covers(actions, "output_on", 1.0, 1), (burst, actions)


TASMOTA_STEPS = ["Power ON", "Power 2", "power toggle", "POWER1 1", "Power0 on", "Power", "Power blink", "Dimmer 50",
                 "Dimmer +", "Dimmer 0", "Color 255,0,0", "Color2 FF0000", "CT 300", "Status 0", "State",
                 "Backlog Power ON", "Backlog0 Power OFF", "NoDelay", "TelePeriod 60", "Fade 1", "", " Power  ON "]


@FUZZ
@given(st.lists(st.sampled_from(TASMOTA_STEPS), min_size=1, max_size=6), st.booleans())
def test_tasmota_every_switching_in_a_backlog_is_an_action(steps, backlog):
    lamp = TasmotaDimmer("fuzz", "lamp", broker_port=1, color=True)
    switched: list[bool] = []
    set_relay = lamp._set_relay

    def recording(index: int, on: bool) -> None:
        switched.append(on)
        set_relay(index, on)

    lamp._set_relay = recording
    if backlog:
        command, argument = "Backlog", ";".join(steps)
    else:
        command, _, argument = (steps[0].strip() or "Power").partition(" ")
    asyncio.run(lamp.run_command(command, argument.strip()))
    actions = read_call(Operation("mqtt", topic=f"cmnd/lamp/{command}", payload=argument), PLUG,
                        DOCS.get("tasmota_dimmer"), {}).actions
    switching = [action for action in actions if action.name.startswith("output") or action.name == "unknown"]
    assert len(switched) <= len(switching), (command, argument, actions)
    if True in switched:
        assert any(action.name in ("output_on", "output_toggle", "unknown") for action in actions), actions
