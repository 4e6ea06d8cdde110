"""No HTTP simulator falls over on bad input, and each answers correctly afterwards.

Two complementary attacks: a systematic sweep that gives every field each device reads every kind of wrong
value (inputs random generation rarely reaches), and hypothesis throwing random bytes and random JSON at every
endpoint, WebSocket and MQTT topic. Then the faults a test can set (offline, slow, garbage) and recovery.

Simulated time stands still here (the manual clock), so timers and reboots that requests schedule never fire
in the middle of the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.elgato import SETTINGS_TYPES, ElgatoKeyLight
from simulators.httpdevice import GARBAGE, HttpDevice
from simulators.shelly import SWITCH_CONFIG_TYPES, ShellySwitch
from simulators.wled import BOOL_FIELDS, BYTE_FIELDS, WledStrip

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
DEVICES: dict[str, Callable[[], HttpDevice]] = {
    "shelly": lambda: ShellySwitch("fuzz_plug"), "wled": lambda: WledStrip("fuzz_strip"),
    "elgato": lambda: ElgatoKeyLight("fuzz_light")}
PROBES = {"shelly": ("/rpc/Shelly.GetDeviceInfo", lambda body, device: body["id"] == device.shelly_id),
          "wled": ("/json/info", lambda body, device: body["mac"] == device.mac),
          "elgato": ("/elgato/accessory-info", lambda body, device: body["serialNumber"] == device.serial)}

# --- the systematic sweep -----------------------------------------------------------------------------------

WRONG_VALUES = [None, True, False, -1, 0, 256, 10**12, 1.5, -0.5, "", "x", "~", "t", "r", [], [1, "a"], {},
                {"r": "x"}]
SHELLY_BASE_PARAMS = {"Switch.Set": {"id": 0, "on": True}, "Switch.SetConfig": {"id": 0, "config": {}},
                      "Sys.SetConfig": {"config": {"device": {}}}}
SHELLY_METHODS = ["Shelly.GetDeviceInfo", "Shelly.GetStatus", "Shelly.GetConfig", "Shelly.ListMethods",
                  "Shelly.GetComponents", "Shelly.Reboot", "Sys.GetStatus", "Sys.GetConfig", "Sys.SetConfig",
                  "Switch.Set", "Switch.Toggle", "Switch.GetStatus", "Switch.GetConfig", "Switch.SetConfig",
                  "Switch.ResetCounters"]
SHELLY_PARAMS = ["id", "on", "toggle_after", "config", "offset", "include", "dynamic_only", "delay_ms",
                 "type"]
WLED_STATE = ["on", "bri", "transition", "tt", "ps", "psave", "pdel", "n", "nl", "udpn", "lor", "mainseg",
              "seg", "v", "rb", "lv"]
WLED_SEGMENT = ["id", "start", "stop", "len", "n", "grp", "spc", "col", "fx", "pal", "i", *BOOL_FIELDS,
                *BYTE_FIELDS, "bri"]


Request = tuple[str, str, Any]  # method, path, JSON body


def sweep(method: str, path: str, keys: list[str], body: Callable[[str, Any], Any]) -> list[Request]:
    return [(method, path, body(key, value)) for key in keys for value in WRONG_VALUES]


def shelly_call(method: str) -> Callable[[str, Any], Any]:
    return lambda key, value: {**SHELLY_BASE_PARAMS.get(method, {"id": 0}), key: value}


WRONG_TYPE_REQUESTS: dict[str, list[Request]] = {
    "shelly": [
        *(request for method in SHELLY_METHODS
          for request in sweep("POST", f"/rpc/{method}", SHELLY_PARAMS, shelly_call(method))),
        *sweep("POST", "/rpc/Switch.SetConfig", list(SWITCH_CONFIG_TYPES),
               lambda key, value: {"id": 0, "config": {key: value}}),
        *sweep("POST", "/rpc/Sys.SetConfig", ["device"],
               lambda key, value: {"config": {key: {"name": value}}}),
        *sweep("POST", "/rpc", ["params", "method", "id", "src"],
               lambda key, value: {"id": 1, "src": "sweep", "method": "Switch.GetStatus", "params": {"id": 0},
                                   key: value}),
        ("POST", "/rpc/Switch.Set", {"id": 0, "on": True}),  # switched on, wrong limits below get compared
        *sweep("POST", "/rpc/Switch.SetConfig", list(SWITCH_CONFIG_TYPES),
               lambda key, value: {"id": 0, "config": {key: value}})],
    "wled": [
        *sweep("POST", "/json/state", WLED_STATE, lambda key, value: {key: value}),
        *sweep("POST", "/json/state", WLED_SEGMENT, lambda key, value: {"seg": {"id": 0, key: value}}),
        *sweep("POST", "/json/state", WLED_SEGMENT, lambda key, value: {"seg": [{key: value}]}),
        *sweep("POST", "/json/state", ["col"],
               lambda key, value: {"seg": {key: [value, [value], {"g": value}]}}),
        *sweep("POST", "/json/state", ["on", "dur", "mode", "tbri"], lambda key, value: {"nl": {key: value}}),
        *sweep("POST", "/json/state", ["send", "sgrp", "rgrp"], lambda key, value: {"udpn": {key: value}}),
        *sweep("POST", "/json/si", ["v"], lambda key, value: {key: value, "bri": value})],
    "elgato": [
        *sweep("PUT", "/elgato/lights", ["on", "brightness", "temperature", "hue"],
               lambda key, value: {"numberOfLights": 1, "lights": [{key: value}]}),
        *sweep("PUT", "/elgato/lights", ["lights", "numberOfLights"], lambda key, value: {key: value}),
        *sweep("PUT", "/elgato/lights/settings", list(SETTINGS_TYPES), lambda key, value: {key: value}),
        *sweep("PUT", "/elgato/accessory-info", ["displayName"], lambda key, value: {key: value})],
}


@pytest.fixture(params=list(DEVICES))
async def fuzzed(request, context):
    device = DEVICES[request.param]()
    await device.start(context)
    yield request.param, device
    await device.stop()


async def assert_answers_correctly(session: aiohttp.ClientSession, family: str, device: HttpDevice) -> None:
    path, check = PROBES[family]
    async with session.get(f"{device.address()}{path}") as response:
        assert response.status == 200 and check(await response.json(), device)
    json.dumps(device.state(), allow_nan=False)  # still plain JSON for the admin API


def is_device_answer(family: str, path: str, status: int, body: bytes) -> bool:
    """A reply the real device could give: an unhandled exception in a simulator shows up as a 500 page."""
    if status != 500:
        return status < 500 or (family, status) == ("wled", 501)
    try:
        error = json.loads(body)  # Shelly's REST channel reports RPC errors as HTTP 500 with the error object
    except ValueError:
        return False
    return family == "shelly" and path.startswith("/rpc/") and set(error) == {"code", "message"}


async def test_every_field_survives_every_kind_of_wrong_value(fuzzed, session):
    family, device = fuzzed

    for method, path, body in WRONG_TYPE_REQUESTS[family]:
        async with session.request(method, f"{device.address()}{path}", json=body) as response:
            answer = await response.read()
            assert is_device_answer(family, path, response.status, answer), (method, path, body)

    await assert_answers_correctly(session, family, device)


# --- random bytes and random JSON ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def objects_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with one to four keys the device reads, holding any JSON."""
    return st.dictionaries(st.sampled_from(keys), json_values, min_size=1, max_size=4)


