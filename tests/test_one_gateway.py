"""One gateway per data dir: `pyuse run` holds it, one-shot commands go through the running daemon's API, and
no second MQTT connection takes over the daemon's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conftest import code_reply
from test_daemon import PYUSE, api, start_daemon

from gateway.transports.embedded_broker import free_port
from gateway.transports.mqtt import MqttTransport
from simulators.tasmota import TasmotaPlug

QUICK = code_reply('devices["kitchen_kettle"]  # a lookup: the answer stands on it\nfinal_answer("quick answer")')


def write_config(path: Path, data_dir: Path, api_port: int, broker_port: int | None = None,
                 llm_url: str = "") -> Path:
    """Without a broker port, nothing MQTT: no discovery, no intake."""
    mqtt = "true" if broker_port else "false"
    path.write_text(f'[gateway]\nid = "pyuse"\ndata_dir = "{data_dir}"\n[sandbox]\nexec_timeout_s = 30\n'
                    f'[api]\nport = {api_port}\nmqtt_intake = {mqtt}\n[discovery]\nmdns = false\nmqtt = {mqtt}\n'
                    + (f"[mqtt]\nport = {broker_port}\n" if broker_port else "")
                    + (f'[llm]\nbase_url = "{llm_url}"\nmodel = "scripted"\n' if llm_url else ""))
    return path


async def pyuse(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*PYUSE, *args, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await process.wait() == 0


async def test_a_second_gateway_on_the_data_dir_stops_with_one_line(tmp_path):
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "pyuse.toml", data_dir, free_port())
    process, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], {})
    try:
        assert (data_dir / "gateway.lock").read_text() == f"{process.pid} daemon\n"
        assert oct((data_dir / "gateway.lock").stat().st_mode & 0o777) == "0o600"
        code, out, err = await pyuse("run", "-c", str(config))
        assert (code, out) == (2, "")
        [line] = err.splitlines()
        assert str(data_dir) in line and f"`pyuse run` (pid {process.pid})" in line

        # The same data dir under a config with another API port: the daemon holds it but cannot be reached.
        elsewhere = write_config(tmp_path / "elsewhere.toml", data_dir, free_port())
        code, _, err = await pyuse("devices", "-c", str(elsewhere))
        assert code == 2
        [line] = err.splitlines()
        assert f"pid {process.pid}" in line and "its API does not answer" in line
    finally:
        await stop(process)
    code, out, err = await pyuse("devices", "--json", "-c", str(config))  # the lock left with the daemon
    assert (code, json.loads(out)) == (0, []), err


@asynccontextmanager
async def daemon_with_a_slow_task(tmp_path: Path, scripted_llm, mqtt_broker) -> AsyncIterator[tuple[Path, str, str]]:
    """`pyuse run` with a Tasmota kettle, a quick and a slow conversation, and the slow task running: yields the
    config, the API's address and the slow task's id."""
    llm = await scripted_llm({"conversations": [{"match": "quick", "replies": [QUICK]},
                                                {"match": "slow", "replies": [code_reply("sleep(25)")]}]})
    data_dir, port = tmp_path / "data", free_port()
    config = write_config(tmp_path / "pyuse.toml", data_dir, port, mqtt_broker.port, llm.base_url)
    base = f"http://127.0.0.1:{port}"
    async with TasmotaPlug("kettle", "tasmota_0A0B0C", mqtt_broker.host, mqtt_broker.port, name="Kitchen Kettle"):
        process, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], {})
        try:
            async with asyncio.timeout(10):
                while not await asyncio.to_thread(api, data_dir, base, "/api/devices"):
                    await asyncio.sleep(0.1)
            slow = (await asyncio.to_thread(api, data_dir, base, "/api/tasks", {"text": "a slow one"}))["id"]
            async with asyncio.timeout(10):
                while not (await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{slow}"))["steps"]:
                    await asyncio.sleep(0.1)
            yield config, base, slow
        finally:
            await stop(process)


async def test_ask_goes_through_the_running_daemon_and_leaves_its_tasks_alone(tmp_path, scripted_llm, mqtt_broker):
    data_dir = tmp_path / "data"
    async with daemon_with_a_slow_task(tmp_path, scripted_llm, mqtt_broker) as (config, base, slow):
        code, out, err = await pyuse("ask", "a quick one", "--json", "-c", str(config))
        assert code == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert set(summary) == {"task_id", "status", "answer", "turns", "tokens", "calls", "duration_ms"}
        assert (summary["status"], summary["answer"]) == ("done", "quick answer")
        assert "── turn 1 ──" in err and 'final_answer("quick answer")' in err  # the trace, as a local run shows it
        task = await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{summary['task_id']}")
        assert (task["origin"], task["status"]) == ("cli", "done")  # the daemon ran it

        code, out, err = await pyuse("devices", "--json", "-c", str(config))
        assert code == 0, err
        assert [device["id"] for device in json.loads(out)] == ["kitchen_kettle"]
        code, out, _ = await pyuse("prompt", "a quick one", "-c", str(config))
        assert code == 0 and "kitchen_kettle: TasmotaPlug" in out

        # Nothing above started a gateway of its own: the daemon's task is still running, not "interrupted".
        assert (await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{slow}"))["status"] == "running"


async def test_mqtt_intake_keeps_working_while_other_gateways_come_and_go(tmp_path, scripted_llm, mqtt_broker):
    """A one-shot gateway on another data dir but with the same gateway id connects to the same broker: with one
    client id per gateway id, the broker dropped the daemon's connection for it, and MQTT tasks were lost."""
    other = write_config(tmp_path / "other.toml", tmp_path / "other", free_port(), mqtt_broker.port)
    client = MqttTransport(mqtt_broker.host, mqtt_broker.port, client_id="test-intake")
    await client.start()
    try:
        async with daemon_with_a_slow_task(tmp_path, scripted_llm, mqtt_broker) as (config, base, slow):
            code, _, err = await pyuse("ask", "a quick one", "-c", str(config))
            assert code == 0, err
            code, out, err = await pyuse("devices", "--json", "-c", str(other))  # its own gateway finds the kettle
            assert code == 0, err
            assert [device["id"] for device in json.loads(out)] == ["kitchen_kettle"]

            reply = await client.next_message(
                "test/reply", 30, before_waiting=lambda: client.publish(
                    "pyuse/pyuse/task", json.dumps({"text": "a quick one", "reply_to": "test/reply"}), qos=1))
            assert (reply.decoded()["status"], reply.decoded()["answer"]) == ("done", "quick answer")
            assert (await asyncio.to_thread(api, tmp_path / "data", base, f"/api/tasks/{slow}"))["status"] == \
                "running"
    finally:
        await client.close()


