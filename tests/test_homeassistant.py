"""The gateway as Home Assistant sees it over MQTT ([homeassistant] discovery): a real broker, a client that
subscribes and publishes as Home Assistant does, the daemon, the scripted model and simulated devices.

Every discovery config is checked against Home Assistant 2024.1.6's keys per platform, vendored below from its
homeassistant/components/mqtt/{text,sensor,binary_sensor,button,mixins,discovery}.py so that the check always
runs. With PYUSE_HA_PYTHON naming a Python that has Home Assistant itself, its own schemas and templates judge the
configs and render the sensors' states too (and the vendored keys are compared with its schemas), and judge the
README's automations (the last release for Python 3.11, with what its MQTT and conversation integrations import):

    python3.11 -m venv /tmp/ha-venv && /tmp/ha-venv/bin/pip install homeassistant==2024.1.6 paho-mqtt==1.6.1 \
        hassil==1.5.1 home-assistant-intents==2024.1.2
    PYUSE_HA_PYTHON=/tmp/ha-venv/bin/python .venv/bin/pytest tests/test_homeassistant.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import code_reply, make_config, psu_entry, shelly_entry, until
from sim.mqtt_probe import MqttProbe, Received

from gateway.api.auth import TOKEN_FILE
from gateway.config import ConfigError, load_config
from gateway.daemon import Daemon

PREFIX = "smarthome"  # [discovery] ha_prefix, which [homeassistant] prefix falls back to
HA_PYTHON = os.environ.get("PYUSE_HA_PYTHON")
HA_CHECK = Path(__file__).parent / "data" / "home_assistant_check.py"
HA_AUTOMATIONS = Path(__file__).parent / "data" / "home_assistant_automations.py"
README = Path(__file__).parent.parent / "README.md"
NEEDS_HOME_ASSISTANT = pytest.mark.skipif(HA_PYTHON is None, reason="PYUSE_HA_PYTHON names no Python with Home "
                                                                    "Assistant (see the top of this file)")

AVAILABILITY = {"availability", "availability_mode", "availability_template", "availability_topic",
                "payload_available", "payload_not_available"}
COMMON = AVAILABILITY | {"device", "origin", "enabled_by_default", "entity_category", "icon", "json_attributes_topic",
                         "json_attributes_template", "object_id", "unique_id", "name", "qos", "encoding"}
VENDORED = {  # component: (required keys, optional keys)
    "text": ({"command_topic"}, COMMON | {"command_template", "max", "min", "mode", "pattern", "value_template",
                                          "state_topic", "optimistic", "retain"}),
    "sensor": ({"state_topic"}, COMMON | {"value_template", "device_class", "expire_after", "force_update",
                                          "last_reset_value_template", "suggested_display_precision",
                                          "state_class", "unit_of_measurement"}),
    "binary_sensor": ({"state_topic"}, COMMON | {"value_template", "device_class", "expire_after", "force_update",
                                                 "off_delay", "payload_on", "payload_off"}),
    "button": ({"command_topic"}, COMMON | {"command_template", "device_class", "payload_press", "retain"}),
}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "name", "hw_version", "sw_version",
               "via_device", "suggested_area", "configuration_url"}
DISCOVERY_TOPIC = re.compile(rf"{PREFIX}/(?P<component>\w+)/(?:[a-zA-Z0-9_-]+/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")


def vendored_problems(topic: str, config: dict[str, Any]) -> list[str]:
    """What Home Assistant 2024.1.6's schemas would refuse, by the vendored keys and the checks they make."""
    match = DISCOVERY_TOPIC.fullmatch(topic)
    if match is None or match["component"] not in VENDORED:
        return [f"{topic} is not a discovery topic of text, sensor, binary_sensor or button"]
    required, optional = VENDORED[match["component"]]
    problems = [f"missing {key}" for key in sorted(required - config.keys())]
    problems += [f"unknown key {key}" for key in sorted(config.keys() - required - optional)]
    problems += [f"{key} is not a topic to use" for key, value in config.items()
                 if key.endswith("topic") and (not isinstance(value, str) or not value or "#" in value or "+" in value)]
    device = config.get("device", {})
    if not device.get("identifiers") or device.keys() - DEVICE_KEYS:
        problems.append(f"a device needs identifiers and only these keys: {sorted(DEVICE_KEYS)}")
    if not isinstance(config.get("origin", {}).get("name"), str):
        problems.append("an origin needs a name")
    if not re.fullmatch(r"[a-z0-9-]+:[a-z0-9-]+", config.get("icon", "mdi:x")):
        problems.append("an icon is prefix:name")
    if not 0 <= config.get("min", 0) < config.get("max", 255) <= 255:
        problems.append("a text's length is 0 <= min < max <= 255")
    return problems


