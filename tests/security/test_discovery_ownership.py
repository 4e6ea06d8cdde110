"""Issue 11, "Discovery cannot grant power": a hostile MQTT publisher (or a device on the LAN) writes discovery
configs that name another device's topics, wildcards, the gateway's own topics or the discovery prefixes. None of
them may reach a handle: each is refused and logged once, the first owner keeps what it holds, and a topic has
exactly one owner, so the danger rules of that owner apply whichever handle a job uses, and a hidden device is
reachable through none.

Everything is real: a Mosquitto (or amqtt) broker, the Zigbee2MQTT and Tasmota simulators, the gateway with its
sandbox, broker, policy and fast path.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import make_config, shelly_entry, until
from zeroconf.asyncio import AsyncZeroconf

from gateway.app import Gateway
from gateway.policy import ConfirmationRequest
from simulators.base import SimContext
from simulators.shelly import ShellySwitch
from simulators.tasmota import TasmotaPlug
from simulators.zigbee2mqtt import Bulb, DoorLock, Zigbee2MqttBridge

LOCK = "Hallway Front Door Lock"
LOCK_ID = "hallway_front_door_lock"
LOCK_TOPIC = f"zigbee2mqtt/{LOCK}"
UNLOCK = json.dumps({"state": "UNLOCK"})


@contextmanager
def publisher(broker: Any) -> Iterator[paho.Client]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
        client.loop_stop()


def publish(broker: Any, topic: str, payload: Any) -> None:
    """A retained message, as discovery configs are."""
    with publisher(broker) as client:
        text = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        client.publish(topic, text, qos=1, retain=True).wait_for_publish(5)


def ha_switch(name: str, command_topic: str, payload_on: str = "ON", identity: str = "fan01") -> dict[str, Any]:
    return {"name": name, "cmd_t": command_topic, "pl_on": payload_on, "pl_off": "OFF", "uniq_id": identity,
            "dev": {"ids": [identity], "name": name}}


def refusals(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("gateway.discovery") and topic in record.getMessage()]


def locked(bridge: Zigbee2MqttBridge) -> bool:
    return bridge.devices[0].values["state"] == "LOCK"


@pytest.fixture
async def hallway(mqtt_broker) -> AsyncIterator[Zigbee2MqttBridge]:
    bridge = Zigbee2MqttBridge(devices=[DoorLock("lock", LOCK), Bulb("light", "Hallway Ceiling Light")])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield bridge
    await bridge.stop()


@pytest.fixture(autouse=True)
def warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)


async def hallway_gateway(tmp_path: Any, broker: Any, gateway_factory: Any, **sections: Any) -> Gateway:
    gateway = await gateway_factory(make_config(tmp_path, broker=broker, **sections))
    await until(lambda: gateway.registry.get(LOCK_ID) is not None)
    return gateway


@pytest.mark.parametrize("hidden", [False, True], ids=["lock exposed", "lock hidden"])
async def test_a_switch_config_on_the_locks_topic_cannot_unlock_the_door(tmp_path, mqtt_broker, hallway,
                                                                        gateway_factory, caplog, hidden):
    policy = {"hide": [LOCK_ID]} if hidden else {}
    gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory, policy=policy)
    forged = "homeassistant/switch/office_fan/config"
    publish(mqtt_broker, forged, ha_switch("Office Fan", f"{LOCK_TOPIC}/set", UNLOCK))
    # The real fan, on its own topic: the fast path below does act on "the office fan".
    publish(mqtt_broker, "homeassistant/switch/office_fan_2/config", ha_switch("Office Fan", "office/fan/set",
                                                                               identity="fan02"))
    await until(lambda: refusals(caplog, forged) and gateway.registry.by_key("ha:fan02") is not None)
    assert gateway.registry.by_key("ha:fan01") is None
    assert f"belongs to device '{LOCK_ID}'" in refusals(caplog, forged)[0]

    with publisher(mqtt_broker) as client:
        sent: list[str] = []
        client.on_message = lambda _client, _data, message: sent.append(message.payload.decode())
        client.subscribe("office/fan/set")
        result = await gateway.run_task("turn on the office fan")
        await until(lambda: sent == ["ON"])

    assert result.status == "done", result.error
    assert locked(hallway)
    assert len(refusals(caplog, forged)) == 1


async def test_a_config_that_comes_before_the_bridge_cannot_squat_a_zigbee_devices_topics(
        tmp_path, mqtt_broker, gateway_factory, caplog):
    forged = "homeassistant/switch/squatter/config"
    publish(mqtt_broker, forged, ha_switch("Office Fan", f"{LOCK_TOPIC}/set", UNLOCK))
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    await until(lambda: refusals(caplog, forged))
    assert "reserved for the Zigbee2MQTT bridge's devices" in refusals(caplog, forged)[0]

    bridge = Zigbee2MqttBridge(devices=[DoorLock("lock", LOCK)])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    try:
        await until(lambda: gateway.registry.get(LOCK_ID) is not None)
        assert f"{LOCK_TOPIC}/set" in gateway.registry.get(LOCK_ID).topics
        assert gateway.registry.by_key("ha:fan01") is None
    finally:
        await bridge.stop()


HOSTILE_HA_TOPICS = {
    "every topic": "#",
    "a wildcard level": "home/+/set",
    "the gateway's task topic": "pyuse/pyuse/task",
    "the gateway's confirm topic": "pyuse/pyuse/confirm/c1/set",
    "the broker's own": "$SYS/broker/clients/total",
    "Home Assistant discovery": "homeassistant/switch/x/config",
    "the Zigbee2MQTT bridge": "zigbee2mqtt/bridge/request/permit_join",
    "a topic below the lock": f"{LOCK_TOPIC}/set/state",
    "the group topic every Tasmota obeys": "cmnd/tasmotas/POWER",
}


@pytest.mark.parametrize("target", HOSTILE_HA_TOPICS)
async def test_a_home_assistant_config_cannot_claim_what_is_not_its_own(tmp_path, mqtt_broker, hallway,
                                                                      gateway_factory, caplog, target):
    gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory)
    forged = "homeassistant/switch/forged/config"
    config = ha_switch("Office Fan", "office/fan/set") | {"stat_t": HOSTILE_HA_TOPICS[target]}
    publish(mqtt_broker, forged, config)
    await until(lambda: refusals(caplog, forged))
    assert gateway.registry.by_key("ha:fan01") is None
    assert all(HOSTILE_HA_TOPICS[target] not in device.topics or device.id == LOCK_ID
               for device in gateway.registry.all())


def tasmota_config(ft: str, tp: list[str] | None = None, topic: str = "evil_plug") -> tuple[str, dict[str, Any]]:
    """A Tasmota plug's discovery config as the firmware writes it, with the full topic and prefixes given."""
    plug = TasmotaPlug("evil", topic)
    config = plug.discovery_config() | {"ft": ft}
    if tp is not None:
        config["tp"] = tp
    return f"tasmota/discovery/{plug.mac}/config", config


