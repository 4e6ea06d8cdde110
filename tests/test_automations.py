"""Issue 7: automations, from a Zigbee2MQTT simulator's MQTT message to the light, through the real broker."""

from __future__ import annotations

import time

import paho.mqtt.client as paho
import pytest

from conftest import code_reply, make_config, until
from gateway.automations import Automations
from gateway.config import AutomationEntry, AutomationTrigger
from gateway.runner import TaskRunner
from simulators.base import SimContext
from simulators.zigbee2mqtt import Bulb, DoorLock, MotionSensor, Zigbee2MqttBridge

MOTION_TOPIC = "zigbee2mqtt/Hallway Motion Sensor"
LIGHT_FOR = '''TRIGGERS = ["turn on the hallway light for {minutes} minutes"]


def hallway_light_for(minutes: int) -> str:
    """Turn the hallway light on for some minutes, then off again."""
    light = devices["hallway_light"]
    light.request(f"{light.base_topic}/set", {"state": "ON"}, reply_topic=light.base_topic)
    sleep(minutes * 60)
    light.request(f"{light.base_topic}/set", {"state": "OFF"}, reply_topic=light.base_topic)
    return f"The hallway light was on for {minutes} minutes."
'''
MODEL_CODE = ('light = devices["hallway_light"]\n'
              'light.request(f"{light.base_topic}/set", {"state": "ON"}, reply_topic=light.base_topic)\n'
              'sleep(120)\n'
              'light.request(f"{light.base_topic}/set", {"state": "OFF"}, reply_topic=light.base_topic)\n'
              'final_answer("The hallway light was on for 2 minutes.")')


@pytest.fixture
async def hallway(mqtt_broker):
    devices = {"motion": MotionSensor("motion", "Hallway Motion Sensor"), "light": Bulb("light", "Hallway Light"),
               "lock": DoorLock("lock", "Front Door Lock")}
    bridge = Zigbee2MqttBridge(devices=devices.values())
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    yield devices
    await bridge.stop()


@pytest.fixture
async def start_automations(tmp_path, mqtt_broker, hallway, gateway_factory):
    engines: list[Automations] = []

    async def start(entries: list[AutomationEntry], llm=None, clock_speed: float = 60.0) -> Automations:
        config = make_config(tmp_path, llm, broker=mqtt_broker, gateway={"clock_speed": clock_speed})
        config.automations = entries
        gateway = await gateway_factory(config)
        await until(lambda: len(gateway.registry.all()) == len(hallway))
        automations = Automations(gateway, TaskRunner(gateway))
        await automations.start()
        engines.append(automations)
        # The triggers' subscriptions are sent but not yet acknowledged; the broker takes a connection's packets in
        # order, so once a later one is acknowledged they hold too, and a message published now is not lost.
        (await gateway.mqtt.subscribe("test/triggers-ready", lambda message: None)).cancel()
        return automations

    yield start
    for automations in engines:
        await automations.close()


def publish(broker, topic: str, payload: str) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
    client.loop_stop()


def write_skill(automations: Automations, name: str, source: str) -> None:
    directory = automations.gateway.skills.directory
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)


async def light_cycle(light: Bulb) -> float:
    """Wait for the light to go on and then off; returns how long it was on (real seconds)."""
    await until(lambda: light.values["state"] == "ON")
    on_at = time.monotonic()
    await until(lambda: light.values["state"] == "OFF")
    return time.monotonic() - on_at