def home_assistant_check(configs: dict[str, Any], states: dict[str, str]) -> dict[str, Any]:
    """Home Assistant's own judgement, from its Python (tests/data/home_assistant_check.py)."""
    assert HA_PYTHON is not None
    done = subprocess.run([HA_PYTHON, str(HA_CHECK)], input=json.dumps(
        {"prefix": PREFIX, "configs": configs, "states": states}), capture_output=True, text=True, timeout=120,
        cwd=HA_CHECK.parent, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
async def home_assistant(mqtt_broker) -> AsyncIterator[MqttProbe]:
    """Subscribed as Home Assistant is: its discovery prefix, and (below) the topics the configs name."""
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    await probe.subscribe(f"{PREFIX}/#")
    await probe.subscribe("pyuse/#")
    yield probe
    probe.close()


def ha_config(tmp_path: Path, llm, devices, broker) -> Any:
    return make_config(tmp_path, llm, devices, broker=broker, homeassistant={"discovery": True},
                       discovery={"ha_prefix": PREFIX})


async def entities(probe: MqttProbe) -> dict[str, tuple[str, dict[str, Any]]]:
    """The gateway's entities by object id: (config topic, config), once all six have come."""
    await until(lambda: len({m.topic for m in probe.received(f"{PREFIX}/+/+/+/config")}) >= 6)
    return {message.topic.split("/")[-2]: (message.topic, message.json())
            for message in probe.received(f"{PREFIX}/+/+/+/config")}


async def task_state(probe: MqttProbe, topic: str, status: str, after: int = 0, timeout: float = 20) -> Received:
    return await probe.expect(topic, lambda m: m.json().get("status") == status, timeout=timeout, after=after)


async def test_home_assistant_sees_one_device_whose_text_entity_runs_commands(
        tmp_path, scripted_llm, shelly, mqtt_broker, home_assistant, caplog):
    llm = await scripted_llm({"conversations": [{"match": "before lunch", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nprint("done")'),
        "FINAL ANSWER: The desk plug is on."]}]})
    # A retained command would run again on every restart and reconnect: one left on the broker is refused.
    home_assistant.publish("pyuse/pyuse/ha/command", "get the desk plug going before lunch", retain=True)
    daemon = Daemon(ha_config(tmp_path, llm, [shelly_entry(shelly)], mqtt_broker))
    daemon.config.api.port = 0
    await daemon.start()
    try:
        found = await entities(home_assistant)
        assert sorted(found) == ["answer", "approve", "command", "confirmation", "deny", "task_status"]
        for topic, config in found.values():
            assert vendored_problems(topic, config) == [], topic
        configs = [config for _, config in found.values()]
        assert len({json.dumps(config["device"], sort_keys=True) for config in configs}) == 1  # one device
        assert len({config["unique_id"] for config in configs}) == 6
        assert {config["availability_topic"] for config in configs} == {"pyuse/pyuse/status"}
        assert (await home_assistant.expect("pyuse/pyuse/status")).text == configs[0]["payload_available"]

        text, sensor = found["command"][1], found["answer"][1]
        mark = home_assistant.mark()
        home_assistant.publish(text["command_topic"], "get the desk plug going before lunch")  # text.set_value
        done = (await task_state(home_assistant, sensor["state_topic"], "done", mark)).json()
        assert done["answer"] == "The desk plug is on." and done["text"] == "get the desk plug going before lunch"
        assert shelly.output is True
        assert daemon.gateway.task(done["task_id"]).origin == "homeassistant"
        seen = [m.json()["status"] for m in home_assistant.received(sensor["state_topic"])]
        assert seen == ["queued", "running", "done"]  # the retained command did not run
        assert [record for record in caplog.records if "retained Home Assistant command" in record.getMessage()]
        # The gateway's own discovery, which heard the configs long ago, passes over its entities quietly.
        assert not [device for device in daemon.gateway.devices() if device.key.startswith("ha:")]
        assert not [record for record in caplog.records if "discovery payload" in record.getMessage()]
    finally:
        await daemon.close()
    offline = await home_assistant.expect("pyuse/pyuse/status", lambda m: m.text == "offline")
    assert offline.text == configs[0]["payload_not_available"]


