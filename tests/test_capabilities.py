"""Capability handles and feedback that teaches (issue 10): a doc's methods become the handle's methods, a wrong
name lists the real ones, an answer must stand on code that ran, and the same failing code ends the task."""

from __future__ import annotations

from conftest import code_reply, make_config, psu_entry, shelly_entry, until
from simulators.base import SimContext
from simulators.zigbee2mqtt import ClimateSensor, Zigbee2MqttBridge

from gateway.agent.loop import NOTHING_RAN, REPEATED_FAILURE

MODEL_ONLY = {"fast_path": False}  # these commands are simple: without this the fast path would take them


async def test_the_handle_has_the_methods_its_doc_declares(tmp_path, shelly, psu, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly), psu_entry(psu)]))

    _, execution = await gateway.run_code(
        'plug = devices["desk_plug"]\nplug.on()\nprint(plug.is_on, type(plug).__name__)\nhelp(plug)\n'
        'print(isinstance(plug, Switch), isinstance(plug, ShellySwitch), isinstance(plug, Light))\n'
        'psu = devices["bench_psu"]\npsu.set_voltage(3.3, channel=2)\nprint(psu.measure_voltage(channel=2))\n'
        'import inspect\nprint(inspect.signature(psu.set_voltage))\n'
        'try:\n    psu.set_current(-1)\nexcept ValueError as error:\n    print(error)\n'
        'try:\n    psu.output("maybe")\nexcept ValueError as error:\n    print(error)\n', "capabilities")

    assert execution.status == "ok", execution.output
    lines = execution.output.splitlines()
    assert lines[0] == "True ShellySwitch" and shelly.output is True
    assert "class ShellySwitch: Shelly Gen2+ switch or plug" in lines[1]
    assert "    on()" in lines and "        Switch the relay on." in lines
    assert "    power_w: float (W)" in lines
    assert "True True False" in lines  # the classes the prompt names exist by those names
    assert psu.channels[1].volts_set == 3.3 and psu.channels[0].volts_set == 0
    assert "(volts: 'float', channel: 'int' = 1)" in lines
    assert "bench_psu.set_current(amps: float, channel=1): amps=-1 is out of range; expected at least 0" in lines
    assert "bench_psu.output(on: bool, channel=1): on='maybe' is not True or False" in lines


async def test_a_wrong_method_name_is_answered_with_the_real_ones(tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "switch the desk plug on", "replies": [
        code_reply('devices["desk_plug"].rpc_switch(True)'),
        code_reply('devices["desk_plug"].on()\nfinal_answer("The desk plug is on.")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], agent=MODEL_ONLY))

    result = await gateway.run_task("switch the desk plug on")

    assert result.status == "done" and result.turns == 2 and shelly.output is True
    observation = gateway.store.steps(result.task_id)[0].observation
    assert ("AttributeError: ShellySwitch 'desk_plug' has no 'rpc_switch'. Methods: on(), off(). "
            "Properties: is_on: bool, power_w: float (W). Native calls: get(path)") in observation
    assert result.calls == 1


async def test_the_same_failing_code_three_times_ends_the_task(tmp_path, scripted_llm, shelly, gateway_factory):
    wrong = code_reply('devices["desk_plug"].set_brightness(50)\nfinal_answer("Done.")')
    llm = await scripted_llm({"conversations": [{"match": "dim the desk plug", "replies": [wrong] * 8}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], agent=MODEL_ONLY))

    result = await gateway.run_task("dim the desk plug")

    assert result.status == "failed" and result.turns == 3 and result.answer is None
    assert result.error.startswith("could not 'dim the desk plug': the same code failed 3 times: AttributeError: "
                                   "ShellySwitch 'desk_plug' has no 'set_brightness'")
    observations = [step.observation for step in gateway.store.steps(result.task_id)]
    assert REPEATED_FAILURE not in observations[0] and observations[1].endswith(REPEATED_FAILURE)


async def test_an_answer_before_any_code_ran_is_sent_back_once(tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [
        {"match": "turn the desk plug on", "replies": [
            "The desk plug is on now.", code_reply('devices["desk_plug"].on()\nfinal_answer("It is on.")')]},
        {"match": "what can you do", "replies": ["I switch your devices.", "I switch the desk plug."]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], agent=MODEL_ONLY))

    claimed = await gateway.run_task("turn the desk plug on")
    chatted = await gateway.run_task("what can you do?")

    assert claimed.status == "done" and claimed.answer == "It is on." and shelly.output is True
    assert gateway.store.steps(claimed.task_id)[0].observation == NOTHING_RAN
    assert claimed.turns == 2 and claimed.calls == 1
    # A second answer without code is taken: nothing here needs a device.
    assert chatted.status == "done" and chatted.answer == "I switch the desk plug." and chatted.calls == 0


async def test_an_offline_sensor_is_not_read_as_if_it_were_there(tmp_path, mqtt_broker, gateway_factory):
    sensor = ClimateSensor("lab_climate", "Lab Climate Sensor")
    bridge = Zigbee2MqttBridge(devices=[sensor])
    await bridge.start(SimContext(mqtt_port=mqtt_broker.port))
    try:
        gateway = await gateway_factory(make_config(tmp_path, broker=mqtt_broker))
        await until(lambda: gateway.registry.get("lab_climate_sensor") is not None)
        sensor.apply({"temperature": 21.5})  # a report
        await until(lambda: gateway.registry.get("lab_climate_sensor").state.get("temperature") == 21.5)
        _, before = await gateway.run_code('print(devices["lab_climate_sensor"].temperature)', "online")
        sensor.apply({"fault": "offline"})
        await until(lambda: not gateway.registry.get("lab_climate_sensor").online)
        _, after = await gateway.run_code('devices["lab_climate_sensor"].temperature', "offline")
    finally:
        await bridge.stop()

    assert before.output == "21.5\n"
    assert after.status == "error"
    assert "ConnectionError: lab_climate_sensor is offline: it cannot be reached or read now" in after.output


async def test_calls_done_before_an_error_are_named_so_they_are_not_repeated(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))

    _, execution = await gateway.run_code('devices["desk_plug"].on()\ndevices["desk_plug"].brightness', "half done")

    assert execution.status == "error" and shelly.output is True
    lines = execution.output.splitlines()
    assert lines[0] == "Done before the error, no need to repeat: desk_plug.on()"
    assert lines[-1].startswith("AttributeError: ShellySwitch 'desk_plug' has no 'brightness'")


async def test_an_answer_that_read_no_device_is_sent_back_once(tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "is the desk plug on", "replies": [
        code_reply('final_answer("Yes, it is on.")'),
        code_reply('final_answer("on" if devices["desk_plug"].is_on else "off")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], agent=MODEL_ONLY))

    result = await gateway.run_task("is the desk plug on?")

    assert result.status == "done" and result.answer == "off" and result.turns == 2
    assert gateway.store.steps(result.task_id)[0].observation == NOTHING_RAN


async def test_an_answer_after_a_refusal_says_the_gateway_refused(tmp_path, scripted_llm, psu, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply('devices["bench_psu"].output(True)'),
        code_reply('final_answer("The supply is ready.")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [psu_entry(psu)], agent=MODEL_ONLY))

    result = await gateway.run_task("switch the supply output on")  # nobody can confirm it

    assert result.status == "done" and psu.channels[0].output is False
    assert result.answer == "The supply is ready.\n(Not done, refused: what was asked of bench_psu; see the trace.)"
