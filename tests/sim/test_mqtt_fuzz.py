"""Hypothesis throws random bytes and JSON at every Tasmota and Zigbee2MQTT topic: nothing crashes, state stays valid,
and each device still answers a well-formed request right afterwards."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.mqtt_probe import MqttProbe
from simulators.base import SimContext
from simulators.tasmota import TasmotaDimmer, TasmotaPlug
from simulators.zigbee2mqtt import (
    Bulb,
    ClimateSensor,
    DoorLock,
    MotionSensor,
    Room,
    Thermostat,
    Zigbee2MqttBridge,
)

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 40), 2 ** 40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)
keys = st.sampled_from(["state", "brightness", "color_temp", "color", "effect", "transition", "power_on_behavior",
                        "occupied_heating_setpoint", "system_mode", "local_temperature", "lock_state", "x", "hex",
                        "id", "from", "to", "time", "value", "options", "transaction", "force", "retain"])
json_objects = st.dictionaries(keys | st.text(max_size=8), json_values | st.sampled_from(
    ["ON", "OFF", "TOGGLE", "LOCK", "UNLOCK", "heat", "off", "desk bulb", "front lock", {"hex": "#12ab34"},
     {"x": 0.3, "y": 0.4}, {"r": 300, "g": -1, "b": 2}]), max_size=4)
payloads = (st.binary(max_size=120) | json_values.map(json.dumps) | json_objects.map(json.dumps)
            | st.text(max_size=40) | st.sampled_from(["", "?", "ON", "toggle", "2", "+", "-", "#FF0000", "999",
                                                      "Power ON; Dimmer 150;;", "0,0,0", "-5", "1e9", "²", "٣",
                                                      '{"id": "motion", "options": {"occupancy_timeout": "x"}}']))
command_words = st.sampled_from(["Power", "POWER1", "power2", "Power9", "Dimmer", "CT", "Color", "Color2",
                                 "Status", "STATE", "Backlog", "Backlog0", "TelePeriod", "Fade", "Speed", "NoDelay"])
alphanumerics = st.characters(min_codepoint=48, max_codepoint=122, whitelist_categories=("Lu", "Ll", "Nd"))
command_names = command_words | st.text(alphanumerics, min_size=1, max_size=12)


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("simulators")]


@dataclass
class TasmotaTargets:
    plug: TasmotaPlug
    light: TasmotaDimmer


@pytest.fixture
async def mqtt_fuzz_tasmota(mqtt_broker) -> AsyncIterator[TasmotaTargets]:
    context = SimContext(mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port)
    targets = TasmotaTargets(TasmotaPlug("fuzz_plug", mac="CC50E3F00001", relays=2),
                             TasmotaDimmer("fuzz_light", mac="CC50E3F00002", color=True))
    await targets.plug.start(context)
    await targets.light.start(context)
    yield targets
    await targets.light.stop()
    await targets.plug.stop()


@pytest.fixture
async def mqtt_fuzz_probe(mqtt_broker) -> AsyncIterator[MqttProbe]:
    """Subscribed only to the liveness replies: two messages back to back from Mosquitto wait out Nagle's
    algorithm against the probe's delayed ACK (~40 ms), which would make every example slow."""
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("stat/+/STATUS11")
    await probe.subscribe("zigbee2mqtt/bridge/response/health_check")
    yield probe
    probe.close()


@FUZZ
@given(target=st.sampled_from(["plug", "light", "group"]), command=command_names, payload=payloads)
async def test_tasmota_survives_random_commands(mqtt_fuzz_tasmota, mqtt_fuzz_probe, caplog, target, command,
                                                payload):
    plug, light = mqtt_fuzz_tasmota.plug, mqtt_fuzz_tasmota.light
    topic = {"plug": plug.topic, "light": light.topic, "group": "tasmotas"}[target]
    mqtt_fuzz_probe.publish(f"cmnd/{topic}/{command}", payload)

    for device in (plug, light):  # commands are handled in order, so this reply comes after the random one
        reply = await mqtt_fuzz_probe.request(f"cmnd/{device.topic}/Status", "11", f"stat/{device.topic}/STATUS11")
        status = reply.json()["StatusSTS"]
        assert status[device.power_key(0)] == ("ON" if device.power else "OFF")
    assert all(isinstance(on, bool) for on in plug.relays + light.relays)
    assert 0 <= light.dimmer <= 100 and 153 <= light.ct <= 500 and all(0 <= c <= 255 for c in light.rgb)
    assert plug.tele_period == 0 or 10 <= plug.tele_period <= 3600
    assert error_records(caplog) == []


@pytest.fixture
async def mqtt_fuzz_bridge(mqtt_broker) -> AsyncIterator[Zigbee2MqttBridge]:
    room = Room()
    bridge = Zigbee2MqttBridge("fuzz_z2m", [Bulb("fuzz_bulb", "desk bulb"), DoorLock("fuzz_lock", "front lock"),
                                            Thermostat("fuzz_trv", "radiator", room=room),
                                            ClimateSensor("fuzz_climate", "climate", room=room),
                                            MotionSensor("fuzz_motion", "motion")])
    await bridge.start(SimContext(mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port))
    yield bridge
    await bridge.stop()


z2m_suffixes = st.sampled_from(["set", "get", "set/state", "set/brightness", "set/color", "set/color_temp",
                                "set/occupied_heating_setpoint", "set/system_mode", "get/state", "set/nonsense"])
z2m_requests = st.sampled_from(["health_check", "permit_join", "device/rename", "device/remove", "device/options",
                                "group/add", "nonsense"])


@FUZZ
@given(name=st.sampled_from(["desk bulb", "front lock", "radiator", "climate", "motion", "nobody"]),
       suffix=z2m_suffixes, request=z2m_requests, to_bridge=st.booleans(), payload=payloads)
async def test_zigbee2mqtt_survives_random_messages(mqtt_fuzz_bridge, mqtt_fuzz_probe, caplog, name, suffix,
                                                    request, to_bridge, payload):
    bridge = mqtt_fuzz_bridge
    topic = f"zigbee2mqtt/bridge/request/{request}" if to_bridge else f"zigbee2mqtt/{name}/{suffix}"
    mqtt_fuzz_probe.publish(topic, payload)

    reply = await mqtt_fuzz_probe.request("zigbee2mqtt/bridge/request/health_check", {"transaction": "alive"},
                                          "zigbee2mqtt/bridge/response/health_check",
                                          lambda m: m.json().get("transaction") == "alive")
    assert reply.json()["status"] == "ok" and bridge.online
    for device in bridge.devices:
        values = device.values
        if isinstance(device, Bulb):
            assert values["state"] in ("ON", "OFF") and 0 <= values["brightness"] <= 254
            assert 153 <= values["color_temp"] <= 500
            assert 0 <= values["color"]["x"] <= 1 and 0 <= values["color"]["y"] <= 1
        if isinstance(device, DoorLock):
            assert (values["state"], values["lock_state"]) in (("LOCK", "locked"), ("UNLOCK", "unlocked"))
        if isinstance(device, Thermostat):
            assert 5 <= values["occupied_heating_setpoint"] <= 30 and values["system_mode"] in ("off", "auto", "heat")
        if isinstance(device, MotionSensor):
            assert isinstance(device.options["occupancy_timeout"], (int, float))
        json.dumps(device.payload(), allow_nan=False)  # what goes out on the state topic is valid JSON
    assert len({d.friendly_name for d in bridge.devices}) == len(bridge.devices)
    assert error_records(caplog) == []
