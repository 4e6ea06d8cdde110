"""Issue 12, "no registry wiped by one bad message", and the rest of issue 11's discovery item: a hostile MQTT
publisher sends malformed Zigbee2MQTT lists, empty configs and floods of devices; the fleet stays as it was, a
device goes only when a valid list leaves it out, nothing meaningless is registered, and the number of discovered
devices is capped. What the config declares, and what the store restores, meet the same ownership rules.

Real parts throughout: the broker, the Zigbee2MQTT, Tasmota and SCPI simulators, the gateway and its store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import make_config, psu_entry, tasmota_entry, until

from gateway.app import Gateway
from gateway.devices import registry as registry_module
from gateway.devices.model import Device
from security.test_discovery_ownership import LOCK, publish, refusals
from simulators.base import SimContext
from simulators.runner import running_home
from simulators.scenario import load_scenario
from simulators.zigbee2mqtt import (
    Bulb,
    ClimateSensor,
    ContactSensor,
    DoorLock,
    MotionSensor,
    Thermostat,
    Zigbee2MqttBridge,
)

DEVICES = "zigbee2mqtt/bridge/devices"
COORDINATOR = {"ieee_address": "0x00124b0000000001", "type": "Coordinator", "friendly_name": "Coordinator"}


@pytest.fixture(autouse=True)
def warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)


@pytest.fixture
async def fleet(mqtt_broker) -> AsyncIterator[Zigbee2MqttBridge]:
    """Ten Zigbee devices behind one bridge, as in the simulated home."""
    bridge = Zigbee2MqttBridge(devices=[
        Bulb("kitchen", "Kitchen Ceiling Light"), Bulb("living", "Living Room Ceiling Light"),
        Bulb("hallway", "Hallway Ceiling Light"), DoorLock("lock", LOCK), Thermostat("radiator", "Living Room Radiator"),
        ClimateSensor("kitchen_climate", "Kitchen Climate Sensor"), ClimateSensor("lab_climate", "Lab Climate Sensor"),
        MotionSensor("motion", "Hallway Motion Sensor"), ContactSensor("window", "Kitchen Window"),
        ContactSensor("door", "Garage Door")])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield bridge
    await bridge.stop()


def listing(bridge: Zigbee2MqttBridge) -> list[dict[str, Any]]:
    """The bridge's bridge/devices list."""
    return [COORDINATOR] + [device.info() for device in bridge.devices]


def zigbee_keys(gateway: Gateway) -> set[str]:
    return {device.key for device in gateway.registry.all() if device.key.startswith("z2m:")}


async def fleet_gateway(tmp_path: Any, broker: Any, gateway_factory: Any) -> Gateway:
    gateway = await gateway_factory(make_config(tmp_path, broker=broker))
    await until(lambda: len(zigbee_keys(gateway)) == 10)
    return gateway


