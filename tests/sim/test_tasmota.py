"""Tasmota simulators against a real broker, a plain paho client and Home Assistant's own hatasmota library."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest
from hatasmota.discovery import TASMOTA_DISCOVERY_SCHEMA, TasmotaDiscovery, get_switch_entities
from hatasmota.mqtt import ReceiveMessage, TasmotaMQTTClient
from hatasmota.relay import TasmotaRelay

import simulators.tasmota
from sim.mqtt_probe import MqttProbe
from simulators.base import SimClock, SimContext
from simulators.tasmota import TasmotaDimmer, TasmotaPlug


@pytest.fixture
async def mqtt_probe(mqtt_broker) -> AsyncIterator[MqttProbe]:
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe("#")
    yield probe
    probe.close()


@pytest.fixture
async def mqtt_context(mqtt_broker) -> SimContext:
    return SimContext(mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port)


@pytest.fixture
async def plug(mqtt_context) -> AsyncIterator[TasmotaPlug]:
    device = TasmotaPlug("kitchen_plug", name="Kitchen Plug", mac="CC:50:E3:12:34:56")
    await device.start(mqtt_context)
    yield device
    await device.stop()


async def test_a_late_subscriber_sees_the_retained_lwt_and_discovery(mqtt_broker, plug):
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    try:
        await probe.subscribe("tasmota/discovery/#")
        await probe.subscribe("tele/tasmota_123456/LWT")
        lwt = await probe.expect("tele/tasmota_123456/LWT")
        config = await probe.expect("tasmota/discovery/CC50E3123456/config")
        sensors = await probe.expect("tasmota/discovery/CC50E3123456/sensors")
    finally:
        probe.close()

    assert (lwt.text, lwt.retain) == ("Online", True)
    assert config.retain and sensors.retain
    validated = TASMOTA_DISCOVERY_SCHEMA(config.json())  # hatasmota's own schema
    assert validated["mac"] == "CC50E3123456" and validated["t"] == "tasmota_123456"
    assert validated["dn"] == "Kitchen Plug" and validated["rl"][0] == 1
    assert validated["ft"] == "%prefix%/%topic%/" and validated["tp"] == ["cmnd", "stat", "tele"]
    assert sensors.json()["ver"] == 1
    assert set(sensors.json()["sn"]["ENERGY"]) >= {"Power", "Voltage", "Current", "Total"}


@pytest.mark.parametrize(("start", "payload", "expected"), [
    (False, "ON", True), (True, "OFF", False), (False, "1", True), (True, "0", False), (False, "TOGGLE", True),
    (True, "2", False), (True, "", True), (False, "?", False), (True, "banana", True),
])
async def test_power_commands_reply_on_result_and_power(mqtt_probe, plug, start, payload, expected):
    plug.power = start
    word = "ON" if expected else "OFF"

    mark = mqtt_probe.mark()
    mqtt_probe.publish("cmnd/tasmota_123456/Power", payload)
    result = await mqtt_probe.expect("stat/tasmota_123456/RESULT", after=mark)
    power = await mqtt_probe.expect("stat/tasmota_123456/POWER", after=mark)

    assert result.json() == {"POWER": word}
    assert power.text == word
    assert plug.power is expected and plug.state()["power"] is expected


async def test_power1_group_topic_and_fallback_topic_reach_the_plug(mqtt_probe, mqtt_context, plug):
    other = TasmotaPlug("other_plug", mac="CC50E3ABCDEF")
    await other.start(mqtt_context)
    try:
        await mqtt_probe.request("cmnd/tasmota_123456/POWER1", "ON", "stat/tasmota_123456/POWER")
        assert plug.power is True and other.power is False

        mark = mqtt_probe.mark()
        mqtt_probe.publish("cmnd/tasmotas/Power", "TOGGLE")
        await mqtt_probe.expect("stat/tasmota_ABCDEF/RESULT", after=mark)
        await mqtt_probe.expect("stat/tasmota_123456/RESULT", after=mark)
        assert plug.power is False and other.power is True

        await mqtt_probe.request("cmnd/DVES_ABCDEF_fb/Power", "OFF", "stat/tasmota_ABCDEF/RESULT")
        assert other.power is False
    finally:
        await other.stop()


async def test_a_second_relay_answers_with_indexed_keys(mqtt_probe, mqtt_context):
    strip = TasmotaPlug("strip", mac="CC50E3000002", relays=2, metering=False)
    await strip.start(mqtt_context)
    try:
        reply = await mqtt_probe.request("cmnd/tasmota_000002/Power2", "ON", "stat/tasmota_000002/RESULT")
        assert reply.json() == {"POWER2": "ON"}
        assert (await mqtt_probe.expect("stat/tasmota_000002/POWER2")).text == "ON"
        assert strip.state()["relays"] == [False, True]
        unknown = await mqtt_probe.request("cmnd/tasmota_000002/Power3", "ON", "stat/tasmota_000002/RESULT")
        assert unknown.json() == {"Command": "Unknown"}
    finally:
        await strip.stop()


async def test_state_and_status_commands(mqtt_probe, plug):
    plug.power = True
    state = await mqtt_probe.request("cmnd/tasmota_123456/STATE", "", "stat/tasmota_123456/RESULT")
    assert state.json()["POWER"] == "ON" and "UptimeSec" in state.json() and "Wifi" in state.json()

    everything = await mqtt_probe.request("cmnd/tasmota_123456/Status", "0", "stat/tasmota_123456/STATUS0")
    assert {"Status", "StatusPRM", "StatusFWR", "StatusNET", "StatusMQT", "StatusSNS", "StatusSTS"} <= set(
        everything.json())
    assert everything.json()["StatusNET"]["Mac"] == "CC:50:E3:12:34:56"

    sensors = await mqtt_probe.request("cmnd/tasmota_123456/Status", "8", "stat/tasmota_123456/STATUS8")
    energy = sensors.json()["StatusSNS"]["ENERGY"]
    assert energy["Power"] == 60 and energy["Voltage"] == 230 and energy["Current"] == pytest.approx(0.261)
    assert (await mqtt_probe.request("cmnd/tasmota_123456/Status", "10", "stat/tasmota_123456/STATUS10")
            ).json()["StatusSNS"]["ENERGY"]["Power"] == 60

    status11 = await mqtt_probe.request("cmnd/tasmota_123456/status", "11", "stat/tasmota_123456/STATUS11")
    assert status11.json()["StatusSTS"]["POWER"] == "ON"
    plain = await mqtt_probe.request("cmnd/tasmota_123456/Status", "", "stat/tasmota_123456/STATUS")
    assert plain.json()["Status"]["Topic"] == "tasmota_123456"


async def test_backlog_runs_each_command_and_unknown_commands_say_so(mqtt_probe, plug):
    mark = mqtt_probe.mark()
    mqtt_probe.publish("cmnd/tasmota_123456/Backlog", "NoDelay;Power ON; TelePeriod 20 ;Frobnicate 3")
    results = []
    for _ in range(3):
        results.append(await mqtt_probe.expect("stat/tasmota_123456/RESULT",
                                               lambda m: m.payload not in [r.payload for r in results], after=mark))
    assert [r.json() for r in results] == [{"POWER": "ON"}, {"TelePeriod": 20}, {"Command": "Unknown"}]
    assert plug.power is True and plug.tele_period == 20


async def test_telemetry_follows_the_simulated_clock_and_energy_accumulates(mqtt_broker, mqtt_probe):
    fast = SimContext(clock=SimClock(speed=600.0), mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port)
    heater = TasmotaPlug("heater", mac="CC50E3000003", load_watts=1800.0)
    await heater.start(fast)
    try:
        heater.power = True
        reply = await mqtt_probe.request("cmnd/tasmota_000003/TelePeriod", "10", "stat/tasmota_000003/RESULT")
        assert reply.json() == {"TelePeriod": 10}
        mark = mqtt_probe.mark()
        first = await mqtt_probe.expect("tele/tasmota_000003/SENSOR", after=mark, timeout=2)
        later = await mqtt_probe.expect("tele/tasmota_000003/SENSOR", lambda m: m.at > first.at + 0.1,
                                        after=mark, timeout=2)
        assert len(mqtt_probe.received("tele/tasmota_000003/STATE", mark)) >= 2
    finally:
        await heater.stop()
    energy = later.json()["ENERGY"]
    assert energy["Power"] == 1800 and energy["Voltage"] == 230
    assert energy["Total"] > first.json()["ENERGY"]["Total"] > 0  # 1.8 kW for simulated minutes
    assert heater.state()["energy_kwh"] >= energy["Total"]


async def test_dimmer_commands_set_brightness_and_power(mqtt_probe, mqtt_context):
    dimmer = TasmotaDimmer("hall_dimmer", mac="CC50E3000004")
    await dimmer.start(mqtt_context)
    try:
        reply = await mqtt_probe.request("cmnd/tasmota_000004/Dimmer", "30", "stat/tasmota_000004/RESULT")
        assert reply.json()["POWER"] == "ON" and reply.json()["Dimmer"] == 30
        assert dimmer.state()["dimmer"] == 30 and dimmer.power is True
        reply = await mqtt_probe.request("cmnd/tasmota_000004/Dimmer", "+", "stat/tasmota_000004/RESULT")
        assert reply.json()["Dimmer"] == 40
        reply = await mqtt_probe.request("cmnd/tasmota_000004/Dimmer", "0", "stat/tasmota_000004/RESULT")
        assert reply.json()["POWER"] == "OFF" and dimmer.power is False
        unknown = await mqtt_probe.request("cmnd/tasmota_000004/CT", "300", "stat/tasmota_000004/RESULT")
        assert unknown.json() == {"Command": "Unknown"}  # a single-channel dimmer has no colour temperature
        config = await mqtt_probe.expect("tasmota/discovery/CC50E3000004/config")
        assert config.json()["rl"][0] == 2 and config.json()["lt_st"] == 1
    finally:
        await dimmer.stop()


async def test_colour_bulb_takes_ct_and_color(mqtt_probe, mqtt_context):
    bulb = TasmotaDimmer("desk_bulb", mac="CC50E3000005", color=True)
    await bulb.start(mqtt_context)
    try:
        reply = await mqtt_probe.request("cmnd/tasmota_000005/CT", "370", "stat/tasmota_000005/RESULT")
        assert reply.json()["CT"] == 370
        reply = await mqtt_probe.request("cmnd/tasmota_000005/Color", "#00FF00", "stat/tasmota_000005/RESULT")
        assert reply.json()["Color"].startswith("00FF00") and reply.json()["POWER"] == "ON"
        state = bulb.state()
        assert (state["ct"], state["color"], state["power"]) == (370, "#00FF00", True)
        clamped = await mqtt_probe.request("cmnd/tasmota_000005/CT", "999", "stat/tasmota_000005/RESULT")
        assert clamped.json()["CT"] == 500
    finally:
        await bulb.stop()


async def test_offline_fault_makes_the_broker_publish_the_will_and_recovery_announces_again(mqtt_broker, mqtt_probe,
                                                                                           plug):
    mark = mqtt_probe.mark()
    plug.apply({"fault": "offline"})
    await mqtt_probe.expect("tele/tasmota_123456/LWT", lambda m: m.text == "Offline", after=mark)
    assert plug.state()["online"] is False
    late = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    try:
        await late.subscribe("tele/tasmota_123456/LWT")
        retained = await late.expect("tele/tasmota_123456/LWT")
    finally:
        late.close()
    assert (retained.text, retained.retain) == ("Offline", True)  # the broker kept the will

    mqtt_probe.publish("cmnd/tasmota_123456/Power", "ON")
    await asyncio.sleep(0.3)
    assert plug.power is False  # nobody is listening

    mark = mqtt_probe.mark()
    plug.apply({"fault": "none"})
    await mqtt_probe.expect("tele/tasmota_123456/LWT", lambda m: m.text == "Online", after=mark)
    await mqtt_probe.expect("tasmota/discovery/CC50E3123456/config", after=mark)
    await mqtt_probe.request("cmnd/tasmota_123456/Power", "ON", "stat/tasmota_123456/RESULT")
    assert plug.power is True and plug.state()["online"] is True


async def test_slow_fault_delays_replies(mqtt_probe, plug, monkeypatch):
    monkeypatch.setattr(simulators.tasmota, "SLOW_REPLY_S", 0.5)
    plug.apply({"fault": "slow"})
    mark = mqtt_probe.mark()
    mqtt_probe.publish("cmnd/tasmota_123456/Power", "ON")
    await asyncio.sleep(0.3)
    assert mqtt_probe.received("stat/tasmota_123456/RESULT", mark) == []
    reply = await mqtt_probe.expect("stat/tasmota_123456/RESULT", after=mark)
    assert reply.json() == {"POWER": "ON"}


async def test_garbage_fault_sends_malformed_payloads(mqtt_probe, plug):
    plug.apply({"fault": "garbage"})
    reply = await mqtt_probe.request("cmnd/tasmota_123456/Power", "ON", "stat/tasmota_123456/RESULT")
    with pytest.raises(ValueError):
        json.loads(reply.payload)
    plug.apply({"fault": "none"})
    reply = await mqtt_probe.request("cmnd/tasmota_123456/Power", "", "stat/tasmota_123456/RESULT")
    assert reply.json() == {"POWER": "ON"}


async def test_apply_presses_the_button_and_the_plug_reports_it(mqtt_probe, plug):
    mark = mqtt_probe.mark()
    plug.apply({"power": True, "load_watts": 100})
    assert (await mqtt_probe.expect("stat/tasmota_123456/POWER", after=mark)).text == "ON"
    assert plug.state()["power_w"] == 100
    with pytest.raises(ValueError, match="load_watts: expected float"):
        plug.apply({"load_watts": "a lot"})


class AiomqttAdapter:
    """The MQTT glue Home Assistant gives hatasmota (publish/subscribe/unsubscribe), over aiomqtt."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.callbacks: dict[str, Any] = {}
        self.mqtt = TasmotaMQTTClient(self.publish, self.subscribe, self.unsubscribe)

    async def publish(self, topic: str, payload: Any, qos: int | None, retain: bool | None) -> None:
        await self.client.publish(topic, payload, qos=qos or 0, retain=bool(retain))

    async def subscribe(self, sub_state: dict | None, topics: dict) -> dict:
        for entry in topics.values():
            self.callbacks[entry["topic"]] = entry["msg_callback"]
            await self.client.subscribe(entry["topic"])
        return {name: entry["topic"] for name, entry in topics.items()}

    async def unsubscribe(self, sub_state: dict | None) -> dict:
        for topic in (sub_state or {}).values():
            self.callbacks.pop(topic, None)
        return {}

    async def pump(self) -> None:
        async for message in self.client.messages:
            for pattern, callback in list(self.callbacks.items()):
                if message.topic.matches(pattern):
                    result = callback(ReceiveMessage(str(message.topic), message.payload.decode(), message.qos,
                                                     message.retain))
                    if asyncio.iscoroutine(result):
                        await result