shelly_frames = st.fixed_dictionaries(
    {"id": st.integers(0, 99) | st.text(max_size=4), "method": st.sampled_from(SHELLY_METHODS)},
    optional={"src": st.text(max_size=6) | json_values, "params": objects_with(SHELLY_PARAMS) | json_values})
wled_states = objects_with(WLED_STATE) | objects_with(WLED_SEGMENT).map(lambda segment: {"seg": segment})
DEVICE_JSON = {"shelly": shelly_frames | objects_with(SHELLY_PARAMS), "wled": wled_states,
               "elgato": objects_with(["lights", "numberOfLights", "displayName", *SETTINGS_TYPES])}
ENDPOINTS = {
    "shelly": [("GET", "/shelly"), ("POST", "/rpc"), ("GET", "/rpc/Switch.Set"), ("POST", "/rpc/Switch.Set"),
               ("POST", "/rpc/Switch.SetConfig"), ("POST", "/rpc/Shelly.GetComponents"),
               ("GET", "/rpc/Nope")],
    "wled": [("POST", "/json/state"), ("POST", "/json"), ("POST", "/json/si"), ("POST", "/json/cfg"),
             ("GET", "/json"), ("GET", "/json/live"), ("GET", "/presets.json"), ("GET", "/json/nonsense")],
    "elgato": [("PUT", "/elgato/lights"), ("PUT", "/elgato/lights/settings"),
               ("PUT", "/elgato/accessory-info"), ("GET", "/elgato/lights"), ("POST", "/elgato/identify"),
               ("POST", "/elgato/restart")]}


