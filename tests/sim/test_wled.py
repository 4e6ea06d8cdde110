"""The WLED simulator driven by python-wled (which hard-codes port 80) and by the raw JSON API."""

from __future__ import annotations

import asyncio

import pytest
from wled import WLED

from sim.http_support import until
from simulators.wled import EFFECTS, PALETTES, WledStrip


@pytest.fixture
async def strip(context):
    device = WledStrip("kitchen_strip", name="Kitchen Strip", leds=60)
    try:
        await device.start(context)
    except PermissionError:
        pytest.skip("python-wled only talks to port 80, which this user may not bind (needs root or "
                    "CAP_NET_BIND_SERVICE)")
    yield device
    await device.stop()


@pytest.fixture
async def client(strip, session):
    async with WLED(strip.host, session=session) as wled:
        yield wled


async def post_state(session, strip, body, path="/json/state"):
    async with session.post(f"{strip.address()}{path}", json=body) as response:
        return response.status, await response.json()


async def test_each_strip_gets_a_loopback_address_of_its_own_on_port_80(strip, context):
    other = WledStrip("hall_strip")
    await other.start(context)
    try:
        assert strip.port == other.port == 80
        assert strip.host != other.host and other.host.startswith("127.")
    finally:
        await other.stop()


async def test_python_wled_reads_the_whole_device(strip, client):
    device = await client.update()

    assert device.info.name == "Kitchen Strip"
    assert str(device.info.version) == "0.15.0"
    assert device.info.mac_address == strip.mac and device.info.leds.count == 60
    assert device.info.websocket == 0
    assert [device.effects[index].name for index in range(3)] == ["Solid", "Blink", "Breathe"]
    assert len(device.effects) == len(EFFECTS) and len(device.palettes) == len(PALETTES)
    assert (device.state.on, device.state.brightness) == (True, 128)
    assert device.state.segments[0].stop == 60
    assert set(device.presets) >= {1, 2}


async def test_python_wled_master_and_segment_change_the_strip(strip, client):
    await client.master(on=True, brightness=200)
    await client.segment(0, color_primary=(255, 0, 0), effect="Rainbow", palette="Party")

    state = strip.state()
    assert (state["on"], state["bri"]) == (True, 200)
    segment = state["segments"][0]
    assert segment["col"][0] == [255, 0, 0]
    assert (segment["effect"], segment["palette"]) == ("Rainbow", "Party")

    await client.master(on=False)
    assert (strip.state()["on"], strip.state()["bri"]) == (False, 200)  # off keeps the last brightness


async def test_python_wled_presets(strip, client):
    await client.update()
    await client.preset("Rainbow")

    assert strip.state()["ps"] == 2 and strip.state()["segments"][0]["effect"] == "Rainbow"


async def test_python_wled_websocket_receives_a_change_made_elsewhere(strip, client, session):
    await client.connect()
    seen = []
    listener = asyncio.create_task(client.listen(lambda device: seen.append(device.state.brightness)))
    try:
        await until(lambda: len(seen) == 1)  # the device greets a new client with its state
        assert strip.info_json()["ws"] == 1

        await post_state(session, strip, {"bri": 42})
        await until(lambda: seen[-1] == 42)
    finally:
        listener.cancel()
        await client.disconnect()


@pytest.mark.parametrize(("body", "expected"), [
    ({"on": "t"}, {"on": False, "bri": 128}),
    ({"bri": 0}, {"on": False, "bri": 128}),
    ({"on": False, "bri": 90}, {"on": False, "bri": 90}),
    ({"bri": 300}, {"on": False, "bri": 128}),  # the firmware reads an out-of-range byte as 0
    ({"bri": "~10"}, {"on": True, "bri": 138}),
    ({"transition": 20, "bri": 1.5}, {"on": True, "bri": 128, "transition": 20}),  # floats are not bytes
])
async def test_master_merge_rules(strip, session, body, expected):
    status, reply = await post_state(session, strip, body)

    assert (status, reply) == (200, {"success": True})
    assert {key: strip.state()[key] for key in expected} == expected


async def test_toggle_turns_on_with_the_last_brightness(strip, session):
    await post_state(session, strip, {"on": False, "bri": 77})
    await post_state(session, strip, {"on": "t"})

    assert (strip.state()["on"], strip.state()["bri"]) == (True, 77)


@pytest.mark.parametrize(("seg", "expected"), [
    ({"id": 0, "col": ["00FF00"]}, {"col": [[0, 255, 0], [0, 0, 0], [0, 0, 0]]}),
    ({"col": [[], {"g": 9}]}, {"col": [[255, 160, 0], [0, 9, 0], [0, 0, 0]]}),  # no id: the selected segments
    ([{"col": [2700]}], {"col": [[255, 167, 87], [0, 0, 0], [0, 0, 0]]}),  # Kelvin, computed as colorKtoRGB
    ({"id": 0, "fx": "~", "sx": 12}, {"fx": 1, "sx": 12}),
    ({"id": 0, "fx": 999, "pal": 6}, {"fx": 0, "palette": "Party"}),
    ({"id": 0, "bri": 0}, {"on": False, "bri": 255}),
    ({"id": 0, "on": "t"}, {"on": False}),
])
async def test_segment_merge_rules(strip, session, seg, expected):
    await post_state(session, strip, {"seg": seg})

    segment = strip.state()["segments"][0]
    assert {key: segment[key] for key in expected} == expected


