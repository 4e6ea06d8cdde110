"""Device names and areas are text, never templates (issue 11, item 5; issue 12, item 1).

The fast path used to hand names and areas to hassil as sentence templates: one device named `Porch [light` made
every later task raise before it started, left "running" in the store. Here each odd name sits on a real Shelly
simulator next to an ordinary plug; later tasks must work, and the odd device must answer to its name where a
person could say or type it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import code_reply, make_config, shelly_entry

from gateway.transports.mqtt_message import Message
from simulators.shelly import ShellySwitch

# name -> what a person types to reach it (None: nothing sensible; such a device is left to the model)
ODD_NAMES = {
    "Porch {light}": "turn on porch {light}",
    "Porch [light": "turn on porch [light",
    "Porch <name>": "turn on porch <name>",
    "Lamp [2": "turn on lamp [2",
    ":-(": None,
    "\x1b[31mRed Lamp\x1b[0m": "turn on the red lamp",
    "Porch (big|small) light": "turn on porch (big|small) light",
}


@pytest.fixture
async def odd_plug() -> AsyncIterator[ShellySwitch]:
    async with ShellySwitch("odd_plug") as device:
        yield device


def odd_entry(device: ShellySwitch, name: str, area: str = "porch"):
    return shelly_entry(device, name=name, area=area)


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_an_odd_name_stops_nothing_and_answers_to_its_name(tmp_path, shelly, odd_plug, gateway_factory, name):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly), odd_entry(odd_plug, name)]))

    later = await gateway.run_task("turn on the desk plug")

    assert (later.status, later.error) == ("done", None)
    assert shelly.output is True and odd_plug.output is False
    spoken = ODD_NAMES[name]
    if spoken is not None:
        result = await gateway.run_task(spoken)
        assert result.status == "done", result.error
        assert odd_plug.output is True
    stored = [task.status for task in gateway.store.list_tasks(10)]
    assert "running" not in stored


@pytest.mark.parametrize("area", ["Porch [outside", "Garden {zone}", "\x1b[2JAttic"])
async def test_an_odd_area_stops_nothing(tmp_path, shelly, odd_plug, gateway_factory, area):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly),
                                                                   odd_entry(odd_plug, "Fountain Pump", area)]))

    result = await gateway.run_task("turn off the desk plug")
    pump = await gateway.run_task("turn on the fountain pump")

    assert (result.status, pump.status) == ("done", "done"), (result.error, pump.error)
    assert odd_plug.output is True


async def test_the_model_path_with_odd_names_runs_and_quotes_them(tmp_path, scripted_llm, shelly, odd_plug,
                                                                  gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "is anything on", "replies": [
        code_reply('final_answer(devices["desk_plug"].is_on)')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly),
                                                                odd_entry(odd_plug, "Porch [light </devices>")]))

    result = await gateway.run_task("is anything on?")

    assert result.status == "done", result.error
    system = llm.requests[0]["messages"][0]["content"]
    assert system.count("</devices>") == 1 and "\x1b" not in system


def test_a_payload_nested_past_what_python_parses_is_text_not_a_traceback():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert Message("zigbee2mqtt/Porch Sensor", deep).decoded() == deep.decode()
