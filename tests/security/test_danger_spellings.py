"""Danger rules hold on what a device does, however the call is spelled (issue 11, point 3).

Every spelling here was reproduced getting past rules that matched the text of a call. Each goes through the real
broker to a real simulator: a person is asked (and says no), nobody to ask means denied, and the simulator
receives nothing. What is harmless still passes without asking, and what the gateway cannot read asks on a device
that has danger rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import make_config, psu_entry, shelly_entry, tasmota_entry, until

from gateway.app import Gateway
from gateway.config import DeviceEntry
from gateway.policy import ConfirmationRequest
from gateway.sandbox.broker import JobContext
from gateway.sandbox.messages import CallRequest
from security.attack import MODULE_LOOP, spy
from simulators.base import SimContext
from simulators.korad import KoradPowerSupply
from simulators.scpi import ScpiPowerSupply
from simulators.shelly import ShellySwitch
from simulators.zigbee2mqtt import DoorLock, Thermostat, Zigbee2MqttBridge

NOBODY = "nobody can confirm it"
UNREADABLE = "could not read this command"


@dataclass
class Bench:
    """A gateway with one device under test, and what that device received."""

    gateway: Gateway
    device_id: str
    received: list[Any]

    async def call(self, method: str, args: dict[str, Any], confirm: Any = None) -> dict[str, Any]:
        context = JobContext("spelling", {d.id: d for d in self.gateway.registry.all()}, confirm=confirm)
        request = CallRequest(op="call", id=1, device=self.device_id, method=method, args=args)
        return await self.gateway.broker.handle(context, request)

    async def refused_twice(self, method: str, args: dict[str, Any]) -> list[ConfirmationRequest]:
        """Asked (a person says no), then with nobody to ask: both denied. Returns what the person was asked."""
        asked: list[ConfirmationRequest] = []

        async def says_no(request: ConfirmationRequest) -> bool:
            asked.append(request)
            return False

        first = await self.call(method, args, says_no)
        second = await self.call(method, args)
        assert first["error"]["type"] == "PermissionError" and "the user said no" in first["error"]["message"]
        assert second["error"]["type"] == "PermissionError" and NOBODY in second["error"]["message"]
        return asked

    async def passes_unasked(self, method: str, args: dict[str, Any]) -> Any:
        asked: list[ConfirmationRequest] = []

        async def records(request: ConfirmationRequest) -> bool:
            asked.append(request)
            return False

        reply = await self.call(method, args, records)
        assert reply["ok"], reply
        assert asked == []
        return reply["result"]


async def start(gateway_factory, tmp_path, devices: list[DeviceEntry], broker=None, **sections) -> Gateway:
    return await gateway_factory(make_config(tmp_path, devices=devices, broker=broker, **sections))


@asynccontextmanager
async def refusing_bench(directory: Path, entry: DeviceEntry, received: list[Any],
                         **sections: Any) -> AsyncIterator[Bench]:
    """One bench for all of a module's refusals of one device: nothing refused reaches the device (each test
    asserts it), so each test meets the device as new, and refusals do not count against its rate limit."""
    async with Gateway(make_config(directory, devices=[entry], **sections)) as gateway:
        yield Bench(gateway, entry.id, received)


# --- SCPI ----------------------------------------------------------------------------------------------------------

SCPI_CAUGHT = {
    "SOUR1:VOLT 13": "above 12 V", "VOLT:LEV 5;LEV 13": "above 12 V", "VOLT 13 V": "above 12 V",
    "VOLT 13000mV": "above 12 V", "volt:lev 0.013KV": "above 12 V", ":SOUR:VOLT:LEV 13": "above 12 V",
    "VOLT MAX": "above 12 V", "APPL CH1,13,1": "above 12 V", "CURR 2500MA": "above 2 A",
    "OUTP1 ON": "output on", "OUTP CH1,ON": "output on", "OUTP 2": "output on",
    "OUTP:STAT OFF;STAT ON": "output on", "INST CH2;OUTP ON": "output on", "outp:stat 0.6": "output on",
}


@pytest.fixture
async def psu_bench(tmp_path, psu, gateway_factory) -> Bench:
    received = spy(psu, "answer_line")
    return Bench(await start(gateway_factory, tmp_path, [psu_entry(psu)]), "bench_psu", received)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def refusing_psu(tmp_path_factory) -> AsyncIterator[tuple[Bench, ScpiPowerSupply]]:
    async with (ScpiPowerSupply("bench_psu") as psu,
                refusing_bench(tmp_path_factory.mktemp("psu"), psu_entry(psu), spy(psu, "answer_line")) as bench):
        yield bench, psu


@MODULE_LOOP
@pytest.mark.parametrize("command", SCPI_CAUGHT)
async def test_scpi_spellings_are_read_as_the_instrument_reads_them(refusing_psu, command):
    psu_bench, psu = refusing_psu
    asked = await psu_bench.refused_twice("write", {"cmd": command})
    assert [request.action for request in asked] == [command]
    assert SCPI_CAUGHT[command] in asked[0].reason
    assert psu_bench.received == []
    assert [channel.output for channel in psu.channels] == [False, False]
    assert [channel.volts_set for channel in psu.channels] == [0.0, 0.0]


@pytest.mark.parametrize(("command", "changed"), [
    ("VOLT 5", lambda psu: psu.channels[0].volts_set == 5.0), ("OUTP OFF", lambda psu: not psu.output),
    ("INST:NSEL 2;VOLT 3.3", lambda psu: psu.channels[1].volts_set == 3.3),
    ("APPL CH2,5,1", lambda psu: psu.channels[1].volts_set == 5.0),
    ("OUTP:STAT OFF;STAT?", lambda psu: not psu.output), ("VOLT 12", lambda psu: psu.volts_set == 12.0),
])
async def test_harmless_scpi_commands_pass_unasked(psu_bench, psu, command, changed):
    await psu_bench.passes_unasked("write", {"cmd": command})
    await psu_bench.passes_unasked("query", {"cmd": "*OPC?"})  # a round trip: the write was carried out
    assert changed(psu)


@pytest.mark.parametrize("query", ["VOLT?", "*IDN?", "MEAS:VOLT?", "SYST:ERR?", "OUTP?;:VOLT?"])
async def test_scpi_queries_pass_unasked(psu_bench, query):
    assert await psu_bench.passes_unasked("query", {"cmd": query})


@MODULE_LOOP
@pytest.mark.parametrize("command", ["SYST:BEEP", "VOLT 5 VOLTS", "VOLT:LEV5", "SYST:CAPS?;LEV 13",
                                     "DISP:TEXT 'hi'"])
async def test_an_scpi_command_the_gateway_cannot_read_asks(refusing_psu, command):
    psu_bench, psu = refusing_psu
    asked = await psu_bench.refused_twice("write", {"cmd": command})
    assert [request.reason for request in asked] == [UNREADABLE]
    assert psu_bench.received == [] and psu.volts_set == 0.0


# --- Korad ---------------------------------------------------------------------------------------------------------

@pytest.fixture
async def korad() -> AsyncIterator[KoradPowerSupply]:
    async with KoradPowerSupply("lab_korad") as device:
        yield device


def korad_entry(device: KoradPowerSupply) -> DeviceEntry:
    return DeviceEntry(id="lab_korad", name="Korad", area="lab", kind="korad_psu", serial_port=device.port)


@pytest.fixture
async def korad_bench(tmp_path, korad, gateway_factory) -> Bench:
    received = spy(korad, "run")
    return Bench(await start(gateway_factory, tmp_path, [korad_entry(korad)]), "lab_korad", received)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def refusing_korad(tmp_path_factory) -> AsyncIterator[tuple[Bench, KoradPowerSupply]]:
    async with (KoradPowerSupply("lab_korad") as korad,
                refusing_bench(tmp_path_factory.mktemp("korad"), korad_entry(korad), spy(korad, "run")) as bench):
        yield bench, korad


@MODULE_LOOP
@pytest.mark.parametrize(("command", "reason"), [
    ("xVSET1:13", "above 12 V"), ("OUT11", "output on"), ("BEEP1OUT1", "output on"),
    ("VSET1:05.00OUT1", "output on"), ("ISET1:2.5", "above 2 A"), ("RCL1", "above 12 V"),
    ("3", UNREADABLE), ("vset1:13", UNREADABLE),
])
async def test_korad_token_streams_are_read_as_the_supply_reads_them(refusing_korad, command, reason):
    korad_bench, korad = refusing_korad
    asked = await korad_bench.refused_twice("write", {"cmd": command})
    assert reason in asked[0].reason
    assert korad_bench.received == []
    assert korad.channel.output is False and korad.channel.volts_set == 0.0


@pytest.mark.parametrize("command", ["VSET1:05.00", "OUT0", "ISET1:1.000", "VSET1:12"])
async def test_harmless_korad_commands_pass_unasked(korad_bench, command):
    await korad_bench.passes_unasked("write", {"cmd": command})


# --- Zigbee2MQTT ---------------------------------------------------------------------------------------------------

@pytest.fixture
async def zigbee(mqtt_broker) -> AsyncIterator[dict[str, Any]]:
    devices = {"lock": DoorLock("lock", "Front Door Lock"), "radiator": Thermostat("radiator", "Office Radiator")}
    devices["radiator"].values["system_mode"] = "off"
    bridge = Zigbee2MqttBridge(devices=devices.values())
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield devices | {"bridge": bridge}
    await bridge.stop()


@pytest.fixture
async def zigbee_gateway(tmp_path, mqtt_broker, zigbee, gateway_factory) -> Gateway:
    gateway = await start(gateway_factory, tmp_path, [], mqtt_broker)
    await until(lambda: {d.kind for d in gateway.registry.all()} >= {"zigbee_lock", "zigbee_thermostat"})
    return gateway


def zigbee_bench(gateway: Gateway, zigbee: dict[str, Any], kind: str) -> tuple[Bench, str]:
    """A bench whose `received` holds the /set messages the bridge takes (the gateway's own /get reads aside)."""
    device = next(d for d in gateway.registry.all() if d.kind == kind)
    bridge, sets = zigbee["bridge"], []
    command = bridge._command

    async def recording(name: str, verb: str, attribute: str | None, text: str) -> None:
        if verb == "set":
            sets.append((name, attribute, text))
        await command(name, verb, attribute, text)

    bridge._command = recording
    return Bench(gateway, device.id, sets), device.base_topic


@pytest.mark.parametrize(("suffix", "payload"), [
    ("/set/state", '"UNLOCK"'), ("/set/state", "unlock"), ("/set", "UNLOCK"), ("/set", {"state": "unlock"}),
    ("/set", '{"state": "Unlock"}'), ("/set/state", "UnLoCk"),
])
async def test_zigbee_unlock_however_it_is_spelled(zigbee_gateway, zigbee, suffix, payload):
    bench, base = zigbee_bench(zigbee_gateway, zigbee, "zigbee_lock")
    asked = await bench.refused_twice("publish", {"topic": base + suffix, "payload": payload})
    assert asked[0].reason == "unlocks a door"
    assert bench.received == [] and zigbee["lock"].values["state"] == "LOCK"


@pytest.mark.parametrize(("suffix", "payload"), [
    ("/set/system_mode", "heat"), ("/set/system_mode", '"HEAT"'), ("/set", {"system_mode": "Heat"}),
    ("/set", {"occupied_heating_setpoint": 21, "system_mode": "heat"}),
])
async def test_zigbee_heating_on_however_it_is_spelled(zigbee_gateway, zigbee, suffix, payload):
    bench, base = zigbee_bench(zigbee_gateway, zigbee, "zigbee_thermostat")
    asked = await bench.refused_twice("publish", {"topic": base + suffix, "payload": payload})
    assert asked[0].reason == "switches heating on"
    assert bench.received == [] and zigbee["radiator"].values["system_mode"] == "off"


@pytest.mark.parametrize(("kind", "suffix", "payload", "reason"), [
    ("zigbee_lock", "/set", {"state": "LOCK"}, None), ("zigbee_lock", "/get", {"state": ""}, None),
    ("zigbee_thermostat", "/set", {"system_mode": "auto"}, None),
    ("zigbee_thermostat", "/set/occupied_heating_setpoint", 19.5, None),
    ("zigbee_lock", "/set", {"state": 1}, UNREADABLE), ("zigbee_lock", "/set/lock_motor", "1", UNREADABLE),
    ("zigbee_lock", "/set", "open sesame", UNREADABLE),
])
async def test_zigbee_harmless_and_unreadable_messages(zigbee_gateway, zigbee, kind, suffix, payload, reason):
    bench, base = zigbee_bench(zigbee_gateway, zigbee, kind)
    args = {"topic": base + suffix, "payload": payload}
    if reason is None:
        await bench.passes_unasked("publish", args)
    else:
        assert [request.reason for request in await bench.refused_twice("publish", args)] == [reason]
        assert bench.received == [] and zigbee["lock"].values["state"] == "LOCK"


# --- Shelly --------------------------------------------------------------------------------------------------------

HEATER_RULE = {"device": "desk_plug", "when": "output_on", "reason": "the plug feeds a heater"}


@pytest.fixture
async def shelly_bench(tmp_path, shelly, gateway_factory) -> Bench:
    received = spy(shelly, "call")
    gateway = await start(gateway_factory, tmp_path, [shelly_entry(shelly)], policy={"rules": [HEATER_RULE]})
    return Bench(gateway, "desk_plug", received)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def refusing_shelly(tmp_path_factory) -> AsyncIterator[tuple[Bench, ShellySwitch]]:
    async with (ShellySwitch("desk_plug") as shelly,
                refusing_bench(tmp_path_factory.mktemp("shelly"), shelly_entry(shelly), spy(shelly, "call"),
                               policy={"rules": [HEATER_RULE]}) as bench):
        yield bench, shelly


def sent(bench: Bench) -> list[str]:
    """The RPC methods the plug received, but for the gateway's own state reads."""
    return [method for method in bench.received if method != "Switch.GetStatus"]


@MODULE_LOOP
@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Toggle", "params": {"id": 0}}),
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": False, "toggle_after": 1}}),
    ("rpc", {"rpc_method": "Switch.SetConfig", "params": {"id": 0, "config": {"auto_on": True}}}),
    ("rpc", {"rpc_method": "Switch.SetConfig", "params": {"id": 0, "config": {"initial_state": "on"}}}),
    ("get", {"path": "/rpc/Switch.Toggle?id=0"}),
    ("post", {"path": "/rpc", "json": {"id": 7, "method": "switch.set", "params": {"id": 0, "on": True}}}),
], ids=["Switch.Toggle", "a timer that switches on", "auto_on", "on at power-up", "GET toggle",
        "POST a frame in lower case"])
