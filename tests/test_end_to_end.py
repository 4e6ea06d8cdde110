"""Issue 2 acceptance: command -> scripted model -> sandboxed code -> real device simulator -> answer."""

from __future__ import annotations

import asyncio
import os
import time

from conftest import code_reply, make_config, psu_entry, shelly_entry, tasmota_entry


async def test_turn_on_the_plug(tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "turn on the plug", "replies": [
        code_reply('plug = devices["desk_plug"]\nplug.rpc("Switch.Set", id=0, on=True)\n'
                   'plug.rpc("Switch.GetStatus", id=0)["output"]'),
        "FINAL ANSWER: The desk plug is on."]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))
    assert shelly.output is False

    result = await gateway.run_task("turn on the plug")

    assert result.status == "done", result.error
    assert shelly.output is True
    assert result.answer == "The desk plug is on."
    steps = gateway.store.steps(result.task_id)
    assert steps[0].observation == "True"
    audit = gateway.store.audit_rows(result.task_id)
    assert [(row.device_id, row.method, row.target, row.outcome) for row in audit] == [
        ("desk_plug", "rpc", "Switch.Set", "ok"), ("desk_plug", "rpc", "Switch.GetStatus", "ok")]


async def test_switch_the_tasmota_plug_off(tmp_path, scripted_llm, mqtt_broker, tasmota, gateway_factory):
    tasmota.power = True
    llm = await scripted_llm({"conversations": [{"match": "tasmota plug off", "replies": [
        code_reply('p = devices["tv_plug"]\nt = p.base_topic\n'
                   'p.request(f"cmnd/{t}/Power", "OFF", reply_topic=f"stat/{t}/RESULT")'),
        'Thought: It reported OFF.\nFINAL ANSWER: The TV plug is off.']}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [tasmota_entry(tasmota)], broker=mqtt_broker))

    result = await gateway.run_task("switch the Tasmota plug off")

    assert result.status == "done", result.error
    assert tasmota.power is False
    assert gateway.store.steps(result.task_id)[0].observation == "{'POWER': 'OFF'}"


async def test_set_the_supply_and_report_the_measured_voltage(tmp_path, scripted_llm, psu, gateway_factory):
    psu.load_ohms = 12.5
    llm = await scripted_llm({"conversations": [{"match": "set the supply to 5 v", "replies": [
        code_reply('psu = devices["bench_psu"]\npsu.write("VOLT 5")\npsu.write("OUTP ON")\n'
                   'measured = float(psu.query("MEAS:VOLT?"))\nfinal_answer(f"The supply measures {measured} V.")')
    ]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [psu_entry(psu)]))
    asked: list[str] = []

    async def user_says_yes(request) -> bool:
        asked.append(request.action)
        return True

    result = await gateway.run_task("set the supply to 5 V and tell me the measured voltage", confirm=user_says_yes)

    assert result.status == "done", result.error
    assert asked == ["OUTP ON"]  # the output needs a yes; 5 V does not
    assert psu.volts_set == 5.0 and psu.output is True
    reported = psu.measure()[0]
    assert reported == 5.0
    assert result.answer == f"The supply measures {reported} V."


async def test_the_execution_clock_stops_while_a_person_is_asked(tmp_path, scripted_llm, psu, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply('psu = devices["bench_psu"]\npsu.write("OUTP ON")\nsleep(0.5)\nfinal_answer("on")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [psu_entry(psu)], sandbox={"exec_timeout_s": 1.0}))

    async def thinks_it_over_then_says_yes(request) -> bool:
        await asyncio.sleep(3.0)  # three times the execution's limit: a person reads before they answer
        return True

    result = await gateway.run_task("switch the output on", confirm=thinks_it_over_then_says_yes)

    assert (result.status, result.answer) == ("done", "on"), gateway.store.steps(result.task_id)[0].observation
    assert psu.output is True and result.turns == 1


async def test_a_traceback_is_the_observation_and_the_next_turn_fixes_it(tmp_path, scripted_llm, shelly,
                                                                         gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "plug power", "replies": [
        code_reply('plug = devices["desk_plug"]\nstatus = plug.rpc("Switch.GetStatus", id=0)\nstatus["power"]'),
        code_reply('print(sorted(status))\nfinal_answer(f"{status[\'apower\']} W")', "The key is apower."),
    ]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))

    result = await gateway.run_task("what is the plug power?")

    assert result.status == "done", result.error
    first, second = gateway.store.steps(result.task_id)
    assert 'Traceback (most recent call last):\n  File "<turn 1>", line 3' in first.observation
    assert first.observation.rstrip().endswith("KeyError: 'power'")
    assert "job.py" not in first.observation  # the sandbox's own frames are not the model's business
    assert "'apower'" in second.observation  # `status` from turn 1 was still there in turn 2
    assert result.answer == "0.0 W"


async def test_an_endless_loop_is_stopped_and_the_task_goes_on(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "spin", "replies": [
        code_reply("counter = 1\nwhile True:\n    pass"),
        code_reply("final_answer(f'still here, counter={counter}')"),
    ]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, sandbox={"exec_timeout_s": 1.0}))
    lags: list[float] = []

    async def heartbeat() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - started - 0.02)

    beat = asyncio.create_task(heartbeat())
    result = await gateway.run_task("spin forever")
    beat.cancel()

    assert result.status == "done", result.error
    first = gateway.store.steps(result.task_id)[0]
    assert "ExecutionTimeout: this execution ran past its wall-clock limit" in first.observation
    assert 'File "<turn 1>", line 2' in first.observation
    assert first.exec_ms >= 1000
    assert result.answer == "still here, counter=1"  # the soft timeout kept the namespace
    assert len(lags) > 20 and max(lags) < 0.5


async def test_a_loop_that_swallows_the_timeout_is_killed_and_replaced(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "stubborn", "replies": [
        code_reply("import time\nx = 1\nwhile True:\n    try:\n        time.sleep(10)\n    except BaseException:\n"
                   "        pass"),
        code_reply("print('x' in globals())\nfinal_answer('recovered')"),
    ]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, sandbox={"exec_timeout_s": 0.5}))

    result = await gateway.run_task("a stubborn loop")

    assert result.status == "done", result.error
    first, second = gateway.store.steps(result.task_id)
    assert "did not stop at the soft time limit" in first.observation
    assert "its variables are lost" in first.observation
    assert second.observation == "False"


async def test_a_device_that_is_not_exposed_is_refused_and_untouched(tmp_path, scripted_llm, shelly,
                                                                     gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "hidden plug", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)'),
        "FINAL ANSWER: I may not use that plug.",
    ]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly, exposed=False)]))

    result = await gateway.run_task("turn on the hidden plug")

    assert result.status == "done", result.error
    first = gateway.store.steps(result.task_id)[0]
    assert "KeyError: \"no device has the id 'desk_plug'" in first.observation
    assert shelly.output is False