def without_ieee(entries: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    entries[index] = {key: value for key, value in entries[index].items() if key != "ieee_address"}
    return entries


GARBAGE = {
    "[{}]": lambda real: [{}],
    "an object": lambda real: {},
    "a string": lambda real: "devices",
    "null": lambda real: None,
    "not JSON": lambda real: b"[{devices",
    "no entry has an ieee_address": lambda real: [without_ieee(real, index)[index] for index in range(len(real))],
    "one entry has no ieee_address": lambda real: without_ieee(real, 4),
    "an ieee_address that is no address": lambda real: [*real[1:], {**real[1], "ieee_address": "#"}],
}


@pytest.mark.parametrize("payload", GARBAGE)
async def test_a_malformed_device_list_removes_no_device(tmp_path, mqtt_broker, fleet, gateway_factory, caplog,
                                                         payload):
    gateway = await fleet_gateway(tmp_path, mqtt_broker, gateway_factory)
    before = zigbee_keys(gateway)
    publish(mqtt_broker, DEVICES, GARBAGE[payload](listing(fleet)))
    await until(lambda: refusals(caplog, DEVICES))
    await gateway.settle_discovery()
    assert zigbee_keys(gateway) == before
    assert all(gateway.registry.by_key(key).online for key in before)
    assert len(refusals(caplog, DEVICES)) == 1


async def test_a_valid_list_that_leaves_a_device_out_removes_that_one_only(tmp_path, mqtt_broker, fleet,
                                                                          gateway_factory, caplog):
    gateway = await fleet_gateway(tmp_path, mqtt_broker, gateway_factory)
    entries = listing(fleet)
    dropped = entries.pop(4)  # the lock
    publish(mqtt_broker, DEVICES, entries)
    await until(lambda: len(zigbee_keys(gateway)) == 9)
    assert f"z2m:{dropped['ieee_address']}" not in zigbee_keys(gateway)
    assert refusals(caplog, DEVICES) == []


async def test_two_devices_that_swap_names_keep_one_owner_for_each_topic(tmp_path, mqtt_broker, fleet,
                                                                         gateway_factory, caplog):
    gateway = await fleet_gateway(tmp_path, mqtt_broker, gateway_factory)
    entries = listing(fleet)
    kitchen, living = entries[1], entries[2]
    kitchen["friendly_name"], living["friendly_name"] = living["friendly_name"], kitchen["friendly_name"]
    publish(mqtt_broker, DEVICES, entries)
    await until(lambda: gateway.registry.by_key(f"z2m:{kitchen['ieee_address']}").base_topic
                == "zigbee2mqtt/Living Room Ceiling Light")
    assert gateway.registry.by_key(f"z2m:{living['ieee_address']}").base_topic == "zigbee2mqtt/Kitchen Ceiling Light"
    assert refusals(caplog, DEVICES) == []
    assert [reason for device in gateway.registry.all() if (reason := gateway.registry.conflict(device))] == []


INTRUDERS = {
    "a name inside the lock's topics": f"{LOCK}/set",
    "the lock's own name": LOCK,
    "the bridge's name": "bridge",
}


@pytest.mark.parametrize("intruder", INTRUDERS)
async def test_a_listed_device_cannot_take_another_ones_namespace(tmp_path, mqtt_broker, fleet, gateway_factory,
                                                                  caplog, intruder):
    gateway = await fleet_gateway(tmp_path, mqtt_broker, gateway_factory)
    lock = gateway.registry.get("hallway_front_door_lock")
    entries = listing(fleet)
    extra = {**entries[1], "ieee_address": "0x00158d00000bad01", "friendly_name": INTRUDERS[intruder]}
    publish(mqtt_broker, DEVICES, [extra, *entries])  # listed first: it still cannot push the owner out
    await until(lambda: refusals(caplog, f"{DEVICES} ({INTRUDERS[intruder]})"))
    assert gateway.registry.by_key("z2m:0x00158d00000bad01") is None
    assert gateway.registry.get("hallway_front_door_lock") == lock
    assert len(zigbee_keys(gateway)) == 10


MEANINGLESS = {
    "an empty Home Assistant config": ("homeassistant/switch/x/config", {}),
    "a Home Assistant config with a name only": ("homeassistant/switch/y/config",
                                                 {"name": "Office Fan", "dev": {"ids": ["y"], "name": "Office Fan"}}),
    "an empty Tasmota config": ("tasmota/discovery/AABBCCDDEEFF/config", {}),
}


@pytest.mark.parametrize("case", MEANINGLESS)
async def test_an_empty_or_meaningless_config_registers_nothing(tmp_path, mqtt_broker, gateway_factory, caplog,
                                                                case):
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    topic, config = MEANINGLESS[case]
    publish(mqtt_broker, topic, config)
    await until(lambda: refusals(caplog, topic))
    assert gateway.registry.all() == []


async def test_discovered_devices_are_capped_with_one_log_line(tmp_path, mqtt_broker, gateway_factory, caplog,
                                                              monkeypatch):
    monkeypatch.setattr(registry_module, "MAX_DISCOVERED_DEVICES", 3)
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))

    def announce(number: int) -> None:
        publish(mqtt_broker, f"homeassistant/switch/flood{number}/config",
                {"name": "Plug", "cmd_t": f"flood/{number}/set", "dev": {"ids": [f"flood{number}"],
                                                                       "name": f"Flood Plug {number}"}})

    limit = "discovered devices reached the limit of 3"
    for number in range(6):
        announce(number)
    await until(lambda: any(limit in record.getMessage() for record in caplog.records))
    for number in range(6, 9):
        announce(number)
    announce(8)
    await gateway.settle_discovery()
    assert len(gateway.registry.all()) == 3
    assert sum(limit in record.getMessage() for record in caplog.records) == 1
    assert refusals(caplog, "flood") == []  # nothing logged per config


