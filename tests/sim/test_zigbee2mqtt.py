"""The Zigbee2MQTT bridge simulator against a real broker and a plain paho client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sim.http_support import until
from sim.mqtt_probe import MqttProbe
from simulators.base import ManualClock, SimClock, SimContext
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
from simulators.zigbee2mqtt.devices import HUE_EFFECTS
from simulators.zigbee2mqtt.wire import encoded_base_topic


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
    assert "permit_join_end" not in info.json()  # undefined while joining is not permitted
    assert info.json()["coordinator"]["ieee_address"] == mqtt_home.bridge.coordinator_ieee
    assert devices.retain and groups.retain
    by_name = {d["friendly_name"]: d for d in devices.json()}
    assert set(by_name) == {"Coordinator", "living/climate", "living/radiator", "hall motion", "front door",
                            "desk bulb", "front lock"}
    # 2.1.3 leaves out what is undefined (lib/extension/bridge.ts l. 745-765): the coordinator has no definition.
    assert by_name["Coordinator"]["type"] == "Coordinator" and "definition" not in by_name["Coordinator"]
    # interview_state and endpoint names came after 2.1.3, which sends neither (bridge.ts l. 717-765).
    assert all("interview_state" not in d and all("name" not in e for e in d["endpoints"].values())
               for d in devices.json())
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
    assert groups.json() == [{"id": 1, "friendly_name": "downstairs", "scenes": [],
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


# --- fidelity to Zigbee2MQTT 2.1.3: the line numbers are of its source at the 2.1.3 tag ----------------------


async def discovery_of(probe: MqttProbe, ieee: str, count: int) -> dict[tuple[str, str], dict]:
    """Every retained discovery config of one device, by (component, object id), once `count` have come."""
    topic = f"homeassistant/+/{ieee}/+/config"
    await until(lambda: len({m.topic for m in probe.received(topic)}) >= count)
    await asyncio.sleep(0.3)  # anything more the bridge published would be retained and right behind
    return {tuple(m.topic.split("/")[1:4:2]): m.json() for m in probe.received(topic) if m.payload}


async def test_discovery_entities_are_those_2_1_3_announces(mqtt_probe, mqtt_home):
    bulb = await discovery_of(mqtt_probe, mqtt_home.bulb.ieee, 4)

    # A settable enum is a select and nothing else (lib/extension/homeassistant.ts l. 1146-1163).
    assert set(bulb) == {("light", "light"), ("select", "effect"), ("select", "power_on_behavior"),
                         ("sensor", "linkquality")}
    light = bulb[("light", "light")]
    # The light lists the device's effect enum (l. 566-577).
    assert light["effect"] is True and light["effect_list"] == HUE_EFFECTS
    effect = bulb[("select", "effect")]
    # ENUM_DISCOVERY_LOOKUP.effect (l. 283); a write-only enum has no state topic nor template (l. 1115, 1152).
    assert effect["enabled_by_default"] is False and effect["icon"] == "mdi:palette"
    assert "state_topic" not in effect and "value_template" not in effect
    assert effect["command_topic"] == "zigbee2mqtt/desk bulb/set/effect" and effect["options"] == HUE_EFFECTS
    power_on = bulb[("select", "power_on_behavior")]
    assert (power_on["entity_category"], power_on["icon"]) == ("config", "mdi:power-settings")  # l. 297, 1229
    assert power_on["state_topic"] == "zigbee2mqtt/desk bulb" and "enabled_by_default" not in power_on
    linkquality = bulb[("sensor", "linkquality")]
    assert (linkquality["enabled_by_default"], linkquality["entity_category"]) == (False, "diagnostic")  # l. 189
    # getDevicePayload (l. 1836-1863): 2.x's model is the description, model_id the model, via the bridge.
    device = light["device"]
    assert (device["model"], device["model_id"]) == ("Hue white and color ambiance E26/E27", "9290022166")
    assert device["sw_version"] == mqtt_home.bulb.software_build_id
    assert device["via_device"] == f"zigbee2mqtt_bridge_{mqtt_home.bridge.coordinator_ieee}"

    sensor = await discovery_of(mqtt_probe, mqtt_home.sensor.ieee, 6)
    # An expose's category becomes the entity category (l. 1227-1233); voltage is off by default (l. 247-252).
    assert sensor[("sensor", "battery")]["entity_category"] == "diagnostic"
    assert sensor[("sensor", "voltage")]["enabled_by_default"] is False
    assert sensor[("sensor", "temperature")]["enabled_by_default"] is True  # a numeric sensor's, l. 1069
    assert "name" not in sensor[("sensor", "temperature")]  # a device class names it (l. 1246-1248)
    assert "sw_version" not in sensor[("sensor", "temperature")]["device"]  # no softwareBuildID: undefined
    radiator = await discovery_of(mqtt_probe, mqtt_home.thermostat.ieee, 4)
    assert radiator[("sensor", "pi_heating_demand")]["entity_category"] == "diagnostic"
    lock = await discovery_of(mqtt_probe, mqtt_home.lock.ieee, 3)
    assert set(lock) == {("lock", "lock"), ("sensor", "battery"), ("sensor", "linkquality")}


async def test_the_bridge_device_the_devices_point_to_is_announced(mqtt_probe, mqtt_home):
    ieee = mqtt_home.bridge.coordinator_ieee
    key = f"{encoded_base_topic('zigbee2mqtt')}_{ieee}"  # getDiscoveryTopic, l. 1898-1901
    assert key == f"1221051039810110150109113116116_{ieee}"
    bridge = await discovery_of(mqtt_probe, key, 8)

    # getBridgeEntity, l. 1942-2069.
    assert set(bridge) == {("binary_sensor", "connection_state"), ("binary_sensor", "restart_required"),
                           ("button", "restart"), ("select", "log_level"), ("sensor", "version"),
                           ("sensor", "coordinator_version"), ("sensor", "network_map"), ("switch", "permit_join")}
    device = bridge[("switch", "permit_join")]["device"]
    assert device == {"identifiers": [f"zigbee2mqtt_bridge_{ieee}"], "name": "Zigbee2MQTT Bridge",
                      "sw_version": "2.1.3", "model": "Bridge", "manufacturer": "Zigbee2MQTT",
                      "hw_version": "zStack3x0 20230507"}
    connection = bridge[("binary_sensor", "connection_state")]
    assert connection["state_topic"] == "zigbee2mqtt/bridge/state" and "availability" not in connection
    assert connection["unique_id"] == f"bridge_{ieee}_connection_state_zigbee2mqtt"
    assert connection["object_id"] == "zigbee2mqtt_bridge_connection_state"
    permit = bridge[("switch", "permit_join")]
    assert permit["command_topic"] == "zigbee2mqtt/bridge/request/permit_join"
    assert permit["availability"] == [{"topic": "zigbee2mqtt/bridge/state",
                                       "value_template": "{{ value_json.state }}"}]
    assert "state_topic" not in bridge[("button", "restart")]

    log_level = bridge[("select", "log_level")]
    assert log_level["options"] == ["error", "warning", "info", "debug"]
    mark = mqtt_probe.mark()
    command = log_level["command_template"].replace("{{ value }}", "warning")
    reply = await mqtt_probe.request(log_level["command_topic"], command, "zigbee2mqtt/bridge/response/options")
    assert reply.json() == {"data": {"restart_required": False}, "status": "ok"}
    info = await mqtt_probe.expect(log_level["state_topic"], lambda m: m.json()["log_level"] == "warning", after=mark)
    assert info.json()["config"]["advanced"]["log_level"] == "warning"


async def test_bridge_info_and_definitions_are_2_1_3s(mqtt_probe, mqtt_home):
    info = (await mqtt_probe.expect("zigbee2mqtt/bridge/info")).json()
    # 2.1.3's package.json pins these.
    assert (info["version"], info["zigbee_herdsman"], info["zigbee_herdsman_converters"]) == (
        "2.1.3", {"version": "3.2.7"}, {"version": "23.2.0"})
    definitions = await mqtt_probe.expect("zigbee2mqtt/bridge/definitions")  # bridge.ts l. 793-804
    assert definitions.retain and definitions.json()["custom_clusters"] == {}
    assert definitions.json()["clusters"]["genOnOff"]["ID"] == 6


async def test_options_answer_with_the_restart_they_need(mqtt_probe, mqtt_home):
    # bridgeOptions, bridge.ts l. 228-256; the envelope is utils.getResponse (lib/util/utils.ts l. 130-160).
    reply = await mqtt_probe.request("zigbee2mqtt/bridge/request/options",
                                     {"options": {"advanced": {"log_level": "debug"}}, "transaction": "o-1"},
                                     "zigbee2mqtt/bridge/response/options")
    assert reply.json() == {"data": {"restart_required": False}, "status": "ok", "transaction": "o-1"}
    mark = mqtt_probe.mark()
    reply = await mqtt_probe.request("zigbee2mqtt/bridge/request/options",
                                     {"options": {"mqtt": {"keepalive": 30}}}, "zigbee2mqtt/bridge/response/options")
    assert reply.json() == {"data": {"restart_required": True}, "status": "ok"}
    info = await mqtt_probe.expect("zigbee2mqtt/bridge/info", lambda m: m.json()["restart_required"], after=mark)
    assert info.json()["config"]["mqtt"] == {"base_topic": "zigbee2mqtt", "keepalive": 30}
    bad = await mqtt_probe.request("zigbee2mqtt/bridge/request/options",
                                   {"options": {"advanced": {"log_level": "loud"}}, "transaction": 9},
                                   "zigbee2mqtt/bridge/response/options")
    assert bad.json() == {"data": {}, "status": "error", "transaction": 9,
                          "error": "advanced/log_level must be equal to one of the allowed values"}
    bad = await mqtt_probe.request("zigbee2mqtt/bridge/request/options", "debug",
                                   "zigbee2mqtt/bridge/response/options")
    assert bad.json() == {"data": {}, "status": "error", "error": "Invalid payload"}
    bad = await mqtt_probe.request("zigbee2mqtt/bridge/request/options", {"options": {"homeassistant": True}},
                                   "zigbee2mqtt/bridge/response/options")  # 1.x's form; 2.x's schema says no
    assert bad.json() == {"data": {}, "status": "error", "error": "homeassistant must be object"}


async def test_groups_are_added_filled_emptied_and_removed(mqtt_probe, mqtt_home):
    async def ask(command: str, payload: dict) -> dict:
        reply = await mqtt_probe.request(f"zigbee2mqtt/bridge/request/{command}", payload,
                                         f"zigbee2mqtt/bridge/response/{command}")
        return reply.json()

    # groupAdd, bridge.ts l. 278-289: the lowest free ID.
    assert await ask("group/add", {"friendly_name": "upstairs", "transaction": "g-1"}) == {
        "data": {"friendly_name": "upstairs", "id": 2}, "status": "ok", "transaction": "g-1"}
    assert await ask("group/add", {"friendly_name": "downstairs"}) == {
        "data": {}, "status": "error", "error": "friendly_name 'downstairs' is already in use"}
    # groups.ts l. 252-320.
    mark = mqtt_probe.mark()
    assert await ask("group/members/add", {"group": "upstairs", "device": "desk bulb", "transaction": 3}) == {
        "data": {"device": "desk bulb", "endpoint": "default", "group": "upstairs"}, "status": "ok",
        "transaction": 3}
    groups = await mqtt_probe.expect("zigbee2mqtt/bridge/groups", lambda m: "upstairs" in m.text, after=mark)
    upstairs = next(g for g in groups.json() if g["friendly_name"] == "upstairs")
    assert upstairs["members"] == [{"ieee_address": mqtt_home.bulb.ieee, "endpoint": 1}]
    assert await ask("group/members/remove", {"group": "ghost", "device": "desk bulb"}) == {
        "data": {}, "status": "error", "error": "Group 'ghost' does not exist"}
    assert await ask("group/members/remove", {"group": 2, "device": "desk bulb"}) == {
        "data": {"device": "desk bulb", "endpoint": "default", "group": 2}, "status": "ok"}
    assert mqtt_home.bridge.groups[1].members == []
    # renameEntity, bridge.ts l. 544-582; removeEntity, l. 584-663.
    assert await ask("group/rename", {"from": "upstairs", "to": "attic", "transaction": 4}) == {
        "data": {"from": "upstairs", "to": "attic", "homeassistant_rename": False}, "status": "ok", "transaction": 4}
    assert await ask("group/rename", {"from": "attic", "to": "desk bulb"}) == {
        "data": {}, "status": "error", "error": "friendly_name 'desk bulb' is already in use"}
    assert await ask("group/remove", {"id": "attic"}) == {"data": {"id": "attic", "force": False}, "status": "ok"}
    assert [g.friendly_name for g in mqtt_home.bridge.groups] == ["downstairs"]
    assert await ask("group/remove", {"id": "attic"}) == {"data": {}, "status": "error",
                                                         "error": "Group 'attic' does not exist"}


async def test_coordinator_check_and_network_map_are_answered(mqtt_probe, mqtt_home):
    check = await mqtt_probe.request("zigbee2mqtt/bridge/request/coordinator_check", {"transaction": "c"},
                                     "zigbee2mqtt/bridge/response/coordinator_check")
    assert check.json() == {"data": {"missing_routers": []}, "status": "ok", "transaction": "c"}  # l. 270-276

    # networkMap.ts l. 23-58: a bare type means no routes; the raw map has a node per device.
    reply = await mqtt_probe.request("zigbee2mqtt/bridge/request/networkmap", "raw",
                                     "zigbee2mqtt/bridge/response/networkmap")
    data = reply.json()["data"]
    assert reply.json()["status"] == "ok" and (data["type"], data["routes"]) == ("raw", False)
    nodes = {node["friendlyName"]: node for node in data["value"]["nodes"]}
    assert set(nodes) == {"Coordinator", "living/climate", "living/radiator", "hall motion", "front door",
                          "desk bulb", "front lock"}
    assert nodes["desk bulb"]["definition"]["supports"].startswith("light (state, brightness")
    assert {(link["source"]["ieeeAddr"], link["target"]["ieeeAddr"]) for link in data["value"]["links"]} >= {
        (mqtt_home.lock.ieee, mqtt_home.bridge.coordinator_ieee)}
    graph = await mqtt_probe.request("zigbee2mqtt/bridge/request/networkmap", {"type": "graphviz", "routes": True,
                                                                               "transaction": 1},
                                     "zigbee2mqtt/bridge/response/networkmap")
    assert graph.json()["data"]["value"].startswith("digraph G {") and graph.json()["transaction"] == 1
    bad = await mqtt_probe.request("zigbee2mqtt/bridge/request/networkmap", {"type": "svg"},
                                   "zigbee2mqtt/bridge/response/networkmap")
    assert bad.json() == {"data": {}, "status": "error",
                          "error": "Type 'svg' not supported, allowed are: raw,graphviz,plantuml"}


async def test_home_assistant_online_republishes_every_state_30_s_later(mqtt_broker):
    home, clock = build_home(), ManualClock()
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("zigbee2mqtt/#")
    await home.bridge.start(SimContext(clock=clock, mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port))
    try:
        devices = (home.lock, home.door, home.motion, home.sensor, home.bulb, home.thermostat)
        await probe.expect("zigbee2mqtt/front lock")  # the last state the bridge announces on start
        await asyncio.sleep(0.1)  # the bridge's clock task begins waiting for its first tick
        mark = probe.mark()
        await clock.advance(30)  # the first tick: every device reports once
        for device in devices:
            await probe.expect(f"zigbee2mqtt/{device.friendly_name}", after=mark)
        mark = probe.mark()
        await clock.advance(30)  # a tick with no reports due
        await asyncio.sleep(0.3)
        assert probe.received("zigbee2mqtt/front lock", after=mark) == []

        probe.publish("homeassistant/status", "online")
        await asyncio.sleep(0.3)
        await clock.advance(25)
        await asyncio.sleep(0.3)
        assert probe.received("zigbee2mqtt/front lock", after=mark) == []  # 2.1.3 waits 30 s (l. 1776-1788)
        await clock.advance(5)
        for device in devices:
            await probe.expect(f"zigbee2mqtt/{device.friendly_name}", after=mark)
    finally:
        await home.bridge.stop()
        probe.close()
