"""Issues 7 and 10: simple commands without any model, through the same sandbox, broker and audit as model code;
what the fast path covers (a room's one light, all the lights, 0 %, relative changes) and what it never takes."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import make_config, until
from gateway.agent.numbers import normalize_numbers
from gateway.config import DeviceEntry
from simulators.base import SimContext
from simulators.shelly import ShellySwitch
from simulators.tasmota import TasmotaPlug
from simulators.zigbee2mqtt import Bulb, ClimateSensor, Thermostat, Zigbee2MqttBridge

LIGHTS = {"kitchen": "Kitchen Ceiling Light", "living": "Living Room Light", "desk": "Office Desk Lamp",
          "reading_bed": "Bedroom Reading Lamp", "reading_office": "Office Reading Lamp"}
RADIATOR = "Living Room Radiator"


def registry_id(name: str) -> str:
    return name.lower().replace(" ", "_")


@pytest.fixture
async def home(mqtt_broker):
    bridge = Zigbee2MqttBridge(devices=[*(Bulb(key, name) for key, name in LIGHTS.items()),
                                        ClimateSensor("lab_climate", "Lab Climate Sensor"),
                                        Thermostat("radiator", RADIATOR, setpoint=20.0)])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield {device.id: device for device in bridge.devices}
    await bridge.stop()


@pytest.fixture
async def garage(mqtt_broker):
    """The garage's only light is a Shelly relay (a switch by its kind, a light by its name); its freezer is on."""
    async with (ShellySwitch("garage_ceiling_light", app="Plus1PM") as light,
                TasmotaPlug("garage_freezer", "tasmota_F1F2F3", mqtt_broker.host, mqtt_broker.port,
                            name="Garage Freezer") as freezer):
        freezer.power = True
        yield {"light": light, "freezer": freezer}


@pytest.fixture
async def gateway(tmp_path, mqtt_broker, home, garage, gateway_factory):
    relay = DeviceEntry(id="garage_ceiling_light", name="Garage Ceiling Light", area="garage", kind="shelly_switch",
                        host=garage["light"].host, port=garage["light"].port)
    gateway = await gateway_factory(make_config(tmp_path, devices=[relay], broker=mqtt_broker))  # no [llm]
    assert gateway.llm is None
    await until(lambda: len(gateway.registry.all()) == len(home) + len(garage))  # the freezer is discovered
    return gateway


def switched(home: dict[str, Any], garage: dict[str, Any]) -> dict[str, Any]:
    """Everything a command could change: the lights, the radiator's setpoint, the relay and the freezer."""
    return {**{key: (home[key].values["state"], home[key].values["brightness"]) for key in LIGHTS},
            "radiator": home["radiator"].values["occupied_heating_setpoint"],
            "garage_light": garage["light"].output, "freezer": garage["freezer"].power}


@pytest.mark.parametrize("command, light, state", [
    ("turn on the kitchen light", "kitchen", {"state": "ON"}),
    ("打开客厅的灯", "living", {"state": "ON"}),
    ("打开厨房的吸顶灯", "kitchen", {"state": "ON"}),
    ("set the desk lamp to 30%", "desk", {"state": "ON", "brightness": 76}),
    ("set the office desk lamp to thirty percent", "desk", {"state": "ON", "brightness": 76}),
    ("把台灯调到30%", "desk", {"state": "ON", "brightness": 76}),
])
async def test_simple_commands_need_no_model(gateway, home, command, light, state):
    result = await gateway.run_task(command)

    assert result.status == "done", result.error
    assert result.processed_locally and result.turns == 1 and result.tokens == 0
    assert {key: home[light].values[key] for key in state} == state
    assert all(home[other].values["state"] == "OFF" for other in LIGHTS if other != light)
    task = gateway.task(result.task_id)
    assert task.processed_locally and task.status == "done"
    step = gateway.store.steps(result.task_id)[0]
    assert "without a model" in step.thought and step.code.startswith(f"dev = devices[{registry_id(LIGHTS[light])!r}]")
    audit = gateway.store.audit_rows(result.task_id)
    assert [(row.device_id, row.outcome) for row in audit] == [(registry_id(LIGHTS[light]), "ok")]


async def test_a_reading_is_answered_in_the_commands_language(gateway, home):
    home["lab_climate"].apply({"temperature": 22.5})
    await until(lambda: gateway.registry.get("lab_climate_sensor").state.get("temperature") == 22.5)

    english = await gateway.run_task("what is the temperature in the lab")
    chinese = await gateway.run_task("实验室的温度是多少")

    assert english.status == "done" and english.processed_locally
    assert "22.5" in english.answer
    assert chinese.status == "done" and chinese.processed_locally and "22.5" in chinese.answer
    assert any("\u4e00" <= character <= "\u9fff" for character in chinese.answer)