async def test_after_a_restart_the_latest_task_is_shown_as_the_store_has_it(
        tmp_path, scripted_llm, shelly, mqtt_broker, home_assistant):
    llm = await scripted_llm({"conversations": [{"match": "before lunch", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nprint("done")'),
        "FINAL ANSWER: The desk plug is on."]}]})
    first = Daemon(ha_config(tmp_path, llm, [shelly_entry(shelly)], mqtt_broker))
    first.config.api.port = 0
    await first.start()
    try:
        found = await entities(home_assistant)
        topic = found["answer"][1]["state_topic"]
        home_assistant.publish(found["command"][1]["command_topic"], "get the desk plug going before lunch")
        done = (await task_state(home_assistant, topic, "done")).json()
    finally:
        await first.close()
    # As a gateway that died mid-task leaves it: the retained state says running, for ever.
    home_assistant.publish(topic, json.dumps(done | {"status": "running", "answer": None}), retain=True)
    mark = home_assistant.mark()
    second = Daemon(ha_config(tmp_path, llm, [shelly_entry(shelly)], mqtt_broker))
    second.config.api.port = 0
    await second.start()
    try:
        assert (await task_state(home_assistant, topic, "done", mark)).json() == done
    finally:
        await second.close()


@NEEDS_HOME_ASSISTANT
async def test_home_assistants_own_schemas_accept_the_configs_and_show_the_answer(
        tmp_path, scripted_llm, shelly, mqtt_broker, home_assistant):
    llm = await scripted_llm({"conversations": [{"match": "before lunch", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nprint("done")'),
        "FINAL ANSWER: " + "The desk plug is on. " * 20]}]})
    daemon = Daemon(ha_config(tmp_path, llm, [shelly_entry(shelly)], mqtt_broker))
    daemon.config.api.port = 0
    await daemon.start()
    try:
        found = await entities(home_assistant)
        home_assistant.publish(found["command"][1]["command_topic"], "get the desk plug going before lunch")
        state = await task_state(home_assistant, found["answer"][1]["state_topic"], "done")
        question = await home_assistant.expect(found["confirmation"][1]["state_topic"])
    finally:
        await daemon.close()
    judged = home_assistant_check(dict(found.values()), {state.topic: state.text, question.topic: question.text})

    assert judged["problems"] == {}
    for component, (required, optional) in VENDORED.items():
        assert judged["keys"][component] == {"required": sorted(required), "optional": sorted(optional)}
    answer = state.json()["answer"]
    assert len(answer) > 255  # a state holds 255 characters; the whole answer is in the attributes
    assert judged["states"] == {"pyuse_pyuse_command": "get the desk plug going before lunch",
                                "pyuse_pyuse_task_status": "done", "pyuse_pyuse_answer": answer[:255],
                                "pyuse_pyuse_confirmation": "OFF"}