HOSTILE_FULL_TOPICS = {
    "the group topic every Tasmota obeys": ("%prefix%/%topic%/", None, "tasmotas"),
    "empty (every topic)": ("", None),
    "a wildcard": ("#", None),
    "a wildcard for its topic": ("%prefix%/+/", None),
    "without its own topic": ("%prefix%/kitchen/", None),
    "without its prefix": ("%topic%/", None),
    "under the gateway's topics": ("pyuse/%prefix%/%topic%/", None),
    "a prefix that is the gateway's": ("%prefix%/%topic%/", ["pyuse", "stat", "tele"]),
    "under the broker's $SYS": ("$SYS/%prefix%/%topic%/", None),
    "under Home Assistant discovery": ("homeassistant/%prefix%/%topic%/", None),
    "under Zigbee2MQTT": ("zigbee2mqtt/%prefix%/%topic%/", None),
    "inside the lock's topics": (f"{LOCK_TOPIC}/%prefix%/%topic%/", None),
}


@pytest.mark.parametrize("case", HOSTILE_FULL_TOPICS)
async def test_a_tasmota_full_topic_outside_its_own_namespace_is_refused(tmp_path, mqtt_broker, hallway,
                                                                          gateway_factory, caplog, case):
    gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory)
    config_topic, config = tasmota_config(*HOSTILE_FULL_TOPICS[case])
    publish(mqtt_broker, config_topic, config)
    await until(lambda: refusals(caplog, config_topic))
    assert gateway.registry.by_key(f"tasmota:{config['mac']}") is None
    assert [device.id for device in gateway.registry.all() if device.transport == "mqtt"] == sorted(
        [LOCK_ID, "hallway_ceiling_light"])