@pytest.mark.parametrize("command, asks", [
    ("turn on the reading lamp", ["Bedroom Reading Lamp", "Office Reading Lamp"]),
    ("turn on the office light", ["Office Desk Lamp", "Office Reading Lamp"]),  # one light, and the room has two
    ("turn on the lab light", None),  # the lab has no light
])
async def test_an_unclear_name_is_not_guessed(gateway, home, garage, command, asks):
    before = switched(home, garage)

    result = await gateway.run_task(command)  # nobody to ask: the question is the answer

    assert result.status == ("needs_input" if asks else "failed")
    assert switched(home, garage) == before
    assert gateway.store.audit_rows(result.task_id) == []  # nothing was touched
    if asks:
        assert all(name in result.answer for name in asks)  # which one, with no model to work it out
    else:
        assert "model" in result.error  # not a command it understands alone: says a model is needed


@pytest.mark.parametrize("command", ["turn on the garage light", "turn on the lights in the garage", "打开车库的灯",
                                     "turn on the garage light, please"])
async def test_a_rooms_only_light_is_taken_even_when_it_is_a_relay(gateway, home, garage, command):
    result = await gateway.run_task(command)

    assert result.status == "done" and result.processed_locally, result.error
    assert garage["light"].output and garage["freezer"].power  # the light, and not the other switch there
    assert "Garage Ceiling Light" in result.answer
    assert [row.device_id for row in gateway.store.audit_rows(result.task_id)] == ["garage_ceiling_light"]


@pytest.mark.parametrize("command, lights, on", [
    ("turn off all the lights", [*LIGHTS, "garage"], False),
    ("turn off every light", [*LIGHTS, "garage"], False),
    ("关掉所有的灯", [*LIGHTS, "garage"], False),
    ("把所有的灯都关了", [*LIGHTS, "garage"], False),
    ("turn off the lights in the office", ["desk", "reading_office"], False),
    ("把办公室的灯都关了", ["desk", "reading_office"], False),
    ("turn on the office lights", ["desk", "reading_office"], True),
    ("把办公室的灯都打开", ["desk", "reading_office"], True),
    ("打开办公室的灯", ["desk", "reading_office"], True),  # Chinese has no plural: a room's 灯 is all of them
    ("关掉办公室的灯", ["desk", "reading_office"], False),
])
async def test_the_lights_are_every_light_in_the_room_or_the_home(gateway, home, garage, command, lights, on):
    for key in LIGHTS:
        home[key].values["state"] = "OFF" if on else "ON"
    garage["light"].apply({"output": not on})

    result = await gateway.run_task(command)

    assert result.status == "done" and result.processed_locally, result.error
    assert {key: home[key].values["state"] == "ON" for key in LIGHTS} == {key: (key in lights) == on for key in LIGHTS}
    assert garage["light"].output == (("garage" in lights) == on)
    assert garage["freezer"].power and home["radiator"].values["occupied_heating_setpoint"] == 20.0
    names = [LIGHTS.get(key, "Garage Ceiling Light") for key in lights]
    assert str(len(lights)) in result.answer and all(name in result.answer for name in names)
    touched = {row.device_id for row in gateway.store.audit_rows(result.task_id)}
    assert touched == {registry_id(name) for name in names}


async def test_one_light_that_fails_does_not_keep_the_others_on_and_the_task_says_so(gateway, home, garage):
    for key in LIGHTS:
        home[key].values["state"] = "ON"
    garage["light"].apply({"output": True, "fault": "offline"})

    result = await gateway.run_task("turn off all the lights")

    assert all(home[key].values["state"] == "OFF" for key in LIGHTS)
    assert result.status == "failed" and "Garage Ceiling Light" in result.error


@pytest.mark.parametrize("command, answer", [
    ("set the desk lamp to 0%", "Office Desk Lamp is off."),
    ("set the office desk lamp to zero percent", "Office Desk Lamp is off."),
    ("把台灯调到0%", "已关闭Office Desk Lamp。"),
])
async def test_zero_percent_is_off(gateway, home, command, answer):
    home["desk"].values.update(state="ON", brightness=127)

    result = await gateway.run_task(command)

    assert result.status == "done" and result.processed_locally, result.error
    assert home["desk"].values["state"] == "OFF" and result.answer == answer