async def test_forged_calls_for_unexposed_devices_are_denied_by_the_broker(tmp_path, scripted_llm, shelly,
                                                                           gateway_factory):
    forged = ('channel = devices["visible"]._channel\n'
              'try:\n'
              '    channel.call("desk_plug", "rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": True}})\n'
              'except PermissionError as e:\n'
              '    print("refused:", e)\n'
              'import socket\n'
              'try:\n'
              f'    socket.create_connection(("127.0.0.1", {shelly.port}), timeout=1)\n'
              'except OSError as e:\n'
              '    print("direct:", e)')
    llm = await scripted_llm({"conversations": [{"match": "forge", "replies": [
        code_reply(forged), "FINAL ANSWER: done"]}]})
    visible = shelly_entry(shelly, id="visible", name="Visible")
    hidden = shelly_entry(shelly, exposed=False)
    gateway = await gateway_factory(make_config(tmp_path, llm, [visible, hidden]))

    result = await gateway.run_task("forge a call")

    observation = gateway.store.steps(result.task_id)[0].observation
    assert "refused: device 'desk_plug' is not exposed to this task" in observation
    assert "direct: [Errno 1] Operation not permitted" in observation  # seccomp: no socket() at all
    assert shelly.output is False
    denied = [row for row in gateway.store.audit_rows(result.task_id) if row.outcome == "denied"]
    assert [(row.device_id, row.target) for row in denied] == [("desk_plug", "Switch.Set")]


