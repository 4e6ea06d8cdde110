"""Issue 7: simple commands without any model, through the same sandbox, broker and audit as model code."""

from __future__ import annotations

import pytest

from conftest import make_config, until
from simulators.base import SimContext
from simulators.zigbee2mqtt import Bulb, ClimateSensor, Zigbee2MqttBridge

LIGHTS = {"kitchen": "Kitchen Ceiling Light", "living": "Living Room Light", "desk": "Office Desk Lamp",
          "reading_bed": "Bedroom Reading Lamp", "reading_office": "Office Reading Lamp"}


@pytest.fixture
async def home(mqtt_broker):
    bridge = Zigbee2MqttBridge(devices=[*(Bulb(key, name) for key, name in LIGHTS.items()),
                                        ClimateSensor("lab_climate", "Lab Climate Sensor")])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield {device.id: device for device in bridge.devices}
    await bridge.stop()


@pytest.fixture
async def gateway(tmp_path, mqtt_broker, home, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))  # no [llm]: no model at all
    assert gateway.llm is None
    await until(lambda: len(gateway.registry.all()) == len(home))
    return gateway


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
    assert "without a model" in step.thought and step.code.startswith(f"dev = devices[{LIGHTS[light].lower().replace(' ', '_')!r}]")
    audit = gateway.store.audit_rows(result.task_id)
    assert [(row.device_id, row.outcome) for row in audit] == [(LIGHTS[light].lower().replace(" ", "_"), "ok")]


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
    ("turn on the garage light", None),
])
async def test_an_unclear_name_is_not_guessed(gateway, home, command, asks):
    result = await gateway.run_task(command)

    assert result.status == "failed"
    assert all(light.values["state"] == "OFF" for light in home.values() if "state" in light.values)
    assert gateway.store.audit_rows(result.task_id) == []  # nothing was touched
    if asks:
        assert all(name in result.error for name in asks)  # asked which one, with no model to ask
    else:
        assert "model" in result.error  # not a command it understands alone: says a model is needed