BRIGHTER, DIMMER = round(75 * 254 / 100), round(25 * 254 / 100)  # 50 % and a step of 25 %, as the bulb doc says


@pytest.mark.parametrize("command, key, value, changed", [
    ("make the living room light brighter", "living", "brightness", BRIGHTER),
    ("调亮客厅的灯", "living", "brightness", BRIGHTER),
    ("dim the desk lamp", "desk", "brightness", DIMMER),
    ("把台灯调暗一点", "desk", "brightness", DIMMER),
    ("turn up the heating in the living room", "radiator", "occupied_heating_setpoint", 21.0),
    ("a bit warmer in the living room", "radiator", "occupied_heating_setpoint", 21.0),
    ("客厅暖和一点", "radiator", "occupied_heating_setpoint", 21.0),
    ("make the living room a bit cooler", "radiator", "occupied_heating_setpoint", 19.0),
    ("把客厅的温度调低一点", "radiator", "occupied_heating_setpoint", 19.0),
])
async def test_relative_changes_follow_the_devices_doc(gateway, home, garage, command, key, value, changed):
    for light in LIGHTS:
        home[light].values.update(state="ON", brightness=127)
    before = switched(home, garage)

    result = await gateway.run_task(command)

    assert result.status == "done" and result.processed_locally, result.error
    assert home[key].values[value] == changed
    after = switched(home, garage)
    assert {name: state for name, state in after.items() if name != key} == \
        {name: state for name, state in before.items() if name != key}  # nothing else changed


@pytest.mark.parametrize("command, reason", [
    ("don't turn on the garage light", "negation"),
    ("do not turn off the desk lamp", "negation"),
    ("turn on all the lights except the kitchen", "negation"),
    ("turn off all the lights but the desk lamp", "negation"),
    ("不要打开车库的灯", "negation"),
    ("除了厨房，把所有的灯都关了", "negation"),
    ("turn on the garage light in 5 minutes", "delay"),
    ("turn on the garage light in five minutes", "delay"),
    ("turn off all the lights at 11 pm", "delay"),
    ("turn on the desk lamp tomorrow", "delay"),
    ("turn on the garage light for ten minutes", "delay"),
    ("5分钟后打开车库的灯", "delay"),
    ("明天早上打开台灯", "delay"),
    ("if the kitchen window is open turn off the radiator", "condition"),
    ("turn on the garage light when motion is seen", "condition"),
    ("turn off the desk lamp once the kitchen light is on", "condition"),
    ("如果有人就打开车库的灯", "condition"),
    ("turn on the garage light and the desk lamp", "several"),
    ("turn on the garage light, turn off the desk lamp", "several"),
    ("打开车库的灯和台灯", "several"),
    ("turn up the garage light", None),  # a relay: its doc defines no increase
    ("make the desk lamp warmer", None),  # a warmer light is a colour, not more heat: the model's turn
    ("are all the lights off", None),  # questions about several lights are the model's
    ("are any lights on in the office", None),
])
async def test_negations_delays_conditions_and_several_actions_are_left_to_the_model(gateway, home, garage,
                                                                                      command, reason):
    home["desk"].values["state"] = "ON"
    before = switched(home, garage)

    result = await gateway.run_task(command)

    assert result.status == "failed" and "model" in result.error  # not a question: no model, no action
    assert gateway.store.audit_rows(result.task_id) == []
    assert switched(home, garage) == before
    # Refused before any sentence is matched, so that a new sentence cannot make one of these a misfire.
    assert gateway.local.refusal(normalize_numbers(command)) == reason


async def test_help_shows_commands_made_from_this_homes_devices_and_each_works(gateway, home, garage):
    home["lab_climate"].apply({"temperature": 22.5})  # a reading needs the sensor to have reported once
    await until(lambda: gateway.registry.get("lab_climate_sensor").state.get("temperature") == 22.5)
    shown = await gateway.help()

    assert shown.examples and all(example in shown.text for example in shown.examples)
    assert "turn off the lights in the office" in shown.examples and "turn off all the lights" in shown.examples
    assert "关掉所有的灯" in shown.examples and "model" in shown.text  # none is configured: says what needs one
    areas = {device.area for device in gateway.devices()}
    assert {example.rpartition("in the ")[2] for example in shown.examples if "in the " in example} <= areas
    for example in shown.examples:
        result = await gateway.run_task(example)
        assert result.status == "done" and result.processed_locally, (example, result.error)