async def test_the_job_environment_holds_no_secret(tmp_path, scripted_llm, gateway_factory, monkeypatch):
    secret = "sk-test-do-not-leak-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    llm = await scripted_llm({"conversations": [{"match": "environment", "replies": [
        code_reply("import os\nprint(dict(os.environ))\ntry:\n    print(open('/proc/self/environ','rb').read())\n"
                   "except PermissionError:\n    print('refused')\nprint(os.getcwd())"),
        "FINAL ANSWER: checked"]}]})
    from gateway.config import load_config

    config = load_config(None, env={**os.environ, "PYUSE_GATEWAY_DATA_DIR": str(tmp_path / "data"),
                                    "PYUSE_LLM_BASE_URL": llm.base_url, "PYUSE_LLM_MODEL": llm.model})
    assert config.llm.api_key.get_secret_value() == secret
    gateway = await gateway_factory(config)

    result = await gateway.run_task("show the environment")

    observation = gateway.store.steps(result.task_id)[0].observation
    assert observation.splitlines()[0] == "{}"
    assert observation.splitlines()[1] in ("b''", "refused")  # refused under Landlock
    assert observation.splitlines()[2] == str(tmp_path / "data" / "scratch" / result.task_id)
    assert secret not in observation


async def test_the_model_server_failing_twice_is_retried(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "flaky", "errors": [500, 500],
                                                  "replies": [code_reply('final_answer("third time lucky")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm))

    result = await gateway.run_task("a flaky model")

    assert result.status == "done", result.error
    assert result.answer == "third time lucky"
    assert len(llm.requests) == 3


async def test_a_rejected_api_key_fails_the_task_clearly(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"api_key": "right", "conversations": [{"match": "x", "replies": ["FINAL ANSWER: x"]}]})
    config = make_config(tmp_path, llm, llm={"api_key": "wrong"})
    gateway = await gateway_factory(config)

    result = await gateway.run_task("x marks the spot")

    assert result.status == "failed"
    assert "rejected the API key (401)" in result.error and "OPENAI_API_KEY" in result.error
    assert len(llm.requests) == 1  # 401 is not retried
    assert gateway.task(result.task_id).error == result.error


async def test_an_unknown_model_fails_with_the_models_available(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": []})
    gateway = await gateway_factory(make_config(tmp_path, llm, llm={"model": "gpt-17"}))

    result = await gateway.run_task("anything")

    assert result.status == "failed"
    assert "'gpt-17'" in result.error and "(404)" in result.error and "Models there: scripted" in result.error


async def test_a_task_can_be_cancelled_and_is_recorded_as_cancelled(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "slow", "replies": [code_reply("import time\ntime.sleep(30)")]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, sandbox={"exec_timeout_s": 60}))
    observed: list[str] = []

    task = asyncio.create_task(gateway.run_task("a slow job", on_event=lambda event: observed.append(event.kind)))
    while "code" not in observed:
        await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass

    record = gateway.store.list_tasks(limit=1)[0]
    assert record.status == "cancelled" and record.finished_at is not None
    assert not list((tmp_path / "data" / "scratch").iterdir())  # the job and its scratch are gone


async def test_the_task_timeout_ends_a_task_that_runs_too_long(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "nap", "replies": [code_reply("sleep(1.5)")] * 10}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, agent={"task_timeout_s": 2.0}))

    result = await gateway.run_task("take a nap")

    assert result.status == "timeout"
    assert "[agent] task_timeout_s" in result.error
    assert 1 <= result.turns <= 2


async def test_the_token_budget_stops_a_task_before_the_call_that_would_exceed_it(tmp_path, scripted_llm,
                                                                                  gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "chatty", "replies": [code_reply("print('x' * 3000)")] * 10}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, agent={"max_tokens_per_task": 3000}))

    result = await gateway.run_task("a chatty task")

    assert result.status == "failed" and "token budget exhausted" in result.error
    assert result.tokens <= 3000
    assert len(llm.requests) == result.turns


async def test_non_streaming_mode_gives_the_same_result(tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "plug on", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nfinal_answer("on")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], llm={"stream": False}))

    result = await gateway.run_task("plug on")

    assert result.status == "done" and shelly.output is True
    assert llm.requests[0].get("stream") in (None, False)
    assert result.tokens > 0
