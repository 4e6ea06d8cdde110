"""Honest state when things go away: a broker outage, a device that does not answer, a task whose runner is gone,
a job that was killed. Each against the real part: a Mosquitto stopped and started again, a hanging HTTP server,
the daemon's store and runner, the sandbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import make_config, serve_app, until

import gateway.runner as runner_module
from gateway.api.auth import TOKEN_FILE
from gateway.config import DeviceEntry
from gateway.daemon import Daemon
from simulators.tasmota import TasmotaPlug


async def health(daemon: Daemon) -> dict[str, Any]:
    token = (daemon.config.gateway.data_dir / TOKEN_FILE).read_text().strip()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.get(f"{daemon.server.url}/api/health") as response:
        return await response.json()


async def test_a_broker_outage_is_logged_once_each_way_and_mqtt_devices_are_offline_through_it(
        tmp_path, restartable_broker, daemon_factory, caplog):
    # The plug is discovered and reports its availability (LWT); the porch plug is declared and reports none.
    porch = DeviceEntry(id="porch_plug", name="Porch Plug", area="porch", kind="tasmota_plug",
                        base_topic="tasmota_porch")
    broker = restartable_broker.address
    async with TasmotaPlug("tv_plug", "tasmota_A1B2C3", broker.host, broker.port, name="Living Room TV Plug"):
        daemon = await daemon_factory(make_config(tmp_path, devices=[porch], broker=broker))
        registry = daemon.gateway.registry
        await until(lambda: registry.get("living_room_tv_plug") is not None
                    and registry.get("living_room_tv_plug").online)
        assert registry.get("porch_plug").online
        assert (await health(daemon))["mqtt_connected"] is True

        with caplog.at_level(logging.INFO, logger="gateway.transports.mqtt"):
            restartable_broker.stop()
            await until(lambda: not daemon.gateway.mqtt.connected)
            await until(lambda: not registry.get("living_room_tv_plug").online
                        and not registry.get("porch_plug").online)
            report = await health(daemon)
            assert report["mqtt_connected"] is False and report["mqtt_down_since"] is not None
            assert report["mqtt_broker"] == f"127.0.0.1:{broker.port}"
            await asyncio.sleep(3.5)  # several of paho's retries (1 s, 2 s...) fail meanwhile

            await restartable_broker.start()
            await until(lambda: daemon.gateway.mqtt.connected, timeout=40)
            # The plug reconnects by itself and says it is online; the porch plug gets its state back.
            await until(lambda: registry.get("living_room_tv_plug").online and registry.get("porch_plug").online,
                        timeout=20)
            assert (await health(daemon))["mqtt_down_since"] is None

        lines = [record.getMessage() for record in caplog.records if record.name == "gateway.transports.mqtt"]
        lost = [line for line in lines if "unreachable" in line]
        back = [line for line in lines if "reachable again" in line]
        assert len(lost) == 1 and len(back) == 1, lines
        assert "retrying in 1 s" in lost[0] and f":{broker.port}" in lost[0]


async def test_a_device_the_broker_cannot_reach_after_an_outage_stays_offline(tmp_path, restartable_broker, gateway_factory):
    """Without persistence the broker forgets the retained "Online": a plug that is gone by then never says it
    again, so it is not brought back on a guess."""
    broker = restartable_broker.address
    plug = TasmotaPlug("tv_plug", "tasmota_A1B2C3", broker.host, broker.port, name="Living Room TV Plug")
    async with plug:
        gateway = await gateway_factory(make_config(tmp_path, broker=broker))
        await until(lambda: gateway.registry.get("living_room_tv_plug") is not None
                    and gateway.registry.get("living_room_tv_plug").online)
        restartable_broker.stop()
        await until(lambda: not gateway.registry.get("living_room_tv_plug").online)
    await restartable_broker.start()  # the plug has stopped for good meanwhile
    await until(lambda: gateway.mqtt.connected, timeout=40)
    await asyncio.sleep(1.5)  # discovery settles, the gateway restores what it may
    assert gateway.registry.get("living_room_tv_plug").online is False


@pytest.fixture
async def hanging_device() -> AsyncIterator[int]:
    """An HTTP device that takes every request and answers none until the test is over: the port it listens on."""
    over = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await over.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner, port = await serve_app(app)
    yield port
    over.set()
    await runner.cleanup()


async def test_a_device_that_does_not_answer_is_named_in_the_observation_not_blamed_on_the_code(
        tmp_path, hanging_device, gateway_factory):
    plug = DeviceEntry(id="desk_plug", name="Desk Plug", area="office", kind="shelly_switch", host="127.0.0.1",
                       port=hanging_device)
    gateway = await gateway_factory(make_config(tmp_path, devices=[plug],
                                                sandbox={"exec_timeout_s": 6.0, "device_timeout_s": 1.0}))
    _, execution = await gateway.run_code('devices["desk_plug"].on()', "hanging plug")
    assert "desk_plug did not answer within 1 s" in execution.output, execution.output
    assert "ExecutionTimeout" not in execution.output and execution.status == "error"

    # The model can act on it: the error is a DeviceError and a TimeoutError at once.
    code = ('try:\n    devices["desk_plug"].on()\nexcept DeviceError as error:\n'
            '    print("caught", isinstance(error, TimeoutError), error)')
    _, execution = await gateway.run_code(code, "hanging plug, caught")
    assert "caught True desk_plug did not answer within 1 s" in execution.output, execution.output


async def test_the_watchdog_fails_a_task_whose_worker_is_gone_and_leaves_others_alone(
        tmp_path, daemon_factory, monkeypatch, caplog):
    monkeypatch.setattr(runner_module, "WATCHDOG_S", 0.1)
    daemon = await daemon_factory(make_config(tmp_path))
    store = daemon.gateway.store
    task = daemon.runner.submit("recite a poem about relays", "api")  # no model: it fails at once
    await daemon.runner.wait(task.id)
    # Its worker is gone and the store calls it running: what a worker that died before writing its end leaves.
    store.update_task(task.id, status="running", error=None, finished_at=None)
    elsewhere = store.create_task("run by another part of the gateway", "exec")
    store.update_task(elsewhere.id, status="running")

    with caplog.at_level(logging.WARNING, logger="gateway.runner"):
        await until(lambda: store.get_task(task.id).status == "failed")
        await asyncio.sleep(0.5)  # more rounds of the watchdog
    record = store.get_task(task.id)
    assert record.error == "its runner stopped without an end" and record.finished_at is not None
    assert store.get_task(elsewhere.id).status == "running"
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.runner"]
    assert lines == [f"task {task.id} failed: its runner stopped without an end"]


async def test_a_killed_jobs_scratch_dir_is_removed_at_once(tmp_path, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, sandbox={"output_limit_bytes": 4096}))
    session = gateway.session("t-killed")
    scratch = gateway.sandbox.scratch_root / "t-killed"
    try:
        assert (await session.execute("open('notes.txt', 'w').write('x')")).status == "ok"
        assert scratch.is_dir()
        killed = await session.execute("while True:\n    print('x' * 1000)")
        assert killed.status == "killed"
        assert not scratch.exists()
        # The job that replaces it starts in a scratch dir of its own, empty.
        assert (await session.execute("import os\nprint(os.listdir('.'))")).output == "[]\n"
    finally:
        await session.close()
    assert not scratch.exists()


async def test_scratch_dirs_left_by_a_gateway_that_died_are_removed_at_start(tmp_path, gateway_factory):
    leftover = tmp_path / "data" / "scratch" / "a-task-of-a-killed-gateway"
    (leftover / "deep" / "er").mkdir(parents=True)
    (leftover / "deep" / "er" / "file.bin").write_bytes(b"x" * 100)
    gateway = await gateway_factory(make_config(tmp_path))
    assert list(gateway.sandbox.scratch_root.iterdir()) == []