async def test_motion_turns_the_light_on_for_two_minutes_and_the_second_time_needs_no_model(
        scripted_llm, hallway, start_automations):
    llm = await scripted_llm({"conversations": [
        {"match": "save as a skill", "replies": [f"```python\n{LIGHT_FOR}```"]},
        {"match": "turn on the hallway light for 2 minutes", "replies": [code_reply(MODEL_CODE)]}]})
    entry = AutomationEntry(name="hallway-motion-light", action="turn on the hallway light for 2 minutes",
                            trigger=AutomationTrigger(mqtt=MOTION_TOPIC, when="occupancy == true"))
    automations = await start_automations([entry], llm)  # the clock runs 60 times faster: 2 minutes are 2 s
    automation = automations.get("hallway-motion-light")

    hallway["motion"].apply({"illuminance": 80})  # a report without occupancy: the condition filters it out
    hallway["motion"].apply({"occupancy": True})
    on_for = await light_cycle(hallway["light"])

    assert on_for >= 1.9  # sleep(120) on the gateway clock
    await until(lambda: automation.skill == "hallway_light_for" and not automation.active)
    model_calls = len(llm.requests)
    assert model_calls == 2  # the task, then writing the skill
    first = automations.gateway.task(automation.last_task)
    assert first.origin == "automation:hallway-motion-light" and first.status == "done" and first.turns == 1

    hallway["motion"].apply({"occupancy": True})
    assert await light_cycle(hallway["light"]) >= 1.9
    await until(lambda: automation.runs == 2 and not automation.active)

    assert len(llm.requests) == model_calls  # the second trigger made no model call
    second = automations.gateway.task(automation.last_task)
    assert second.status == "done" and second.processed_locally and second.origin == first.origin
    assert second.answer == "The hallway light was on for 2 minutes."
    assert automations.gateway.store.automation_records()["hallway-motion-light"]["skill"] == "hallway_light_for"


async def test_an_automation_that_republishes_its_own_trigger_is_stopped_and_reported(mqtt_broker, hallway,
                                                                                    start_automations):
    entry = AutomationEntry(name="echo", skill="set_hallway_light",
                            trigger=AutomationTrigger(mqtt="zigbee2mqtt/Hallway Light/set"))
    automations = await start_automations([entry])
    write_skill(automations, "set_hallway_light", '''def set_hallway_light() -> str:
    """Set the hallway light on (again)."""
    light = devices["hallway_light"]
    light.publish(f"{light.base_topic}/set", {"state": "ON"})
    return "set"
''')
    reports = []
    automations.listeners.append(lambda what, automation: reports.append((what, automation.name)))

    publish(mqtt_broker, "zigbee2mqtt/Hallway Light/set", '{"state": "ON"}')
    automation = automations.get("echo")
    await until(lambda: automation.stopped is not None and not automation.active)

    assert "its own trigger" in automation.stopped and "a loop" in automation.stopped
    assert [report for report in reports if report[0] != "ran"] == [("stopped", "echo")]
    assert reports[-1] == ("ran", "echo")  # the run that was refused, reported with its task
    assert automations.gateway.store.automation_records()["echo"]["stopped"] == automation.stopped
    run = automations.gateway.task(automation.last_task)
    assert run.status == "failed" and "PermissionError" in run.error
    assert [row.outcome for row in automations.gateway.store.audit_rows(run.id)] == ["denied"]

    publish(mqtt_broker, "zigbee2mqtt/Hallway Light/set", '{"state": "ON"}')  # stopped: nothing more runs
    await until(lambda: hallway["light"].values["state"] == "ON")
    assert automation.runs == 1 and not automation.active

    automations.resume("echo")
    assert automation.stopped is None and automations.fire(automation, {"manual": True})


async def test_an_automation_triggered_too_often_is_stopped(mqtt_broker, hallway, start_automations):
    entry = AutomationEntry(name="flood", skill="light_state", max_runs_per_minute=3,
                            trigger=AutomationTrigger(mqtt="test/flood"))
    automations = await start_automations([entry], clock_speed=1.0)
    write_skill(automations, "light_state", 'def light_state() -> str:\n    """The light\'s state."""\n'
                                            '    return str(devices["hallway_light"].state.get("state"))\n')
    automation = automations.get("flood")

    for count in range(1, 7):
        publish(mqtt_broker, "test/flood", "x")
        await until(lambda: (automation.runs == count or automation.stopped) and not automation.active)

    assert automation.runs == 3
    assert "more than 3 times in a minute" in automation.stopped


async def test_a_dangerous_action_in_an_automation_is_denied_without_asking(hallway, start_automations):
    entry = AutomationEntry(name="night-unlock", skill="unlock_front_door", trigger=AutomationTrigger(at="03:00"))
    automations = await start_automations([entry])
    write_skill(automations, "unlock_front_door", '''def unlock_front_door() -> str:
    """Unlock the front door."""
    lock = devices["front_door_lock"]
    lock.request(f"{lock.base_topic}/set", {"state": "UNLOCK"}, reply_topic=lock.base_topic)
    return "unlocked"
''')
    asked = []
    automations.gateway.confirmations.listeners.append(lambda *args: asked.append(args))
    automation = automations.get("night-unlock")

    assert automations.fire(automation, {"manual": True})
    await until(lambda: automation.runs == 1 and not automation.active)

    run = automations.gateway.task(automation.last_task)
    assert run.status == "failed" and "needs a person's confirmation" in run.error
    assert [row.outcome for row in automations.gateway.store.audit_rows(run.id)] == ["denied"]
    assert hallway["lock"].values["state"] == "LOCK" and asked == []