async def test_a_shelly_rule_on_output_on_holds_for_every_way_to_switch_on(refusing_shelly, method, args):
    shelly_bench, shelly = refusing_shelly
    asked = await shelly_bench.refused_twice(method, args)
    assert asked[0].reason == "the plug feeds a heater"
    assert sent(shelly_bench) == [] and shelly.output is False and shelly._timer is None


@MODULE_LOOP
@pytest.mark.parametrize("rpc_method", ["Script.Eval", "Schedule.Create", "KVS.Set"])
async def test_a_shelly_method_the_gateway_does_not_know_asks(refusing_shelly, rpc_method):
    shelly_bench, _ = refusing_shelly
    asked = await shelly_bench.refused_twice("rpc", {"rpc_method": rpc_method, "params": {"id": 1}})
    assert [request.reason for request in asked] == [UNREADABLE] and sent(shelly_bench) == []


@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": False}}),
    ("rpc", {"rpc_method": "Switch.GetStatus", "params": {"id": 0}}),
    ("get", {"path": "/shelly"}),
])
async def test_harmless_shelly_calls_pass_unasked(shelly_bench, method, args):
    await shelly_bench.passes_unasked(method, args)


# --- no rules, nothing to ask --------------------------------------------------------------------------------------

async def test_on_a_device_without_rules_what_cannot_be_read_is_not_asked_about(tmp_path, mqtt_broker, tasmota,
                                                                              gateway_factory):
    gateway = await start(gateway_factory, tmp_path, [tasmota_entry(tasmota)], mqtt_broker)
    bench = Bench(gateway, "tv_plug", [])
    await bench.passes_unasked("publish", {"topic": "cmnd/tasmota_A1B2C3/SetOption19", "payload": "1"})
    rows = gateway.store.audit_rows("spelling")
    assert rows[-1].detail == "does: unknown 'SETOPTION19 1'"
