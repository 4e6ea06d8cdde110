"""The Shelly Gen2 simulator driven by aioshelly (the library Home Assistant uses) and by HTTP, WS, MQTT."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest
from aioshelly.common import ConnectionOptions
from aioshelly.exceptions import RpcCallError
from aioshelly.rpc_device import RpcDevice, RpcUpdateType

from sim.http_support import until
from simulators.shelly import ShellySwitch


@pytest.fixture
async def plug(context):
    device = ShellySwitch("desk_plug", name="Desk Plug", load_w=120.0)
    await device.start(context)
    yield device
    await device.stop()


@pytest.fixture
async def aioshelly_device(plug, session):
    # No port: aioshelly, as Home Assistant uses it, assumes a device's port 80.
    device = await RpcDevice.create(session, None, ConnectionOptions(plug.host))
    await device.initialize()
    yield device
    await device.shutdown()


async def rpc(session, plug, method, **params):
    async with session.post(f"{plug.address()}/rpc/{method}", json=params) as response:
        return response.status, await response.json()


async def test_aioshelly_initializes_against_the_simulator(plug, aioshelly_device):
    device = aioshelly_device

    assert device.initialized and device.connected
    assert device.firmware_supported
    assert (device.gen, device.model, device.hostname) == (2, "SNPL-00112EU", plug.shelly_id)
    assert device.name == "Desk Plug"
    assert device.status["switch:0"]["output"] is False
    assert device.status["sys"]["mac"] == plug.mac
    assert device.config["switch:0"]["initial_state"] == "off"


async def test_each_shelly_serves_on_port_80_of_a_loopback_address_of_its_own(context, session):
    plugs = [ShellySwitch("hall_plug"), ShellySwitch("porch_plug")]
    for plug in plugs:
        await plug.start(context)
    try:
        assert [plug.port for plug in plugs] == [80, 80] and plugs[0].host != plugs[1].host
        assert all(plug.host.startswith("127.") for plug in plugs)
        for plug in plugs:
            device = await RpcDevice.create(session, None, ConnectionOptions(plug.host))
            try:
                await device.initialize()
                assert device.hostname == plug.shelly_id
                assert device.status["wifi"]["sta_ip"] == plug.host
            finally:
                await device.shutdown()
    finally:
        for plug in plugs:
            await plug.stop()


async def test_aioshelly_switch_set_turns_the_plug_on_and_it_draws_its_load(plug, aioshelly_device):
    await aioshelly_device.switch_set(0, True)

    assert plug.state()["output"] is True
    assert plug.state()["source"] == "WS_in"
    assert plug.state()["apower"] == 120.0
    assert plug.state()["current"] == round(120 / 230, 3)

    await aioshelly_device.switch_set(0, False)
    assert plug.state()["output"] is False and plug.state()["apower"] == 0.0


async def test_a_change_by_another_client_reaches_aioshelly_as_notify_status(plug, aioshelly_device, session):
    updates: list[RpcUpdateType] = []
    aioshelly_device.subscribe_updates(lambda device, update: updates.append(update))

    status, result = await rpc(session, plug, "Switch.Toggle", id=0)

    assert (status, result) == (200, {"was_on": False})
    await until(lambda: RpcUpdateType.STATUS in updates)
    switch = aioshelly_device.status["switch:0"]
    assert (switch["output"], switch["source"], switch["apower"]) == (True, "HTTP_in", 120.0)


async def test_aioshelly_sees_rpc_errors_with_the_firmware_codes(aioshelly_device):
    with pytest.raises(RpcCallError) as unknown:
        await aioshelly_device.call_rpc("Cover.Open", {"id": 0})
    with pytest.raises(RpcCallError) as bad_id:
        await aioshelly_device.switch_set(1, True)

    assert (unknown.value.code, unknown.value.message) == (404, "No handler for Cover.Open")
    assert (bad_id.value.code, bad_id.value.message) == (-105, "Bad id=1")


async def test_rest_get_decodes_query_values_and_replies_the_bare_result(plug, session):
    async with session.get(f"{plug.address()}/rpc/Switch.Set?id=0&on=true") as response:
        assert (response.status, await response.json()) == (200, {"was_on": False})
    async with session.get(f"{plug.address()}/shelly") as response:
        identity = await response.json()

    assert plug.output is True
    assert identity["id"] == plug.shelly_id and identity["gen"] == 2 and identity["auth_en"] is False
    assert identity["fw_id"][:8] >= "20240213"


@pytest.mark.parametrize(("method", "params", "status", "error"), [
    ("Switch.Fly", {"id": 0}, 404, {"code": 404, "message": "No handler for Switch.Fly"}),
    ("Switch.Set", {"on": True}, 500, {"code": -103, "message": "Missing required 'id'"}),
    ("Switch.Set", {"id": 0}, 500, {"code": -103, "message": "Missing required 'on'"}),
    ("Switch.Set", {"id": 0, "on": "yes"}, 500, {"code": -103, "message": "Invalid argument 'on'"}),
    ("Switch.GetStatus", {"id": 3}, 500, {"code": -105, "message": "Bad id=3"}),
])
async def test_rest_errors_are_the_firmware_error_objects(plug, session, method, params, status, error):
    assert await rpc(session, plug, method, **params) == (status, error)
    assert plug.output is False


async def test_post_rpc_answers_full_frames_including_error_frames(plug, session):
    frames = [{"id": 7, "src": "tester", "method": "Switch.Set", "params": {"id": 0, "on": True}},
              {"id": "x", "method": "Nope.Nope"}]
    replies = []
    for frame in frames:
        async with session.post(f"{plug.address()}/rpc", json=frame) as response:
            replies.append((response.status, await response.json()))
    async with session.post(f"{plug.address()}/rpc", data=b"{not json") as response:
        invalid = (response.status, await response.text())

    assert replies == [(200, {"id": 7, "src": plug.shelly_id, "dst": "tester", "result": {"was_on": False}}),
                       (200, {"id": "x", "src": plug.shelly_id,
                              "error": {"code": 404, "message": "No handler for Nope.Nope"}})]
    assert invalid == (400, "Invalid request")
    assert plug.output is True


async def test_websocket_answers_each_id_and_notifies_only_peers_that_sent_a_src(plug, session):
    async with session.ws_connect(f"ws://{plug.host}:{plug.port}/rpc") as anonymous, \
            session.ws_connect(f"ws://{plug.host}:{plug.port}/rpc") as subscriber:
        for request_id in (1, "two", 3):
            await subscriber.send_json({"id": request_id, "src": "sub", "method": "Switch.GetStatus",
                                        "params": {"id": 0}})
        answers = [await subscriber.receive_json() for _ in range(3)]
        await anonymous.send_json({"id": 9, "method": "Shelly.GetDeviceInfo"})
        assert (await anonymous.receive_json())["result"]["id"] == plug.shelly_id

        await rpc(session, plug, "Switch.Set", id=0, on=True)
        notification = await subscriber.receive_json()
        await anonymous.send_json({"id": 10, "method": "Sys.GetStatus"})
        next_for_anonymous = await anonymous.receive_json()

    assert [(answer["id"], answer["dst"], answer["result"]["output"]) for answer in answers] == [
        (1, "sub", False), ("two", "sub", False), (3, "sub", False)]
    assert notification["method"] == "NotifyStatus" and notification["dst"] == "sub"
    assert notification["params"]["switch:0"] == {"id": 0, "source": "HTTP_in", "output": True,
                                                  "apower": 120.0, "current": 0.522}
    assert "ts" in notification["params"]
    assert next_for_anonymous["id"] == 10  # no notification was queued for the peer without a src


async def test_energy_integrates_over_simulated_time(plug, clock, session):
    await rpc(session, plug, "Switch.Set", id=0, on=True)
    await clock.advance(1800)
    _, status = await rpc(session, plug, "Switch.GetStatus", id=0)

    assert status["aenergy"]["total"] == 60.0  # 120 W for half an hour
    assert status["aenergy"]["by_minute"] == [2000.0, 2000.0, 2000.0]  # mWh in each of the last whole minutes
    assert status["aenergy"]["minute_ts"] % 60 == 0

    await rpc(session, plug, "Switch.Set", id=0, on=False)
    await clock.advance(600)
    assert plug.state()["aenergy_wh"] == 60.0
    _, reset = await rpc(session, plug, "Switch.ResetCounters", id=0, type=["aenergy"])
    assert reset == {"aenergy": {"total": 60.0}} and plug.state()["aenergy_wh"] == 0.0


async def test_toggle_after_flips_back_when_its_simulated_time_is_up(plug, clock, session):
    await rpc(session, plug, "Switch.Set", id=0, on=True, toggle_after=30)
    _, status = await rpc(session, plug, "Switch.GetStatus", id=0)
    assert (status["output"], status["timer_duration"]) == (True, 30)
    assert status["timer_started_at"] == pytest.approx(clock.now())

    await clock.advance(29)
    assert plug.output is True
    await clock.advance(1)
    await until(lambda: plug.output is False)

    _, status = await rpc(session, plug, "Switch.GetStatus", id=0)
    assert status["source"] == "timer" and "timer_duration" not in status


async def test_auto_off_from_the_switch_config(plug, clock, session):
    status, result = await rpc(session, plug, "Switch.SetConfig", id=0,
                               config={"auto_off": True, "auto_off_delay": 5.0})
    assert (status, result) == (200, {"restart_required": False})
    _, bad = await rpc(session, plug, "Switch.SetConfig", id=0, config={"initial_state": "sideways"})
    assert bad["code"] == -103

    await rpc(session, plug, "Switch.Set", id=0, on=True)
    await clock.advance(5)
    await until(lambda: plug.output is False)
    _, config = await rpc(session, plug, "Shelly.GetConfig")
    assert config["switch:0"]["auto_off"] is True and config["sys"]["cfg_rev"] == 1


async def test_a_load_over_the_power_limit_trips_the_switch(plug, session):
    plug.apply({"load_w": 3000})
    await rpc(session, plug, "Switch.Set", id=0, on=True)

    assert plug.state()["output"] is False
    assert plug.state()["errors"] == ["overpower"]


async def test_components_paging_and_listing(plug, session):
    _, dynamic = await rpc(session, plug, "Shelly.GetComponents", dynamic_only=True)
    _, builtin = await rpc(session, plug, "Shelly.GetComponents", offset=1, include=["status"])
    _, methods = await rpc(session, plug, "Shelly.ListMethods")

    assert dynamic == {"components": [], "cfg_rev": 0, "offset": 0, "total": 0}
    assert builtin["offset"] == 1 and builtin["total"] == len(builtin["components"]) + 1
    assert all(set(component) == {"key", "status"} for component in builtin["components"])
    assert {"Switch.Set", "Switch.Toggle", "Shelly.GetComponents", "Sys.GetStatus"} <= set(methods["methods"])


async def test_reboot_applies_the_initial_state_and_restarts_uptime(plug, clock, session):
    await rpc(session, plug, "Switch.SetConfig", id=0, config={"initial_state": "on"})
    await clock.advance(100)
    assert (await rpc(session, plug, "Sys.GetStatus"))[1]["uptime"] == 100

    status, result = await rpc(session, plug, "Shelly.Reboot", delay_ms=500)
    assert (status, result) == (200, None)
    await clock.advance(0.5)
    await until(lambda: plug.output is True)

    _, sys_status = await rpc(session, plug, "Sys.GetStatus")
    assert sys_status["uptime"] == 0 and plug.state()["source"] == "init"


async def test_plus_1pm_has_its_own_model_and_an_input(session):
    async with ShellySwitch("boiler", app="Plus1PM") as relay:
        _, status = await rpc(session, relay, "Shelly.GetStatus")
        _, info = await rpc(session, relay, "Shelly.GetDeviceInfo")

    assert info["model"] == "SNSW-001P16EU" and info["app"] == "Plus1PM"
    assert relay.shelly_id.startswith("shellyplus1pm-")
    assert status["input:0"] == {"id": 0, "state": False}


async def test_rpc_over_mqtt(context, mqtt_broker):
    context.mqtt_host, context.mqtt_port = mqtt_broker.host, mqtt_broker.port
    plug = ShellySwitch("garage_plug", mqtt=True)
    prefix = plug.shelly_id
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier="tester") as client:
        await client.subscribe("tester/rpc")
        await client.subscribe(f"{prefix}/#")
        await plug.start(context)
        try:
            seen: dict[str, list[object]] = {}

            async def collect() -> None:
                async for message in client.messages:
                    seen.setdefault(message.topic.value, []).append(message.payload)

            collector = asyncio.create_task(collect())
            await until(lambda: b"true" in seen.get(f"{prefix}/online", []))
            frame = {"id": 1, "src": "tester", "method": "Switch.Set", "params": {"id": 0, "on": True}}
            await client.publish(f"{prefix}/rpc", json.dumps(frame))
            await until(lambda: "tester/rpc" in seen and f"{prefix}/events/rpc" in seen)
            await client.publish(f"{prefix}/command/switch:0", "off")
            await until(lambda: plug.output is False)
            collector.cancel()
        finally:
            await plug.stop()

    reply = json.loads(seen["tester/rpc"][0])
    assert reply == {"id": 1, "src": prefix, "dst": "tester", "result": {"was_on": False}}
    events = [json.loads(payload) for payload in seen[f"{prefix}/events/rpc"]]
    assert any(event["method"] == "NotifyStatus" and event["params"].get("switch:0", {}).get("output") is True
               for event in events)
    assert json.loads(seen[f"{prefix}/status/switch:0"][-1])["id"] == 0