def bodies(device_json: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON shaped like the device's own requests, any JSON, or bytes."""
    return st.one_of(device_json.map(json.dumps).map(str.encode), json_values.map(json.dumps).map(str.encode),
                     st.binary(max_size=120))


@FUZZ
@given(data=st.data())
async def test_http_endpoints_survive_random_bytes_and_json(fuzzed, session, data):
    family, device = fuzzed
    method, path = data.draw(st.sampled_from(ENDPOINTS[family]), label="endpoint")
    body = data.draw(bodies(DEVICE_JSON[family]), label="body")
    query = data.draw(st.dictionaries(st.sampled_from(SHELLY_PARAMS), st.text(max_size=10), max_size=3),
                      label="query")

    async with session.request(method, f"{device.address()}{path}", params=query,
                                    data=body if method != "GET" else None) as response:
        assert is_device_answer(family, path, response.status, await response.read())
    await assert_answers_correctly(session, family, device)


@pytest.fixture
async def open_sockets(context, session):
    """A Shelly and a WLED with one WebSocket connection each, kept open across all examples."""
    plug, strip = ShellySwitch("fuzz_plug"), WledStrip("fuzz_strip")
    await plug.start(context)
    await strip.start(context)
    async with session.ws_connect(f"ws://{plug.host}:{plug.port}/rpc") as shelly_socket, \
            session.ws_connect(f"ws://{strip.host}/ws") as wled_socket:
        await wled_socket.receive_json()  # the greeting
        yield plug, shelly_socket, wled_socket
    await plug.stop()
    await strip.stop()


@FUZZ
@given(text=st.text(max_size=80) | json_values.map(json.dumps) | shelly_frames.map(json.dumps)
       | wled_states.map(json.dumps), raw=st.binary(max_size=40), probe=st.uuids())
async def test_websockets_survive_random_frames(open_sockets, text, raw, probe):
    plug, shelly_socket, wled_socket = open_sockets
    for socket in (shelly_socket, wled_socket):
        await socket.send_str(text)
        await socket.send_bytes(raw)

    await shelly_socket.send_json({"id": str(probe), "src": "fuzz", "method": "Shelly.GetDeviceInfo"})
    while (frame := await shelly_socket.receive_json(timeout=5)).get("id") != str(probe):
        assert "src" in frame  # answers and notifications in between are well-formed frames
    assert frame["result"]["id"] == plug.shelly_id
    await wled_socket.send_str("p")
    while (message := await wled_socket.receive_str(timeout=5)) != "pong":
        assert isinstance(json.loads(message), dict)


@pytest.fixture
async def mqtt_plug(context, mqtt_broker):
    """A Shelly with its MQTT channel, and a client subscribed to the replies it sends."""
    context.mqtt_host, context.mqtt_port = mqtt_broker.host, mqtt_broker.port
    plug = ShellySwitch("fuzz_mqtt_plug", mqtt=True)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier="fuzzer") as client:
        await client.subscribe("fuzzer/rpc")
        await plug.start(context)
        yield plug, client
        await plug.stop()


@settings(FUZZ, max_examples=40)
@given(topic=st.sampled_from(["rpc", "command/switch:0", "command"]), probe=st.uuids(),
       payload=bodies(shelly_frames) | st.sampled_from([b"on", b"off", b"toggle", b"status_update"]))
async def test_mqtt_topics_survive_random_payloads(mqtt_plug, topic, payload, probe):
    plug, client = mqtt_plug
    await client.publish(f"{plug.shelly_id}/{topic}", payload)

    request = {"id": str(probe), "src": "fuzzer", "method": "Switch.GetStatus", "params": {"id": 0}}
    await client.publish(f"{plug.shelly_id}/rpc", json.dumps(request))
    async with asyncio.timeout(5):
        async for message in client.messages:
            reply = json.loads(message.payload)
            if reply.get("id") == str(probe):
                break
    assert reply["result"]["output"] is plug.output


# --- faults -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "failure"), [("offline", aiohttp.ClientError), ("slow", TimeoutError),
                                                ("garbage", ValueError)])
async def test_faults_and_recovery(fuzzed, session, fault, failure):
    family, device = fuzzed
    path, _ = PROBES[family]
    device.apply({"fault": fault})

    with pytest.raises(failure):
        url, timeout = f"{device.address()}{path}", aiohttp.ClientTimeout(total=0.3)
        async with session.get(url, timeout=timeout) as reply:
            assert await reply.read() == GARBAGE
            await reply.json()

    device.apply({"fault": "none"})
    await assert_answers_correctly(session, family, device)


async def test_going_offline_drops_open_websockets(context, session):
    strip = WledStrip("offline_strip")
    await strip.start(context)
    try:
        async with session.ws_connect(f"ws://{strip.host}/ws") as socket:
            await socket.receive_json()
            strip.apply({"fault": "offline"})
            message = await socket.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    finally:
        await strip.stop()