async def test_the_buttons_answer_only_questions_of_tasks_from_home_assistant(
        tmp_path, scripted_llm, psu, mqtt_broker, home_assistant):
    code = 'psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))'
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply(code), "FINAL ANSWER: The output stays off: you said no."]}]})
    daemon = Daemon(ha_config(tmp_path, llm, [psu_entry(psu)], mqtt_broker))
    daemon.config.api.port = 0
    await daemon.start()
    try:
        found = await entities(home_assistant)
        waiting = found["confirmation"][1]
        approve, deny = found["approve"][1], found["deny"][1]
        task_topic = found["task_status"][1]["state_topic"]

        # A task from the API asks through the API: the buttons cannot answer it, and the sensor does not show it.
        token = (daemon.config.gateway.data_dir / TOKEN_FILE).read_text().strip()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.post(f"{daemon.server.url}/api/tasks", json={"text": "switch the output on"}) as sent:
                assert sent.status == 202
            await until(lambda: bool(daemon.gateway.confirmations.pending), timeout=15)
            (api_question,) = daemon.gateway.pending_confirmations("api")
            mark = home_assistant.mark()
            home_assistant.publish(approve["command_topic"], approve["payload_press"])
            home_assistant.publish(deny["command_topic"], deny["payload_press"])
            home_assistant.publish(f"{PREFIX}/status", "online")  # Home Assistant's birth: the configs come again,
            await home_assistant.expect(f"{PREFIX}/+/+/+/config", after=mark)  # after the presses were taken
            assert not daemon.gateway.answer_confirmation(api_question.id, True, channel="homeassistant")
            assert daemon.gateway.pending_confirmations("api") == [api_question] and psu.output is False
            assert all(not m.json()["waiting"] for m in home_assistant.received(waiting["state_topic"]))
            async with http.post(f"{daemon.server.url}/api/confirmations/{api_question.id}",
                                 json={"approve": False}) as answered:
                assert answered.status == 200

        for button, output_on in ((deny, False), (approve, True)):
            mark = home_assistant.mark()
            home_assistant.publish(found["command"][1]["command_topic"], "switch the bench supply output on")
            shown = await home_assistant.expect(waiting["state_topic"], lambda m: m.json()["waiting"], after=mark,
                                                timeout=15)
            assert shown.json()["action"] == "OUTP ON" and shown.json()["device"] == "Bench Supply"
            assert psu.output is False  # nothing is switched before the person answers
            home_assistant.publish(button["command_topic"], button["payload_press"])
            done = (await task_state(home_assistant, task_topic, "done", mark)).json()
            assert (done["answer"] == "1") if output_on else done["answer"].startswith("The output stays off")
            assert psu.output is output_on
            assert not home_assistant.received(waiting["state_topic"])[-1].json()["waiting"]
    finally:
        await daemon.close()


@NEEDS_HOME_ASSISTANT
def test_the_readmes_automations_pass_home_assistants_schemas_and_the_voice_sentence_forwards_the_rest():
    assert HA_PYTHON is not None
    done = subprocess.run([HA_PYTHON, str(HA_AUTOMATIONS), str(README),
                           "ask the gateway to turn off every light in the kitchen"],
                          capture_output=True, text=True, timeout=120, cwd=HA_AUTOMATIONS.parent, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    judged = json.loads(done.stdout)
    assert len(judged["aliases"]) == 2
    assert judged["slots"] == {"request": "turn off every light in the kitchen"}
    assert "text.set_value" in README.read_text() and "entity_id: text.pyuse_command" in README.read_text()


def test_the_discovery_prefix_is_checked_as_a_topic_prefix():
    assert not load_config(None, env={}).homeassistant.discovery  # off until asked for
    assert load_config(None, env={"PYUSE_HOMEASSISTANT_PREFIX": "ha/main"}).homeassistant.prefix == "ha/main"
    with pytest.raises(ConfigError) as error:
        load_config(None, env={"PYUSE_HOMEASSISTANT_PREFIX": "ha/#"})
    assert "homeassistant.prefix: expected topic levels without + or #" in error.value.problems[0]
