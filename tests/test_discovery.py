"""Discovery over MQTT against real simulators and a real broker: Tasmota, Zigbee2MQTT, Home Assistant."""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import code_reply, make_config, until
from gateway.app import Gateway
from simulators.base import SimContext
from simulators.tasmota import TasmotaDimmer, TasmotaPlug
from simulators.zigbee2mqtt import Bulb, ClimateSensor, ContactSensor, DoorLock, MotionSensor, Thermostat, \
    Zigbee2MqttBridge


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