async def test_a_second_tasmota_with_the_same_topic_is_refused_and_the_first_keeps_it(tmp_path, mqtt_broker,
                                                                                    gateway_factory, caplog):
    first_topic, first = tasmota_config("%prefix%/%topic%/")
    second = TasmotaPlug("impostor", "evil_plug")
    second_topic = f"tasmota/discovery/{second.mac}/config"
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
    publish(mqtt_broker, first_topic, first)
    await until(lambda: gateway.registry.by_key(f"tasmota:{first['mac']}") is not None)
    publish(mqtt_broker, second_topic, second.discovery_config())
    await until(lambda: refusals(caplog, second_topic))
    assert gateway.registry.by_key(f"tasmota:{second.mac}") is None
    owner = gateway.registry.by_key(f"tasmota:{first['mac']}")
    assert f"belongs to device '{owner.id}'" in refusals(caplog, second_topic)[0]

    publish(mqtt_broker, first_topic, b"")  # the first one is removed: its topics are free again
    await until(lambda: gateway.registry.by_key(f"tasmota:{first['mac']}") is None)
    publish(mqtt_broker, second_topic, second.discovery_config())
    await until(lambda: gateway.registry.by_key(f"tasmota:{second.mac}") is not None)


EVERY_HANDLE = """
answers = {{}}
for name, handle in devices.items():
    for topic in {topics!r}:
        try:
            handle.publish(topic, "yes")
            answers[name, topic] = "sent"
        except PermissionError as exc:
            answers[name, topic] = str(exc)
print(answers)
"""


async def test_no_tasmota_handle_can_start_a_task_or_answer_a_confirmation(tmp_path, mqtt_broker, hallway,
                                                                           gateway_factory, caplog):
    async with TasmotaPlug("tv_plug", "tasmota_A1B2C3", mqtt_broker.host, mqtt_broker.port, name="TV Plug") as plug:
        gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory)
        config_topic, config = tasmota_config("")  # the reproduction: an empty full topic made its topics `#`
        publish(mqtt_broker, config_topic, config)
        await until(lambda: gateway.registry.get("tv_plug") is not None and refusals(caplog, config_topic))
        gateway_id = gateway.config.gateway.id
        forbidden = [f"pyuse/{gateway_id}/task", f"pyuse/{gateway_id}/confirm/c1/set", "$SYS/broker/x",
                     "homeassistant/switch/x/config", "tasmota/discovery/AABBCCDDEEFF/config", "cmnd/tasmotas/POWER"]
        own = f"cmnd/{plug.topic}/POWER"
        with publisher(mqtt_broker) as client:
            seen: list[str] = []
            client.on_message = lambda _client, _data, message: seen.append(message.topic)
            client.subscribe([(topic, 0) for topic in [*forbidden, own]])
            _, execution = await gateway.run_code(EVERY_HANDLE.format(topics=[*forbidden, own]), "reach")
            await until(lambda: own in seen)

    answers = ast.literal_eval(execution.output.strip())
    assert {name for name, _ in answers} == {"tv_plug", LOCK_ID, "hallway_ceiling_light"}
    sent = sorted(target for target, answer in answers.items() if answer == "sent")
    assert sent == [("tv_plug", own)]
    assert [topic for topic in seen if topic in forbidden] == []
    assert locked(hallway)