async def test_hatasmota_discovers_the_plug_and_switches_it(mqtt_broker, plug):
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as client:
        adapter = AiomqttAdapter(client)
        pump = asyncio.create_task(adapter.pump())
        discovered: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

        async def device_discovered(payload: dict, mac: str) -> None:
            if not discovered.done():
                discovered.set_result(payload)

        async def sensors_discovered(sensors: list, mac: str) -> None:
            pass

        discovery = TasmotaDiscovery("tasmota/discovery", adapter.mqtt)
        await discovery.start_discovery(device_discovered, sensors_discovered)
        config = await asyncio.wait_for(discovered, 5)
        entities = [entity for entity, _ in get_switch_entities(config) if entity is not None]
        assert len(entities) == 1
        relay = TasmotaRelay(config=entities[0], mqtt_client=adapter.mqtt)
        seen: list[bool] = []
        availability: list[bool] = []
        relay.set_on_state_callback(seen.append)

        async def available(online: bool) -> None:
            availability.append(online)

        relay.set_on_availability_callback(available)
        await relay.subscribe_topics()

        await relay.set_state(True)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert plug.power is True and seen[-1] is True

        plug.apply({"fault": "offline"})
        for _ in range(100):
            if availability and availability[-1] is False:
                break
            await asyncio.sleep(0.02)
        assert availability[-1] is False
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