async def test_schedules_debounce_and_the_concurrency_limit(hallway, start_automations):
    write_skill_later = 'def pause() -> str:\n    """Wait a while."""\n    sleep(30)\n    return "waited"\n'
    entries = [AutomationEntry(name="tick", skill="pause", trigger=AutomationTrigger(every="10s")),
               AutomationEntry(name="slow", skill="pause", trigger=AutomationTrigger(mqtt="test/slow"),
                               debounce_s=0.0, max_concurrent=1)]
    automations = await start_automations(entries, clock_speed=100.0)  # 10 s are 0.1 s; sleep(30) is 0.3 s
    write_skill(automations, "pause", write_skill_later)
    tick, slow = automations.get("tick"), automations.get("slow")

    await until(lambda: tick.runs >= 2)
    assert all(task.origin == "automation:tick" for task in automations.gateway.store.list_tasks(limit=2))

    assert automations.fire(slow, {}) and not automations.fire(slow, {})  # one at a time: the second is dropped
    assert slow.dropped == 1
    await until(lambda: slow.runs == 1 and not slow.active)


async def test_automations_through_the_api_are_kept_and_one_in_the_config_cannot_be_deleted(
        tmp_path, hallway, start_automations):
    config_entry = AutomationEntry(name="from-config", skill="pause", trigger=AutomationTrigger(every="1d"))
    automations = await start_automations([config_entry])
    added = automations.add(AutomationEntry(name="from-api", action="turn off the hallway light",
                                            trigger=AutomationTrigger(device="hallway_motion_sensor",
                                                                      when="occupancy == false")))
    assert automations.gateway.store.automation_records()["from-api"]["definition"]
    hallway["light"].values["state"] = "ON"

    hallway["motion"].apply({"occupancy": True})
    await until(lambda: automations.gateway.registry.get("hallway_motion_sensor").state.get("occupancy") is True)
    hallway["motion"].apply({"occupancy": False})  # the condition becomes true: the fast path turns it off
    await until(lambda: added.runs == 1 and not added.active)
    assert hallway["light"].values["state"] == "OFF"
    assert automations.gateway.task(added.last_task).processed_locally

    with pytest.raises(ValueError, match="defined in the config file"):
        await automations.remove("from-config")
    await automations.remove("from-api")
    assert "from-api" not in automations.gateway.store.automation_records()


HALLWAY_BRIGHTNESS = '''def hallway_brightness(level: int) -> str:
    """Set the hallway light's brightness (0-254)."""
    light = devices["hallway_light"]
    light.request(f"{light.base_topic}/set", {"state": "ON", "brightness": level}, reply_topic=light.base_topic)
    return f"The hallway light is at {level}."
'''


async def test_a_burst_of_triggers_is_served_by_a_few_warm_jobs(hallway, start_automations):
    """Twenty triggers at once: every run is done, by jobs handed from one run to the next rather than a fork
    each (the pool grows by at most one job per START_EVERY_S while its jobs are busy)."""
    entry = AutomationEntry(name="burst", skill="hallway_brightness", args={"level": 200},
                            trigger=AutomationTrigger(mqtt="test/burst"), max_concurrent=20, max_runs_per_minute=0)
    automations = await start_automations([entry])
    write_skill(automations, "hallway_brightness", HALLWAY_BRIGHTNESS)
    burst = automations.get("burst")

    assert all(automations.fire(burst, {"payload": index}) for index in range(20))
    await until(lambda: burst.runs == 20 and not burst.active, timeout=30)
    runs = automations.gateway.store.list_tasks(limit=20)
    assert [task.status for task in runs] == ["done"] * 20 and {task.origin for task in runs} == {"automation:burst"}
    assert hallway["light"].values["brightness"] == 200 and burst.dropped == 0
    assert len(automations.gateway.sandbox.zygote.jobs) < 20 / 2, "a job per run is a fork storm"
