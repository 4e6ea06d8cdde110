"""Discovery over MQTT against real simulators and a real broker: Tasmota, Zigbee2MQTT, Home Assistant."""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as paho
import pytest
from conftest import code_reply, make_config, until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.config import DeviceEntry
from simulators.base import SimContext
from simulators.tasmota import TasmotaDimmer, TasmotaPlug
from simulators.zigbee2mqtt import (
    Bulb,
    ClimateSensor,
    ContactSensor,
    DoorLock,
    MotionSensor,
    Thermostat,
    Zigbee2MqttBridge,
)


def publisher(broker) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def kinds(gateway: Gateway) -> dict[str, str]:
    return {device.id: device.kind for device in gateway.registry.all()}


@pytest.fixture
async def zigbee(mqtt_broker):
    bridge = Zigbee2MqttBridge(devices=[
        Bulb("bulb", "Kitchen Ceiling Light"), DoorLock("lock", "Front Door Lock"),
        Thermostat("radiator", "Living Room Radiator"), ClimateSensor("climate", "Kitchen Climate Sensor"),
        MotionSensor("motion", "Hallway Motion Sensor"), ContactSensor("window", "Kitchen Window")])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield bridge
    await bridge.stop()


async def test_tasmota_devices_are_found_with_their_kind_topics_and_availability(tmp_path, mqtt_broker,
                                                                                 gateway_factory):
    context = SimContext(mqtt_port=mqtt_broker.port)
    plug = TasmotaPlug("kettle", "tasmota_0A0B0C", name="Kitchen Kettle")
    lamp = TasmotaDimmer("lamp", "tasmota_0D0E0F", name="Bedroom 2 Bedside Lamp")
    for device in (plug, lamp):
        await device.start(context)
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    try:
        await until(lambda: {"kitchen_kettle", "bedroom_2_bedside_lamp"} <= set(kinds(gateway)))
        kettle = gateway.registry.get("kitchen_kettle")
        assert (kettle.kind, kettle.area, kettle.base_topic) == ("tasmota_plug", "kitchen", "tasmota_0A0B0C")
        assert kettle.topics == ["cmnd/tasmota_0A0B0C/#", "stat/tasmota_0A0B0C/#", "tele/tasmota_0A0B0C/#"]
        assert gateway.registry.get("bedroom_2_bedside_lamp").kind == "tasmota_dimmer"
        await until(lambda: kettle.state.get("power") == "OFF")

        plug.apply({"fault": "offline"})
        await until(lambda: gateway.registry.get("kitchen_kettle").online is False)
        plug.apply({"fault": "none"})
        await until(lambda: gateway.registry.get("kitchen_kettle").online is True)

        client = publisher(mqtt_broker)
        client.publish(f"tasmota/discovery/{lamp.mac}/config", b"", retain=True).wait_for_publish(5)
        await until(lambda: gateway.registry.get("bedroom_2_bedside_lamp") is None)
        client.loop_stop()
    finally:
        for device in (plug, lamp):
            await device.stop()


