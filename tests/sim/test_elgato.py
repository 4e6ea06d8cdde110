"""The Elgato Key Light simulator driven by python-elgato and by its REST API."""

from __future__ import annotations

import re

import pytest
from elgato import Elgato, PowerOnBehavior

from simulators.elgato import ElgatoKeyLight


@pytest.fixture
async def light(context):
    device = ElgatoKeyLight("desk_light", name="Desk Light")
    await device.start(context)
    yield device
    await device.stop()


@pytest.fixture
def client(light, session):
    return Elgato(light.host, port=9123, session=session)


async def put(session, light, path, body):
    async with session.put(f"{light.address()}/elgato/{path}", json=body) as response:
        return response.status, await response.json(content_type=None) if response.status == 200 else None


async def test_it_listens_on_9123_on_an_address_of_its_own(light):
    assert light.port == 9123 and light.host != "127.0.0.1"


async def test_python_elgato_reads_info_state_and_settings(light, client):
    info, state, settings = await client.info(), await client.state(), await client.settings()

    assert (info.product_name, info.display_name, info.serial_number) == (
        "Elgato Key Light", "Desk Light", light.serial)
    assert re.fullmatch(r"CW29L1A\d{5}", light.serial)
    assert info.mac_address.replace(":", "") == light.mac and info.features == ["lights"]
    assert (state.on, state.brightness, state.temperature) == (False, 20, 213)
    assert settings.power_on_behavior is PowerOnBehavior.RESTORE_LAST and settings.battery is None
    assert await client.has_battery() is False


async def test_python_elgato_changes_the_light(light, client):
    await client.light(on=True, brightness=80, temperature=300)
    await client.display_name("Studio")
    await client.identify()

    assert light.state() == {"on": True, "brightness": 80, "temperature": 300, "kelvin": 3333,
                             "display_name": "Studio", "identified": 1, "fault": "none"}
    assert (await client.state()).brightness == 80


async def test_restart_with_defaults_applies_the_power_on_values(light, client):
    await client.power_on_behavior(behavior=PowerOnBehavior.USE_DEFAULTS, brightness=42, temperature=242)
    await client.restart()

    assert (light.state()["on"], light.state()["brightness"], light.state()["temperature"]) == (True, 42, 242)


@pytest.mark.parametrize(("sent", "expected"), [
    ({"brightness": 150}, {"brightness": 100}),
    ({"brightness": -5, "temperature": 100}, {"brightness": 0, "temperature": 143}),
    ({"temperature": 999, "on": 1}, {"temperature": 344, "on": 1}),
])
async def test_values_outside_the_range_are_clamped(light, session, sent, expected):
    status, body = await put(session, light, "lights", {"numberOfLights": 1, "lights": [sent]})

    assert status == 200
    assert {key: body["lights"][0][key] for key in expected} == expected


@pytest.mark.parametrize("body", [{"lights": "bright"}, {"numberOfLights": 1, "lights": [{"on": "yes"}]}, []])
async def test_malformed_requests_are_rejected_and_change_nothing(light, session, body):
    assert (await put(session, light, "lights", body))[0] == 400
    assert light.state()["on"] is False and light.state()["brightness"] == 20