async def test_a_dangerous_call_of_ask_through_the_daemon_is_asked_at_the_terminal(tmp_path, scripted_llm, psu):
    """A real pty, as in test_cli: the daemon runs the task, the question comes back to the person who asked."""
    import pty

    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply('psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))')]}]})
    config = write_config(tmp_path / "pyuse.toml", tmp_path / "data", free_port(), llm_url=llm.base_url)
    config.write_text(config.read_text() + f'[[devices]]\nid = "bench_psu"\nname = "Bench"\nkind = "scpi_psu"\n'
                                           f'serial_port = "{psu.port}"\n')
    daemon, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], {})
    controller, terminal = pty.openpty()
    ask = await asyncio.create_subprocess_exec(*PYUSE, "ask", "switch the output on", "-c", str(config),
                                               stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""
    try:
        while b"[y/N]" not in seen:
            seen += await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, os.read, controller,
                                                                                      4096), 30)
        assert b"Confirm: Bench (bench_psu): OUTP ON" in seen and psu.output is False
        os.write(controller, b"y\n")
        assert await asyncio.wait_for(ask.wait(), 30) == 0  # 0: through the daemon (its own gateway gets no lock)
        assert psu.output is True
    finally:
        if ask.returncode is None:
            ask.kill()
        os.close(controller)
        await stop(daemon)