async def test_a_stored_device_holding_every_topic_is_not_restored(tmp_path, mqtt_broker, fleet, caplog):
    config = make_config(tmp_path, broker=mqtt_broker)
    async with Gateway(config) as first:
        await until(lambda: len(zigbee_keys(first)) == 10)
        forged = Device(id="evil_plug", key="tasmota:AABBCCDDEEFF", name="Evil Plug", kind="tasmota_plug",
                        transport="mqtt", base_topic="", topics=["#"], source="mqtt")
        first.store.save_devices([(forged.id, forged.key, False, forged.model_dump_json())])
    async with Gateway(config) as second:
        assert second.registry.get("evil_plug") is None
        assert len(zigbee_keys(second)) == 10
        assert any("stored device evil_plug was dropped" in record.getMessage() for record in caplog.records)


async def test_discovery_cannot_take_a_declared_devices_topics(tmp_path, mqtt_broker, tasmota, gateway_factory,
                                                               caplog):
    gateway = await gateway_factory(make_config(tmp_path, devices=[tasmota_entry(tasmota)], broker=mqtt_broker))
    config_topic = f"tasmota/discovery/{tasmota.mac}/config"
    await until(lambda: refusals(caplog, config_topic))
    assert [device.key for device in gateway.registry.all()] == [f"static:{tasmota.id}"]
    assert "belongs to device 'tv_plug'" in refusals(caplog, config_topic)[0]


async def test_discovery_cannot_take_a_declared_devices_serial_port(tmp_path, psu, gateway_factory, caplog):
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu)],
                                                discovery={"mqtt": False, "serial_ports": [psu.port]}))
    assert [device.id for device in gateway.registry.all()] == [psu.id]
    assert any(f"serial port {psu.port} was not added" in record.getMessage() and "belongs to device" in
               record.getMessage() for record in caplog.records)


async def test_the_simulated_home_and_lab_are_discovered_with_one_owner_for_every_topic(tmp_path, mqtt_broker,
                                                                                       gateway_factory, caplog):
    specs = [spec for name in ("home", "lab") for spec in load_scenario(name).devices]
    mqtt_ids = [spec.id for spec in specs if spec.kind.startswith(("zigbee_", "tasmota_"))]
    async with running_home(specs, mqtt_broker.host, mqtt_broker.port, mdns=False):
        gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
        await until(lambda: set(mqtt_ids) <= {device.id for device in gateway.registry.all()})
        await gateway.settle_discovery()
    devices = gateway.registry.all()
    assert [f"{device.id}: {reason}" for device in devices if (reason := gateway.registry.conflict(device))] == []
    assert not any(topic.startswith(("pyuse/", "$", "homeassistant/", "tasmota/discovery/", "zigbee2mqtt/bridge/"))
                   or topic in ("#", "+") for device in devices for topic in device.topics)
    assert [record.getMessage() for record in caplog.records if record.name.startswith("gateway.discovery")] == []
    assert sorted(device.id for device in devices) == sorted(mqtt_ids)