def claims_clash(gateway: Gateway) -> list[str]:
    return [f"{device.id}: {reason}" for device in gateway.registry.all()
            if (reason := gateway.registry.conflict(device))]


OWNER_RULES = """
answers = {{}}
for name, handle in devices.items():
    try:
        handle.publish({topic!r}, {payload!r})
        answers[name] = "sent"
    except PermissionError as exc:
        answers[name] = str(exc)
print(answers)
"""


async def test_the_owners_rules_apply_whichever_handle_reaches_its_topic(tmp_path, mqtt_broker, hallway,
                                                                        gateway_factory, caplog):
    gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory)
    async with TasmotaPlug("tv_plug", "tasmota_A1B2C3", mqtt_broker.host, mqtt_broker.port, name="TV Plug"):
        publish(mqtt_broker, "homeassistant/switch/fan/config", ha_switch("Office Fan", "office/fan/set"))
        await until(lambda: {"tv_plug", "office_fan"} <= {device.id for device in gateway.registry.all()})
        asked: list[ConfirmationRequest] = []

        async def person(request: ConfirmationRequest) -> bool:
            asked.append(request)
            return False

        _, execution = await gateway.run_code(OWNER_RULES.format(topic=f"{LOCK_TOPIC}/set", payload=UNLOCK),
                                              "every handle", confirm=person)

    answers = ast.literal_eval(execution.output.strip())
    assert set(answers) == {LOCK_ID, "hallway_ceiling_light", "tv_plug", "office_fan"}
    assert "needs a person's confirmation" in answers[LOCK_ID]
    assert all("does not belong to device" in answers[name] for name in answers if name != LOCK_ID)
    assert [request.device_id for request in asked] == [LOCK_ID]  # only its owner's rule was met
    assert locked(hallway)
    assert claims_clash(gateway) == []


async def test_a_hidden_device_is_reachable_through_no_handle(tmp_path, mqtt_broker, hallway, gateway_factory,
                                                             caplog):
    gateway = await hallway_gateway(tmp_path, mqtt_broker, gateway_factory, policy={"hide": [LOCK_ID]})
    forged = "homeassistant/lock/front/config"
    publish(mqtt_broker, forged, {"name": "Front Door", "cmd_t": f"{LOCK_TOPIC}/set", "pl_unlk": UNLOCK,
                                  "uniq_id": "front01", "dev": {"ids": ["front01"], "name": "Front Door"}})
    await until(lambda: refusals(caplog, forged))
    for topic in (f"{LOCK_TOPIC}/set", f"{LOCK_TOPIC}/set/state", LOCK_TOPIC):
        _, execution = await gateway.run_code(OWNER_RULES.format(topic=topic, payload=UNLOCK), "hidden lock")
        answers = ast.literal_eval(execution.output.strip())
        assert LOCK_ID not in answers and answers, answers
        assert all("does not belong to device" in answer for answer in answers.values()), answers
    assert locked(hallway)


async def test_a_device_announced_on_mdns_cannot_take_a_declared_devices_address(tmp_path, gateway_factory, caplog):
    """Announcements cross the loopback interface only; other tests' devices may answer too, hence the filter."""
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    plug = ShellySwitch("desk_plug", name="Desk Plug")
    await plug.start(SimContext(zeroconf=zeroconf))
    try:
        gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(plug, id="declared_plug")],
                                                    discovery={"mqtt": False, "mdns": True}))
        address = f"address {plug.host}:{plug.port}"
        await until(lambda: any(address in message for message in refusals(caplog, "was refused")), timeout=15)
        holders = [device.key for device in gateway.registry.all() if (device.host, device.port) == (plug.host,
                                                                                                     plug.port)]
        assert holders == ["static:declared_plug"]
        assert f"{address} belongs to device 'declared_plug'" in refusals(caplog, address)[0]
    finally:
        await plug.stop()
        await zeroconf.async_close()
