"""The sandbox on its own: the real manager, zygote and locked-down jobs, with a broker stand-in that echoes
calls back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SandboxSection
from gateway.sandbox.manager import Sandbox
from gateway.sandbox.messages import CallRequest
from gateway.sandbox.session import SandboxSession

DEVICES = [{"id": "lamp", "name": "Lamp", "kind": "shelly_switch", "transport": "http", "area": "hall",
            "state": {"output": False}}]


async def echo(request: CallRequest) -> dict[str, Any]:
    return {"id": request.id, "ok": True, "result": {"method": request.method, "args": request.args}}


@pytest.fixture
async def sandboxes(tmp_path: Path) -> AsyncIterator[list[Sandbox]]:
    started: list[Sandbox] = []
    yield started
    for sandbox in started:
        await sandbox.close()


async def make_session(sandboxes: list[Sandbox], tmp_path: Path, **settings: object) -> SandboxSession:
    sandbox = Sandbox(SandboxSection(**{"exec_timeout_s": 2.0, "memory_mb": 256, "cpu_s": 10, **settings}),
                      tmp_path)
    await sandbox.start()
    sandboxes.append(sandbox)
    return sandbox.session(f"task{len(sandboxes)}", lambda: {"devices": [{**DEVICES[0], "state": {"output": True}}]}, echo)


async def test_last_expression_is_echoed_and_none_is_not(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    assert (await box.execute("x = [1, 2]\nx")).output == "[1, 2]\n"
    assert (await box.execute("print('hi')\nNone")).output == "hi\n"
    await box.close()


async def test_handles_carry_state_and_calls_reach_the_broker(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    result = await box.execute('lamp = devices["lamp"]\nprint(lamp.state, lamp.area)\n'
                               'lamp.rpc("Switch.Set", id=0, on=True)')
    assert result.output.splitlines() == [
        "{'output': True} hall",
        "{'method': 'rpc', 'args': {'rpc_method': 'Switch.Set', 'params': {'id': 0, 'on': True}}}"]
    assert (await box.execute('[d.id for d in devices.find("LAM")], devices.find(area="kitchen")')).output \
        == "(['lamp'], [])\n"
    await box.close()


async def test_a_syntax_error_is_reported_with_its_line(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    result = await box.execute("x = 1\nif x\n    print(x)")
    assert result.status == "error"
    assert 'File "<turn 1>", line 2' in result.output and "SyntaxError" in result.output
    await box.close()


async def test_final_answer_cannot_be_swallowed_by_except_exception(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    result = await box.execute("try:\n    final_answer(42)\nexcept Exception:\n    print('swallowed')")
    assert result.status == "final" and result.answer == "42" and "swallowed" not in result.output
    await box.close()


async def test_memory_limit_gives_a_memory_error_and_the_job_lives_on(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path, memory_mb=128)
    result = await box.execute("kept = 7\nblob = bytearray(1 << 30)")
    assert result.status == "error" and "MemoryError" in result.output
    assert (await box.execute("kept")).output == "7\n"
    await box.close()


async def test_cpu_budget_stops_a_busy_loop_with_a_traceback(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path, exec_timeout_s=20, cpu_s=1)
    result = await box.execute("while True:\n    pass")
    assert result.status == "error" and "CPUTimeExceeded" in result.output
    await box.close()


async def test_output_flood_keeps_head_and_tail_and_kills_the_job(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path, output_limit_bytes=200_000)
    result = await box.execute("print('START')\nfor i in range(10**7):\n    print(i)")
    assert result.status == "killed"
    assert result.output.startswith("START\n0\n1\n")
    assert "bytes of output truncated]..." in result.output
    assert "output limit exceeded" in result.output and "its variables are lost" in result.output
    assert len(result.output) < 25_000
    assert (await box.execute("print('fresh')")).output == "fresh\n"
    await box.close()


async def test_a_job_that_exits_is_replaced_and_the_model_is_told(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    await box.execute("a = 1")
    result = await box.execute("import os\nos._exit(3)")
    assert result.status == "killed" and "exited with code 3" in result.output
    after = await box.execute("print('a' in globals())")
    assert after.output == "False\n"
    await box.close()


async def test_scratch_is_a_private_bounded_tmpfs_removed_at_the_end(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path, scratch_mb=4)
    result = await box.execute("open('notes.txt', 'w').write('hi')\nimport os\nos.listdir('.')")
    assert result.output == "['notes.txt']\n"
    assert (await box.execute("open('notes.txt').read()")).output == "'hi'\n"  # later turns see it
    assert not (tmp_path / "scratch" / "task1" / "notes.txt").exists()  # the gateway's disk does not
    full = await box.execute("open('big', 'wb').write(b'x' * (8 << 20))")
    assert "No space left on device" in full.output
    await box.close()
    assert not (tmp_path / "scratch" / "task1").exists()


async def test_sleep_refuses_to_outlast_the_execution(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path, exec_timeout_s=1)
    result = await box.execute("sleep(5)")
    assert "ValueError: sleep(5) would outlast this execution" in result.output
    await box.close()


async def test_the_zygote_is_restarted_when_it_dies(sandboxes, tmp_path):
    import os
    import signal

    box = await make_session(sandboxes, tmp_path)
    assert (await box.execute("1 + 1")).output == "2\n"
    zygote = sandboxes[0].zygote
    os.kill(zygote.pid, signal.SIGKILL)
    for _ in range(200):
        if not zygote.running:
            break
        await asyncio.sleep(0.01)
    result = await box.execute("1 + 2")
    # The job died with its zygote, whether that is noticed before this turn or during it; the model is told.
    assert "its variables are lost" in result.output
    assert (await box.execute("1 + 3")).output.endswith("4\n")
    await box.close()


async def test_a_malformed_message_ends_the_job_not_the_gateway(sandboxes, tmp_path):
    box = await make_session(sandboxes, tmp_path)
    result = await box.execute('devices["lamp"]._channel._sock.send(b"{not json")\nimport time\ntime.sleep(1)')
    assert result.status == "killed" and "malformed message" in result.output
    assert (await box.execute("'ok'")).output == "'ok'\n"
    await box.close()


async def test_state_changes_reach_the_job_between_turns_and_handles_keep_their_identity(sandboxes, tmp_path):
    sandbox = Sandbox(SandboxSection(exec_timeout_s=2.0), tmp_path)
    await sandbox.start()
    sandboxes.append(sandbox)
    states = {"output": False}
    box = sandbox.session("inventory", lambda: {"devices": [{**DEVICES[0], "state": dict(states)}]}, echo)
    assert (await box.execute('lamp = devices["lamp"]\nlamp.state')).output == "{'output': False}\n"
    states["output"] = True
    assert (await box.execute('lamp.state, lamp is devices["lamp"]')).output == "({'output': True}, True)\n"
    await box.close()


async def test_a_thousand_devices_reach_the_job(sandboxes, tmp_path):
    sandbox = Sandbox(SandboxSection(exec_timeout_s=5.0), tmp_path)
    await sandbox.start()
    sandboxes.append(sandbox)
    inventory = [{"id": f"lamp_{n}", "name": f"Lamp {n} " + "x" * 150, "kind": "shelly_switch",
                  "transport": "http", "area": f"room {n % 40}", "state": {"output": n % 2 == 0}}
                 for n in range(5000)]
    box = sandbox.session("big", lambda: {"devices": inventory}, echo)
    result = await box.execute('len(devices), len(devices.find(area="room 7")), devices["lamp_4999"].state')
    assert result.output == "(5000, 125, {'output': False})\n"
    await box.close()