async def test_segments_are_created_with_a_stop_and_deleted_with_stop_zero(strip, session):
    await post_state(session, strip, {"seg": [{"id": 0, "stop": 20}, {"id": 1, "start": 20, "stop": 60,
                                                                         "col": [[0, 0, 255]]}]})
    assert [(seg["start"], seg["stop"]) for seg in strip.state()["segments"]] == [(0, 20), (20, 60)]
    assert strip.state()["segments"][1]["col"][0] == [0, 0, 255]

    await post_state(session, strip, {"seg": {"id": 1, "stop": 0}})
    assert len(strip.state()["segments"]) == 1


async def test_verbose_requests_get_the_json_for_their_url(strip, session):
    status, state = await post_state(session, strip, {"bri": 10, "v": True})
    _, full = await post_state(session, strip, {"v": True}, path="/json")

    assert status == 200 and state["bri"] == 10 and state["seg"][0]["id"] == 0
    assert set(full) == {"state", "info", "effects", "palettes"}


@pytest.mark.parametrize("body", [b"{\"on\":", b"[1, 2]", b"", b"\xff\xfe"])
async def test_json_it_cannot_parse_is_error_9(strip, session, body):
    async with session.post(f"{strip.address()}/json/state", data=body) as response:
        assert (response.status, await response.json()) == (400, {"error": 9})
    assert strip.state()["on"] is True


@pytest.mark.parametrize(("path", "check"), [
    ("/json/si", lambda body: set(body) == {"state", "info"}),
    ("/json/info", lambda body: body["fs"]["pmt"] == 0 and body["uptime"] >= 0 and body["ws"] == 0),
    ("/json/eff", lambda body: body[:2] == ["Solid", "Blink"]),
    ("/json/effects", lambda body: body[9] == "Rainbow"),
    ("/json/pal", lambda body: body[6] == "Party"),
    ("/json/fxdata", lambda body: body[1] == "!,Duty cycle;!,!;!;01"),
    ("/json/live", lambda body: len(body["leds"]) == 60 and body["leds"][0] == "805000"),
    ("/json/cfg", lambda body: body["hw"]["led"]["total"] == 60),
    ("/presets.json", lambda body: body["0"] == {} and body["1"]["n"] == "Warm White"),
    ("/version", lambda body: body == 2412100),
])
async def test_read_endpoints(strip, session, path, check):
    async with session.get(f"{strip.address()}{path}") as response:
        assert response.status == 200
        assert check(await response.json(content_type=None))


async def test_an_unknown_json_path_is_not_implemented(strip, session):
    async with session.get(f"{strip.address()}/json/teapot") as response:
        assert (response.status, await response.json()) == (501, {"error": 4})


async def test_saving_a_preset_bumps_the_presets_timestamp(strip, session, clock):
    await post_state(session, strip, {"seg": {"id": 0, "col": [[1, 2, 3]]}})
    await post_state(session, strip, {"psave": 5, "n": "Dim blue"})
    await post_state(session, strip, {"seg": {"id": 0, "col": [[9, 9, 9]]}})
    await post_state(session, strip, {"ps": 5})

    assert strip.info_json()["fs"]["pmt"] == int(clock.now())
    assert strip.presets["5"]["n"] == "Dim blue"
    assert strip.state()["ps"] == 5 and strip.state()["segments"][0]["col"][0] == [1, 2, 3]


async def test_nightlight_fades_to_its_target_in_simulated_time(strip, session, clock):
    await post_state(session, strip, {"nl": {"on": True, "dur": 10, "tbri": 0}})
    _, state = await post_state(session, strip, {"v": True})
    assert state["nl"]["on"] is True and state["nl"]["rem"] == 600

    await clock.advance(600)
    await until(lambda: strip.state()["on"] is False)
    assert strip.state()["nightlight"] is False


async def test_websocket_protocol(strip, session):
    async with session.ws_connect(f"ws://{strip.host}/ws") as socket:
        greeting = await socket.receive_json()
        await socket.send_str("p")
        pong = await socket.receive_str()
        await socket.send_str("{oops")  # dropped without an answer
        await socket.send_json({"v": True})
        asked = await socket.receive_json()
        await socket.send_json({"bri": 128})  # no change: just an acknowledgement
        unchanged = await socket.receive_json()
        await socket.send_json({"bri": 64})  # a change goes out to every client, this one included
        pushed = await socket.receive_json()

    assert set(greeting) == {"state", "info"} and greeting["info"]["ws"] == 1
    assert pong == "pong"
    assert set(asked) == {"state", "info"}
    assert unchanged == {"success": True}
    assert pushed["state"]["bri"] == 64 and strip.state()["bri"] == 64
