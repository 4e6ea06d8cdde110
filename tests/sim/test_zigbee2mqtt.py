"""The Zigbee2MQTT bridge simulator against a real broker and a plain paho client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sim.mqtt_probe import MqttProbe
from simulators.base import SimClock, SimContext
from simulators.zigbee2mqtt import (
    Bulb,
    ClimateSensor,
    ContactSensor,
    DoorLock,
    Group,
    MotionSensor,
    Room,
    Thermostat,
    Zigbee2MqttBridge,
)


@dataclass
class Home:
    bridge: Zigbee2MqttBridge
    sensor: ClimateSensor
    thermostat: Thermostat
    motion: MotionSensor
    door: ContactSensor
    bulb: Bulb
    lock: DoorLock


def build_home(speed: float = 1.0) -> Home:
    room = Room(temperature=19.0)
    home = Home(bridge=Zigbee2MqttBridge("z2m"), sensor=ClimateSensor("living_climate", "living/climate", room=room),
                thermostat=Thermostat("living_trv", "living/radiator", room=room, setpoint=21.0),
                motion=MotionSensor("hall_motion", "hall motion"), door=ContactSensor("front_door", "front door"),
                bulb=Bulb("desk_bulb", "desk bulb"), lock=DoorLock("front_lock", "front lock"))
    for device in (home.sensor, home.thermostat, home.motion, home.door, home.bulb, home.lock):
        home.bridge.add(device)
    home.bridge.groups.append(Group(1, "downstairs", [home.bulb]))
    return home


@pytest.fixture
async def mqtt_home(mqtt_broker) -> AsyncIterator[Home]:
    home = build_home()
    await home.bridge.start(SimContext(mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port))
    yield home
    await home.bridge.stop()


@pytest.fixture
async def mqtt_probe(mqtt_broker, mqtt_home) -> AsyncIterator[MqttProbe]:
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("zigbee2mqtt/#")
    await probe.subscribe("homeassistant/#")
    yield probe
    probe.close()


def features(expose: dict) -> dict:
    return {f["name"]: f for f in expose["features"]}


async def test_bridge_state_info_devices_and_groups_are_retained(mqtt_probe, mqtt_home):
    state = await mqtt_probe.expect("zigbee2mqtt/bridge/state")
    info = await mqtt_probe.expect("zigbee2mqtt/bridge/info")
    devices = await mqtt_probe.expect("zigbee2mqtt/bridge/devices")
    groups = await mqtt_probe.expect("zigbee2mqtt/bridge/groups")

    assert state.retain and state.json() == {"state": "online"}
    assert info.retain and info.json()["version"].startswith("2.")
    assert info.json()["coordinator"]["ieee_address"] == mqtt_home.bridge.coordinator_ieee
    assert devices.retain and groups.retain
    by_name = {d["friendly_name"]: d for d in devices.json()}
    assert set(by_name) == {"Coordinator", "living/climate", "living/radiator", "hall motion", "front door",
                            "desk bulb", "front lock"}
    assert by_name["Coordinator"]["type"] == "Coordinator" and by_name["Coordinator"]["definition"] is None
    bulb = by_name["desk bulb"]
    assert bulb["ieee_address"] == mqtt_home.bulb.ieee and bulb["supported"] and bulb["interview_completed"]
    assert (bulb["type"], bulb["power_source"]) == ("Router", "Mains (single phase)")
    assert bulb["definition"]["vendor"] == "Philips" and bulb["definition"]["model"] == "9290022166"
    light = features(bulb["definition"]["exposes"][0])
    assert bulb["definition"]["exposes"][0]["type"] == "light"
    assert light["state"]["access"] == 7 and light["state"]["value_toggle"] == "TOGGLE"
    assert (light["brightness"]["value_min"], light["brightness"]["value_max"]) == (0, 254)
    assert light["color_xy"]["property"] == "color" and light["color_xy"]["type"] == "composite"
    sensor = {e["name"]: e for e in by_name["living/climate"]["definition"]["exposes"]}
    assert sensor["temperature"]["access"] == 1 and sensor["temperature"]["unit"] == "°C"
    assert by_name["living/climate"]["power_source"] == "Battery"
    lock = features(by_name["front lock"]["definition"]["exposes"][0])
    assert lock["state"]["value_on"] == "LOCK" and lock["lock_state"]["access"] == 1
    climate = features(by_name["living/radiator"]["definition"]["exposes"][0])
    assert climate["occupied_heating_setpoint"]["access"] == 7 and climate["local_temperature"]["access"] == 5
    assert climate["system_mode"]["values"] == ["off", "auto", "heat"]
    assert groups.json() == [{"id": 1, "friendly_name": "downstairs", "description": None, "scenes": [],
                              "members": [{"ieee_address": mqtt_home.bulb.ieee, "endpoint": 1}]}]
    availability = await mqtt_probe.expect("zigbee2mqtt/desk bulb/availability")
    assert availability.retain and availability.json() == {"state": "online"}


async def test_home_assistant_discovery_configs_are_retained(mqtt_probe, mqtt_home):
    bulb = mqtt_home.bulb.ieee
    light = (await mqtt_probe.expect(f"homeassistant/light/{bulb}/light/config")).json()
    assert light["schema"] == "json" and light["brightness_scale"] == 254
    assert light["command_topic"] == "zigbee2mqtt/desk bulb/set" and light["state_topic"] == "zigbee2mqtt/desk bulb"
    assert light["supported_color_modes"] == ["xy", "color_temp"]
    assert light["unique_id"] == f"{bulb}_light_zigbee2mqtt"
    assert light["device"]["identifiers"] == [f"zigbee2mqtt_{bulb}"] and light["origin"]["name"] == "Zigbee2MQTT"
    assert [a["topic"] for a in light["availability"]] == ["zigbee2mqtt/bridge/state",
                                                           "zigbee2mqtt/desk bulb/availability"]

    lock = (await mqtt_probe.expect(f"homeassistant/lock/{mqtt_home.lock.ieee}/lock/config")).json()
    assert (lock["state_locked"], lock["state_unlocked"]) == ("LOCK", "UNLOCK")
    climate = await mqtt_probe.expect(f"homeassistant/climate/{mqtt_home.thermostat.ieee}/climate/config")
    assert climate.retain
    assert climate.json()["temperature_command_topic"] == "zigbee2mqtt/living/radiator/set/occupied_heating_setpoint"
    assert climate.json()["modes"] == ["off", "auto", "heat"]
    occupancy = (await mqtt_probe.expect(
        f"homeassistant/binary_sensor/{mqtt_home.motion.ieee}/occupancy/config")).json()
    assert occupancy["device_class"] == "occupancy" and occupancy["payload_on"] is True
    temperature = (await mqtt_probe.expect(
        f"homeassistant/sensor/{mqtt_home.sensor.ieee}/temperature/config")).json()
    assert temperature["unit_of_measurement"] == "°C"
    assert temperature["value_template"] == "{{ value_json.temperature }}"


async def test_bulb_set_json_attribute_and_bare_word(mqtt_probe, mqtt_home):
    reply = await mqtt_probe.request("zigbee2mqtt/desk bulb/set", {"state": "ON", "brightness": 128,
                                                                    "color_temp": 300}, "zigbee2mqtt/desk bulb")
    assert reply.json()["state"] == "ON" and reply.json()["brightness"] == 128
    state = mqtt_home.bulb.state()
    assert (state["state"], state["brightness"], state["color_temp"], state["color_mode"]) == (
        "ON", 128, 300, "color_temp")

    reply = await mqtt_probe.request("zigbee2mqtt/desk bulb/set/state", "OFF", "zigbee2mqtt/desk bulb")
    assert reply.json()["state"] == "OFF" and mqtt_home.bulb.values["state"] == "OFF"
    await mqtt_probe.request("zigbee2mqtt/desk bulb/set", "toggle", "zigbee2mqtt/desk bulb")
    assert mqtt_home.bulb.values["state"] == "ON"
    reply = await mqtt_probe.request("zigbee2mqtt/desk bulb/set", {"color": {"hex": "#FF0000"}},
                                     "zigbee2mqtt/desk bulb")
    assert reply.json()["color_mode"] == "xy"
    assert reply.json()["color"] == pytest.approx({"x": 0.64, "y": 0.33}, abs=1e-3)
    reply = await mqtt_probe.request("zigbee2mqtt/desk bulb/set/brightness", "0", "zigbee2mqtt/desk bulb")
    assert reply.json()["state"] == "OFF"


async def test_lock_and_unlock(mqtt_probe, mqtt_home):
    reply = await mqtt_probe.request("zigbee2mqtt/front lock/set", {"state": "UNLOCK"}, "zigbee2mqtt/front lock")
    assert reply.json()["state"] == "UNLOCK" and reply.json()["lock_state"] == "unlocked"
    assert mqtt_home.lock.state()["state"] == "UNLOCK"

    log = await mqtt_probe.request("zigbee2mqtt/front lock/set", {"state": "OPEN_SESAME"},
                                   "zigbee2mqtt/bridge/logging")
    assert log.json()["level"] == "error"
    assert "'OPEN_SESAME' not allowed, choose between: lock,unlock" in log.json()["message"]
    assert mqtt_home.lock.values["lock_state"] == "unlocked"
    await mqtt_probe.request("zigbee2mqtt/front lock/set/state", "LOCK", "zigbee2mqtt/front lock")
    assert (mqtt_home.lock.values["state"], mqtt_home.lock.values["lock_state"]) == ("LOCK", "locked")


async def test_get_reads_state_and_errors_are_logged(mqtt_probe, mqtt_home):
    reply = await mqtt_probe.request("zigbee2mqtt/living/radiator/get", {"local_temperature": ""},
                                     "zigbee2mqtt/living/radiator")
    assert reply.json()["local_temperature"] == pytest.approx(19.0, abs=0.1)
    log = await mqtt_probe.request("zigbee2mqtt/living/climate/get", {"temperature": ""},
                                   "zigbee2mqtt/bridge/logging")
    assert "No converter available for 'temperature'" in log.json()["message"]
    log = await mqtt_probe.request("zigbee2mqtt/no such thing/set", {"state": "ON"}, "zigbee2mqtt/bridge/logging")
    assert log.json()["message"] == "Entity 'no such thing' is unknown"
    log = await mqtt_probe.request("zigbee2mqtt/living/radiator/set", {"local_temperature": 30},
                                   "zigbee2mqtt/bridge/logging")
    assert "No converter available for 'local_temperature'" in log.json()["message"]


async def test_bridge_requests_answer_with_status_data_and_transaction(mqtt_probe, mqtt_home):
    health = await mqtt_probe.request("zigbee2mqtt/bridge/request/health_check", {"transaction": "t-1"},
                                      "zigbee2mqtt/bridge/response/health_check")
    assert health.json() == {"data": {"healthy": True}, "status": "ok", "transaction": "t-1"}

    mark = mqtt_probe.mark()
    permit = await mqtt_probe.request("zigbee2mqtt/bridge/request/permit_join", {"time": 60, "transaction": 7},
                                      "zigbee2mqtt/bridge/response/permit_join")
    assert permit.json() == {"data": {"time": 60}, "status": "ok", "transaction": 7}
    info = await mqtt_probe.expect("zigbee2mqtt/bridge/info", lambda m: m.json()["permit_join"], after=mark)
    assert info.json()["permit_join_end"] > 0 and mqtt_home.bridge.state()["permit_join"] is True
    invalid = await mqtt_probe.request("zigbee2mqtt/bridge/request/permit_join", {"value": True},
                                       "zigbee2mqtt/bridge/response/permit_join")
    assert invalid.json() == {"data": {}, "status": "error", "error": "Invalid payload"}

    missing = await mqtt_probe.request("zigbee2mqtt/bridge/request/device/rename", {"from": "ghost", "to": "x"},
                                       "zigbee2mqtt/bridge/response/device/rename")
    assert missing.json()["status"] == "error" and missing.json()["error"] == "Device 'ghost' does not exist"


async def test_rename_moves_the_device_to_its_new_topic(mqtt_probe, mqtt_home):
    mark = mqtt_probe.mark()
    renamed = await mqtt_probe.request("zigbee2mqtt/bridge/request/device/rename",
                                       {"from": "desk bulb", "to": "office/lamp"},
                                       "zigbee2mqtt/bridge/response/device/rename")
    assert renamed.json() == {"data": {"from": "desk bulb", "to": "office/lamp", "homeassistant_rename": False},
                              "status": "ok"}
    cleared = await mqtt_probe.expect("zigbee2mqtt/desk bulb", lambda m: m.payload == b"", after=mark)
    assert cleared.payload == b""
    devices = await mqtt_probe.expect("zigbee2mqtt/bridge/devices",
                                      lambda m: "office/lamp" in m.text, after=mark)
    assert "desk bulb" not in [d["friendly_name"] for d in devices.json()]
    await mqtt_probe.request("zigbee2mqtt/office/lamp/set", {"state": "ON"}, "zigbee2mqtt/office/lamp")
    assert mqtt_home.bulb.values["state"] == "ON" and mqtt_home.bulb.state()["friendly_name"] == "office/lamp"


async def test_remove_forgets_the_device_and_clears_its_discovery(mqtt_probe, mqtt_home):
    lock = mqtt_home.lock
    mark = mqtt_probe.mark()
    removed = await mqtt_probe.request("zigbee2mqtt/bridge/request/device/remove", {"id": "front lock"},
                                       "zigbee2mqtt/bridge/response/device/remove")
    assert removed.json() == {"data": {"id": "front lock", "block": False, "force": False}, "status": "ok"}
    devices = await mqtt_probe.expect("zigbee2mqtt/bridge/devices", lambda m: lock.ieee not in m.text, after=mark)
    assert "front lock" not in [d["friendly_name"] for d in devices.json()]
    await mqtt_probe.expect(f"homeassistant/lock/{lock.ieee}/lock/config", lambda m: not m.payload, after=mark)
    event = await mqtt_probe.expect("zigbee2mqtt/bridge/event", after=mark)
    assert event.json() == {"type": "device_leave", "data": {"ieee_address": lock.ieee,
                                                             "friendly_name": "front lock"}}
    log = await mqtt_probe.request("zigbee2mqtt/front lock/set", {"state": "UNLOCK"}, "zigbee2mqtt/bridge/logging")
    assert "unknown" in log.json()["message"] and lock.values["state"] == "LOCK"


async def test_device_and_bridge_going_offline(mqtt_broker, mqtt_probe, mqtt_home):
    mark = mqtt_probe.mark()
    mqtt_home.door.apply({"fault": "offline"})
    gone = await mqtt_probe.expect("zigbee2mqtt/front door/availability", after=mark)
    assert gone.json() == {"state": "offline"} and mqtt_home.door.state()["online"] is False
    mqtt_home.door.apply({"fault": "none"})
    back = await mqtt_probe.expect("zigbee2mqtt/front door/availability",
                                   lambda m: m.json() == {"state": "online"}, after=mark)
    assert back.json() == {"state": "online"} and mqtt_home.door.state()["online"] is True

    mark = mqtt_probe.mark()
    mqtt_home.bridge.apply({"fault": "offline"})
    will = await mqtt_probe.expect("zigbee2mqtt/bridge/state", after=mark)
    assert will.json() == {"state": "offline"}
    late = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    try:
        await late.subscribe("zigbee2mqtt/bridge/state")
        assert (await late.expect("zigbee2mqtt/bridge/state")).json() == {"state": "offline"}
    finally:
        late.close()
    mqtt_home.bridge.apply({"fault": "none"})
    await mqtt_probe.expect("zigbee2mqtt/bridge/state", lambda m: m.json() == {"state": "online"}, after=mark)
    mark = mqtt_probe.mark()
    mqtt_probe.publish("zigbee2mqtt/front lock/set", {"state": "UNLOCK"})
    # The bridge also republishes states when it comes back; wait for the one that answers this command.
    await mqtt_probe.expect("zigbee2mqtt/front lock", lambda m: m.json().get("state") == "UNLOCK", after=mark)
    assert mqtt_home.lock.values["state"] == "UNLOCK"


async def test_offline_device_does_not_obey(mqtt_probe, mqtt_home):
    mqtt_home.bulb.apply({"fault": "offline"})
    log = await mqtt_probe.request("zigbee2mqtt/desk bulb/set", {"state": "ON"}, "zigbee2mqtt/bridge/logging")
    assert "Delivery failed" in log.json()["message"] and mqtt_home.bulb.values["state"] == "OFF"


async def test_retain_option_makes_the_state_retained(mqtt_probe, mqtt_home):
    reply = await mqtt_probe.request("zigbee2mqtt/bridge/request/device/options",
                                     {"id": "desk bulb", "options": {"retain": True}},
                                     "zigbee2mqtt/bridge/response/device/options")
    assert reply.json()["data"]["to"] == {"retain": True}
    await mqtt_probe.request("zigbee2mqtt/desk bulb/set", {"state": "ON"}, "zigbee2mqtt/desk bulb")
    late = MqttProbe(*mqtt_home.bridge._broker())
    try:
        await late.subscribe("zigbee2mqtt/desk bulb")
        retained = await late.expect("zigbee2mqtt/desk bulb")
    finally:
        late.close()
    assert retained.retain and retained.json()["state"] == "ON"


async def test_the_room_warms_while_the_thermostat_heats(mqtt_broker):
    home = build_home()
    clock = SimClock(speed=7200.0)  # two simulated hours per real second
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("zigbee2mqtt/#")
    await home.bridge.start(SimContext(clock=clock, mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port))
    try:
        await probe.request("zigbee2mqtt/living/radiator/set/occupied_heating_setpoint", "22.3",
                            "zigbee2mqtt/living/radiator", lambda m: m.json()["occupied_heating_setpoint"] == 22.5)
        assert home.thermostat.values["occupied_heating_setpoint"] == 22.5
        heating = await probe.expect("zigbee2mqtt/living/radiator", lambda m: m.json()["running_state"] == "heat")
        assert heating.json()["pi_heating_demand"] == 100
        warm = await probe.expect("zigbee2mqtt/living/climate", lambda m: m.json()["temperature"] >= 22.0)
        assert 40 <= warm.json()["humidity"] <= 50
        idle = await probe.expect("zigbee2mqtt/living/radiator", lambda m: m.json()["running_state"] == "idle"
                                  and m.json()["local_temperature"] >= 22.5)
        assert idle.json()["local_temperature"] < 23.5
    finally:
        await home.bridge.stop()
        probe.close()


async def test_motion_clears_after_the_occupancy_timeout(mqtt_broker):
    home = build_home()
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("zigbee2mqtt/hall motion")
    await home.bridge.start(SimContext(clock=SimClock(speed=300.0), mqtt_host=mqtt_broker.host,
                                       mqtt_port=mqtt_broker.port))
    try:
        mark = probe.mark()
        home.motion.apply({"occupancy": True})
        seen = await probe.expect("zigbee2mqtt/hall motion", lambda m: m.json()["occupancy"] is True, after=mark)
        cleared = await probe.expect("zigbee2mqtt/hall motion",
                                     lambda m: m.at > seen.at and m.json()["occupancy"] is False, after=mark)
        assert 80 / 300 <= cleared.at - seen.at <= 3.0  # 90 s of simulated time, plus one tick
        assert home.motion.state()["occupancy"] is False
        home.door.apply({"contact": False})
        assert home.door.values["contact"] is False
        with pytest.raises(ValueError, match="lock_state: not settable"):
            home.lock.apply({"lock_state": "unlocked"})
    finally:
        await home.bridge.stop()
        probe.close()