async def test_zigbee2mqtt_devices_are_found_once_each_with_the_right_kind(tmp_path, mqtt_broker, zigbee,
                                                                          gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    expected = {"kitchen_ceiling_light": "zigbee_bulb", "front_door_lock": "zigbee_lock",
                "living_room_radiator": "zigbee_thermostat", "kitchen_climate_sensor": "zigbee_climate_sensor",
                "hallway_motion_sensor": "zigbee_motion_sensor", "kitchen_window": "zigbee_contact_sensor"}
    await until(lambda: kinds(gateway) == expected)
    await gateway.settle_discovery()
    assert kinds(gateway) == expected  # the bridge's Home Assistant configs did not add copies
    lock = gateway.registry.get("front_door_lock")
    assert lock.base_topic == "zigbee2mqtt/Front Door Lock" and "zigbee2mqtt/Front Door Lock/set" in lock.topics
    assert gateway.registry.get("kitchen_ceiling_light").area == "kitchen"
    zigbee.devices[3].apply({"temperature": 23.5})  # a sleepy sensor reports when it likes; make it report
    await until(lambda: gateway.registry.get("kitchen_climate_sensor").state.get("temperature") == 23.5)

    zigbee.devices[1].apply({"fault": "offline"})  # the lock
    await until(lambda: gateway.registry.get("front_door_lock").online is False)


async def test_a_model_controls_a_discovered_zigbee_bulb(tmp_path, mqtt_broker, zigbee, scripted_llm,
                                                         gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "kitchen light", "replies": [code_reply(
        'bulb = devices["kitchen_ceiling_light"]\n'
        'bulb.request(f"{bulb.base_topic}/set", {"state": "ON", "brightness": 127}, reply_topic=bulb.base_topic)\n'
        'final_answer("on")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, broker=mqtt_broker))
    await until(lambda: gateway.registry.get("kitchen_ceiling_light") is not None)

    result = await gateway.run_task("turn on the kitchen light at half brightness")

    assert result.status == "done", result.error
    assert zigbee.devices[0].values["state"] == "ON" and zigbee.devices[0].values["brightness"] == 127
    await until(lambda: gateway.registry.get("kitchen_ceiling_light").state.get("state") == "ON")


async def test_home_assistant_discovery_with_abbreviations_and_a_base_topic(tmp_path, mqtt_broker,
                                                                           gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    client = publisher(mqtt_broker)
    config = {"~": "garden/pump", "name": "Pump", "cmd_t": "~/set", "stat_t": "~/state", "uniq_id": "pump01",
              "avty_t": "~/availability", "dev": {"ids": ["garden01"], "name": "Garden Pump", "sa": "Garden"}}
    client.publish("homeassistant/switch/garden01/pump/config", json.dumps(config), retain=True).wait_for_publish(5)
    client.publish("garden/pump/availability", "online", retain=True).wait_for_publish(5)
    client.publish("garden/pump/state", "OFF", retain=True).wait_for_publish(5)

    await until(lambda: gateway.registry.get("garden_pump") is not None)
    pump = gateway.registry.get("garden_pump")
    assert (pump.kind, pump.area) == ("ha_switch", "Garden")
    assert set(pump.topics) == {"garden/pump/set", "garden/pump/state"}  # its availability is read, not owned
    assert pump.api["main"]["command_topic"] == "garden/pump/set" and pump.api["main"]["payload_on"] == "ON"
    await until(lambda: gateway.registry.get("garden_pump").state == {"Pump": "OFF"})
    client.publish("garden/pump/availability", "offline", retain=True).wait_for_publish(5)
    await until(lambda: gateway.registry.get("garden_pump").online is False)

    client.publish("homeassistant/switch/garden01/pump/config", b"", retain=True).wait_for_publish(5)
    await until(lambda: gateway.registry.get("garden_pump") is None)
    client.loop_stop()


async def test_a_restart_restores_the_registry_without_duplicates(tmp_path, mqtt_broker, zigbee):
    config = make_config(tmp_path, broker=mqtt_broker)
    async with Gateway(config) as first:
        await until(lambda: len(first.registry.all()) == 6)
        before = {device.key: device.id for device in first.registry.all()}
    async with Gateway(config) as second:
        assert {device.key: device.id for device in second.registry.all()} == before  # restored from the store
        await second.settle_discovery()
        assert {device.key: device.id for device in second.registry.all()} == before  # rediscovered, same ids


async def test_an_id_is_never_reused_for_another_device(tmp_path, mqtt_broker, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    client = publisher(mqtt_broker)

    def announce(identity: str) -> None:
        config = {"name": "Lamp", "cmd_t": f"{identity}/set", "dev": {"ids": [identity], "name": "Porch Lamp"}}
        client.publish(f"homeassistant/light/{identity}/config", json.dumps(config), retain=True).wait_for_publish(5)

    announce("lamp_a")
    await until(lambda: gateway.registry.get("porch_lamp") is not None)
    client.publish("homeassistant/light/lamp_a/config", b"", retain=True).wait_for_publish(5)
    await until(lambda: gateway.registry.get("porch_lamp") is None)
    announce("lamp_b")
    await until(lambda: any(device.key == "ha:lamp_b" for device in gateway.registry.all()))
    assert gateway.registry.by_key("ha:lamp_b").id != "porch_lamp"
    announce("lamp_a")  # the first lamp comes back: it gets its old id again
    await until(lambda: gateway.registry.get("porch_lamp") is not None)
    assert gateway.registry.get("porch_lamp").key == "ha:lamp_a"
    client.loop_stop()


HOSTILE_TOPICS = ["tasmota/discovery/AABBCCDDEEFF/config", "zigbee2mqtt/bridge/devices",
                  "homeassistant/switch/x/config", "homeassistant/light/node/obj/config",
                  "homeassistant/vacuum/x/config", "zigbee2mqtt/bridge/state", "tele/tasmota_0A0B0C/STATE"]
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
                       lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner,
                                                                                       max_size=8), max_leaves=30)
FIELDS = st.fixed_dictionaries({}, optional={
    "mac": st.text(max_size=20), "t": st.text(max_size=80), "dn": st.text(max_size=2000), "lt_st": JSONISH,
    "friendly_name": st.text(max_size=300), "ieee_address": st.text(max_size=50), "definition": JSONISH,
    "name": st.text(max_size=5000), "cmd_t": st.text(max_size=300), "dev": JSONISH, "~": st.text(max_size=50)})


@pytest.mark.parametrize("topic", HOSTILE_TOPICS)
async def test_malformed_discovery_payloads_never_crash_discovery(tmp_path, mqtt_broker, topic, caplog):
    gateway = Gateway(make_config(tmp_path, broker=mqtt_broker))
    await gateway.start()
    handlers = {"tasmota": gateway.mqtt_discovery._tasmota_config, "zigbee2mqtt": gateway.mqtt_discovery._z2m_message,
                "homeassistant": gateway.mqtt_discovery._ha_config, "tele": gateway.mqtt_discovery._tasmota_message}
    handle = gateway.mqtt_discovery._guarded(handlers[topic.split("/")[0]])
    from gateway.transports.mqtt_message import Message

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(payload=st.one_of(st.binary(max_size=500), JSONISH.map(lambda v: json.dumps(v).encode()),
                             FIELDS.map(lambda v: json.dumps(v).encode()),
                             st.lists(FIELDS, max_size=4).map(lambda v: json.dumps(v).encode())))
    def feed(payload: bytes) -> None:
        handle(Message(topic, payload, True))

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.discovery.mqtt"):
            feed()
        for device in gateway.registry.all():
            assert len(device.name) <= 100 and all(ord(char) >= 32 for char in device.name)
            assert all("#" not in t and "+" not in t for t in device.topics if not t.endswith("/#"))
        warnings = [record.message for record in caplog.records if record.name == "gateway.discovery.mqtt"]
        assert len(warnings) == len(set(warnings))  # each topic is logged once, not once per message
    finally:
        await gateway.close()


async def test_serial_ports_are_identified_scpi_and_korad(tmp_path, gateway_factory):
    from simulators.korad import KoradPowerSupply
    from simulators.scpi import ScpiMultimeter, ScpiPowerSupply

    instruments = [ScpiPowerSupply("psu"), ScpiMultimeter("dmm"), KoradPowerSupply("korad")]
    for instrument in instruments:
        await instrument.start()
    try:
        ports = [instrument.port for instrument in instruments]
        gateway = await gateway_factory(make_config(tmp_path, discovery={"serial_ports": ports + ["/dev/null"]}))
        found = {device.serial_port: device for device in gateway.registry.all()}
        assert [found[port].kind for port in ports] == ["scpi_psu", "scpi_dmm", "korad_psu"]
        assert found[ports[0]].name == "PYUSE SIM-PSU2" and found[ports[2]].name == "KORADKA3005PV2.0"
        assert found[ports[2]].baudrate == 9600
        assert "/dev/null" not in found
    finally:
        for instrument in instruments:
            await instrument.stop()


async def test_a_serial_instrument_keeps_its_id_and_area_when_its_port_changes(tmp_path):
    """Known by its serial number, not its port: after a restart on another port it is the same device (so the
    area the config gives its id still holds), and no second copy; the port that no longer answers is logged."""
    from simulators.scpi import ScpiPowerSupply

    only_serial = {"mqtt": False, "mdns": False, "instruments": False}
    before = ScpiPowerSupply("psu")
    await before.start()
    async with Gateway(make_config(tmp_path, discovery={**only_serial, "serial_ports": [before.port]})) as gateway:
        [found] = gateway.registry.all()
    supply = ScpiPowerSupply("psu")  # the same instrument (same serial number), on the next free pty
    await supply.start()
    await before.stop()
    try:
        assert supply.port != before.port
        config = make_config(tmp_path, discovery={**only_serial, "serial_ports": [before.port, supply.port]},
                             devices=[DeviceEntry(id=found.id, area="bench")])
        async with Gateway(config) as gateway:
            [again] = gateway.registry.all()
            assert (again.id, again.area, again.serial_port, again.online) == (found.id, "bench", supply.port, True)
    finally:
        await supply.stop()


async def test_mdns_devices_are_found_probed_and_named_by_themselves(tmp_path, gateway_factory):
    """Announcements cross the loopback interface only (interfaces=["127.0.0.1"] on both sides)."""
    from zeroconf.asyncio import AsyncZeroconf

    from simulators.elgato import ElgatoKeyLight
    from simulators.shelly import ShellySwitch
    from simulators.wled import WledStrip

    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    context = SimContext(zeroconf=zeroconf)
    devices = [ShellySwitch("desk_plug", name="Desk Plug"), WledStrip("tv_strip", name="TV Backlight"),
               ElgatoKeyLight("key_light", name="Office Key Light")]
    for device in devices:
        await device.start(context)
    try:
        gateway = await gateway_factory(make_config(tmp_path, discovery={"mqtt": False, "mdns": True}))
        expected = {"desk_plug": "shelly_switch", "tv_backlight": "wled_strip", "office_key_light": "elgato_light"}
        await until(lambda: expected.items() <= kinds(gateway).items(), timeout=15)
        plug = gateway.registry.get("desk_plug")
        assert (plug.host, plug.port) == (devices[0].host, devices[0].port)  # one device for its two services
        assert gateway.registry.get("office_key_light").area == "office"

        await devices[0].stop()  # goodbye packets
        await until(lambda: gateway.registry.get("desk_plug").online is False, timeout=15)
    finally:
        for device in devices[1:]:
            await device.stop()
        await zeroconf.async_close()


async def test_every_zigbee2mqtt_bridge_is_followed_whatever_its_base_topic(tmp_path, mqtt_broker, gateway_factory):
    """Two bridges pairing devices with the same IEEE address and friendly name, and a third on a base topic of its
    own: every device is found, each owns only its own bridge's topics, and none is mistaken for another."""
    context = SimContext(mqtt_port=mqtt_broker.port)
    bridges = [Zigbee2MqttBridge("zigbee2mqtt", [Bulb("bulb", "Kitchen Light")]),
               Zigbee2MqttBridge("zigbee2mqtt_2", [Bulb("bulb", "Kitchen Light")], base_topic="zigbee2mqtt_2"),
               Zigbee2MqttBridge("garage", [ContactSensor("door", "Garage Door")], base_topic="garage_zigbee")]
    for bridge in bridges:
        await bridge.start(context)
    try:
        gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
        await until(lambda: len(gateway.registry.all()) == 3)
        await gateway.settle_discovery()
        devices = {device.base_topic: device for device in gateway.registry.all()}
        assert set(devices) == {"zigbee2mqtt/Kitchen Light", "zigbee2mqtt_2/Kitchen Light", "garage_zigbee/Garage Door"}
        first, second = devices["zigbee2mqtt/Kitchen Light"], devices["zigbee2mqtt_2/Kitchen Light"]
        assert first.key != second.key and first.id != second.id and second.key.startswith("z2m:zigbee2mqtt_2:")
        assert all(topic.startswith("zigbee2mqtt_2/") for topic in second.topics)
        assert devices["garage_zigbee/Garage Door"].kind == "zigbee_contact_sensor"

        bridges[1].devices[0].apply({"fault": "offline"})
        await until(lambda: gateway.registry.get(second.id).online is False)
        assert gateway.registry.get(first.id).online is True
        bridges[2].devices[0].apply({"contact": False})
        await until(lambda: gateway.registry.get(devices["garage_zigbee/Garage Door"].id).state.get("contact")
                    is False)
    finally:
        for bridge in bridges:
            await bridge.stop()


async def test_a_base_topic_becomes_a_bridge_only_when_nothing_else_holds_it(tmp_path, mqtt_broker, gateway_factory):
    """A forged bridge/info or bridge/devices cannot take Tasmota's prefixes, the gateway's own or a device's topics;
    a bridge that is followed keeps its base topic from Home Assistant configs."""
    client = publisher(mqtt_broker)
    pump = {"name": "Pump", "cmd_t": "garden/pump/set", "stat_t": "garden/pump/state", "uniq_id": "pump01",
            "dev": {"ids": ["garden01"], "name": "Garden Pump"}}
    client.publish("homeassistant/switch/garden01/pump/config", json.dumps(pump), retain=True).wait_for_publish(5)
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    await until(lambda: gateway.registry.get("garden_pump") is not None)
    forged_device = {"ieee_address": "0x00124b0000000001", "friendly_name": "pump", "type": "EndDevice",
                     "definition": {"model": "X", "vendor": "Y", "exposes": [{"type": "switch", "features": [
                         {"type": "binary", "property": "state", "access": 7}]}]}}
    forged_list = json.dumps([{"ieee_address": "0x00124b0000000000", "type": "Coordinator",
                               "friendly_name": "Coordinator"}, forged_device])
    for base in ("tele", "pyuse", "homeassistant", "garden"):
        client.publish(f"{base}/bridge/info", json.dumps({"version": "2.1.3"}), retain=True).wait_for_publish(5)
        client.publish(f"{base}/bridge/devices", forged_list, retain=True).wait_for_publish(5)
    client.publish("nothing/bridge/info", json.dumps({"state": "online"}), retain=True).wait_for_publish(5)
    client.publish("lab/bridge/info", json.dumps({"version": "2.1.3"}), retain=True).wait_for_publish(5)
    await gateway.settle_discovery()
    assert [device.id for device in gateway.registry.all()] == ["garden_pump"]

    plug = TasmotaPlug("kettle", "tasmota_0A0B0C", name="Kitchen Kettle")  # tele/ is still Tasmota's
    await plug.start(SimContext(mqtt_port=mqtt_broker.port))
    try:
        await until(lambda: gateway.registry.get("kitchen_kettle") is not None)
    finally:
        await plug.stop()
    squatter = {"name": "Squat", "cmd_t": "lab/pump/set", "uniq_id": "squat01", "dev": {"ids": ["squat01"]}}
    neighbour = {"name": "Fan", "cmd_t": "shed/fan/set", "uniq_id": "fan01", "dev": {"ids": ["fan01"]}}
    for config in (squatter, neighbour):
        client.publish(f"homeassistant/switch/{config['uniq_id']}/x/config", json.dumps(config),
                       retain=True).wait_for_publish(5)
    await until(lambda: gateway.registry.get("fan") is not None)
    await gateway.settle_discovery()
    assert gateway.registry.get("squat") is None  # lab/ is the lab bridge's devices' alone
    client.loop_stop()


async def test_a_configured_base_topic_of_two_levels_is_followed(tmp_path, mqtt_broker, gateway_factory):
    bridge = Zigbee2MqttBridge("upstairs", [Bulb("bulb", "Attic Light")], base_topic="home/zigbee")
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    try:
        gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker,
                                                    discovery={"zigbee2mqtt_topic": "home/zigbee"}))
        await until(lambda: gateway.registry.get("attic_light") is not None)
        assert gateway.registry.get("attic_light").base_topic == "home/zigbee/Attic Light"
    finally:
        await bridge.stop()
