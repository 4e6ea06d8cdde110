"""The daemon's HTTP API and MQTT command topic over real sockets, against the scripted model and simulators."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import code_reply, make_config, mqtt_listener, psu_entry, shelly_entry
from event_stream import events_of
from openapi_spec_validator import validate

from gateway.api.auth import TOKEN_FILE
from gateway.api.routes import ROUTES
from gateway.daemon import Daemon


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(daemon: Daemon) -> dict[str, str]:
    """What a script on the machine sends: the token from the data dir's api_token file."""
    token = (daemon.config.gateway.data_dir / TOKEN_FILE).read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def sign_in(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    """Every later request of `http` carries the token; the daemon's base URL."""
    http.headers.update(bearer(daemon))
    return daemon.server.url


async def read_events(http: aiohttp.ClientSession, url: str) -> list[tuple[str | None, dict[str, Any]]]:
    """A Server-Sent Events stream, read to its end."""
    async with http.get(url) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [event async for event in events_of(response)]
    return events


async def test_a_task_from_the_api_streams_its_trace_and_changes_the_device(tmp_path, scripted_llm, shelly,
                                                                           daemon_factory, http):
    llm = await scripted_llm({"conversations": [{"match": "before lunch", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nprint("done")'),
        "FINAL ANSWER: The desk plug is on."]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))
    base = sign_in(http, daemon)

    async with http.post(f"{base}/api/tasks", json={"text": "switch the desk plug on before lunch"}) as response:
        assert response.status == 202
        created = await response.json()
    events = await read_events(http, f"{base}{created['events']}")

    kinds = [kind for kind, _ in events if kind != "delta"]
    assert kinds == ["queued", "started", "code", "observation", "answer", "finished"]
    assert events[-1][1]["status"] == "done" and events[-1][1]["answer"] == "The desk plug is on."
    assert shelly.output is True
    async with http.get(f"{base}/api/tasks/{created['id']}") as response:
        task = await response.json()
    assert task["status"] == "done" and task["steps"][0]["observation"] == "done"
    assert "seccomp" in task["sandbox_layers"]
    async with http.get(f"{base}/api/tasks?limit=5") as response:
        assert [item["id"] for item in (await response.json())["tasks"]] == [created["id"]]
    late = await read_events(http, f"{base}{created['events']}")  # a late subscriber still sees it all
    assert [kind for kind, _ in late if kind != "delta"] == kinds


async def test_a_long_task_can_be_cancelled(tmp_path, scripted_llm, daemon_factory, http):
    llm = await scripted_llm({"conversations": [{"match": "nap", "replies": [code_reply("sleep(20)")]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, sandbox={"exec_timeout_s": 30}))
    base = sign_in(http, daemon)
    async with http.post(f"{base}/api/tasks", json={"text": "take a long nap"}) as response:
        task_id = (await response.json())["id"]
    reader = asyncio.create_task(read_events(http, f"{base}/api/tasks/{task_id}/events"))
    async with asyncio.timeout(10):
        while (daemon.gateway.task(task_id).status != "running"
               or not any(e.kind == "code" for e in daemon.runner.tasks[task_id].events)):
            await asyncio.sleep(0.02)

    started = time.monotonic()
    async with http.post(f"{base}/api/tasks/{task_id}/cancel") as response:
        assert await response.json() == {"id": task_id, "cancelled": True}
    events = await reader
    assert time.monotonic() - started < 5
    assert events[-1][0] == "finished" and events[-1][1]["status"] == "cancelled"
    assert daemon.gateway.task(task_id).status == "cancelled"


async def test_bad_requests_get_json_errors(tmp_path, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path))
    base = sign_in(http, daemon)
    as_json = {"Content-Type": "application/json"}

    async def error(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        async with http.request(method, f"{base}{path}", **kwargs) as response:
            return response.status, (await response.json())["error"]

    status, body = await error("POST", "/api/tasks", data=b"{not json", headers=as_json)
    assert status == 400 and body["code"] == "invalid_body"
    status, body = await error("POST", "/api/tasks", data=b'{"text": "hi"}', headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in body["message"]
    status, body = await error("POST", "/api/tasks", json={"text": "x", "extra": 1})
    assert status == 400 and "extra" in body["message"]
    status, body = await error("POST", "/api/tasks", json={"text": "x" * 100_000})
    assert status == 413 and body["code"] == "too_large"
    status, body = await error("POST", "/api/tasks", json={"text": "hi", "devices": ["ghost"]})
    assert status == 400 and "ghost" in body["message"]
    status, body = await error("GET", "/api/tasks/nope")
    assert status == 404 and body["code"] == "not_found"
    status, body = await error("GET", "/api/tasks?limit=lots")
    assert status == 400
    status, body = await error("POST", "/api/confirmations/c999", json={"approve": True})
    assert status == 404
    status, body = await error("POST", "/api/voice", data=b"RIFF....WAVEfmt ", headers={"Content-Type": "audio/wav"})
    assert status == 501 and "[stt] base_url" in body["message"]
    status, body = await error("POST", "/api/voice", json={"audio": "..."})
    assert status == 415 and "audio/*" in body["message"]
    status, body = await error("GET", "/api/nothing-here")
    assert status == 404 and set(body) == {"code", "message"}


async def test_the_openapi_document_is_valid_and_lists_every_route(tmp_path, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path))
    async with http.get(f"{sign_in(http, daemon)}/api/openapi.json") as response:
        spec = await response.json()
    validate(spec)
    tasks = spec["paths"]["/api/tasks"]
    assert {"401", "403", "413", "415"} <= set(tasks["post"]["responses"])
    assert "415" not in tasks["get"]["responses"] and "401" in tasks["get"]["responses"]
    assert list(spec["paths"]["/api/voice"]["post"]["requestBody"]["content"]) == ["audio/*"]
    assert spec["paths"]["/api/session"]["post"]["security"] == []  # how a page gets its cookie off loopback
    assert spec["components"]["securitySchemes"]["page"] == {"type": "apiKey", "in": "cookie",
                                                             "name": daemon.access.cookie}
    served = {(route.method, route.resource.canonical) for route in daemon.server.app.router.routes()
              if route.resource.canonical.startswith("/api/")}
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert served == documented == {(route.method, route.path) for route in ROUTES}


async def test_twenty_concurrent_tasks_finish_together(tmp_path, scripted_llm, daemon_factory, http):
    llm = await scripted_llm({"delay_s": 1.0, "conversations": [
        {"match": "count", "replies": [code_reply("final_answer(sum(range(10)))")]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm))
    base = sign_in(http, daemon)
    started = time.monotonic()

    async def one(index: int) -> dict[str, Any]:
        async with http.post(f"{base}/api/tasks", json={"text": f"count number {index}"}) as response:
            created = await response.json()
        events = await read_events(http, f"{base}{created['events']}")
        return events[-1][1]

    results = await asyncio.gather(*(one(index) for index in range(20)))
    elapsed = time.monotonic() - started
    assert [result["answer"] for result in results] == ["45"] * 20
    assert elapsed < 5, f"20 tasks took {elapsed:.1f} s"


async def test_tasks_and_confirmations_over_mqtt(tmp_path, scripted_llm, mqtt_broker, psu, daemon_factory):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [code_reply(
        'psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))')]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], broker=mqtt_broker))
    with mqtt_listener(mqtt_broker, "pyuse/pyuse/#", "my/results") as (client, received):
        async with asyncio.timeout(10):
            while (await received.get())[0] != "pyuse/pyuse/status":  # retained: online
                pass
        client.publish("pyuse/pyuse/task", json.dumps({"text": "switch the output on", "reply_to": "my/results",
                                                        "id": 7}))
        async with asyncio.timeout(15):
            while True:
                topic, payload = await received.get()
                if topic.startswith("pyuse/pyuse/confirm/") and not topic.endswith("/set"):
                    assert payload["action"] == "OUTP ON" and psu.output is False
                    client.publish(f"{topic}/set", "yes")
                if topic == "my/results":
                    break
        assert payload["id"] == 7 and payload["status"] == "done" and payload["answer"] == "1"
        assert psu.output is True
        events = [item for item in daemon.runner.tasks[payload["task_id"]].events]
        assert "confirmation" in [event.kind for event in events]


async def test_a_device_names_the_state_fields_worth_showing_first(tmp_path, shelly, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    async with http.get(f"{sign_in(http, daemon)}/api/devices/desk_plug") as response:
        device = await response.json()
    assert device["state_keys"] == ["output", "apower"]  # from its doc, shelly_switch.md: the web page shows these


async def test_voice_is_transcribed_and_runs_as_a_task(tmp_path, scripted_llm, shelly, daemon_factory, http):
    stt = await scripted_llm({"transcript": "turn on the desk plug"})
    config = make_config(tmp_path, devices=[shelly_entry(shelly)], stt={"base_url": stt.base_url})
    daemon = await daemon_factory(config)
    sign_in(http, daemon)
    audio = b"RIFF$\x00\x00\x00WAVEfmt " + bytes(32)

    async with http.post(f"{daemon.server.url}/api/voice", data=audio,
                         headers={"Content-Type": "audio/wav"}) as response:
        assert response.status == 202
        created = await response.json()
    events = await read_events(http, f"{daemon.server.url}{created['events']}")

    assert stt.audio == [audio]  # the upload reached the transcription server untouched
    assert events[0] == ("queued", {"text": "turn on the desk plug", "origin": "voice"})
    assert events[-1][1]["status"] == "done" and shelly.output is True  # no model: the fast path took it


async def test_skills_and_automations_through_the_api_and_the_cli(tmp_path, scripted_llm, shelly, daemon_factory,
                                                                  http):
    from test_cli import pyuse
    from test_skills import BENCH_READY, skill_reply

    llm = await scripted_llm({"conversations": [
        {"match": "save as a skill", "replies": [skill_reply(BENCH_READY)]},
        {"match": "get the bench ready", "replies": [code_reply(
            'devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nfinal_answer("ready")')]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))
    base = sign_in(http, daemon)

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with http.request(method, base + path, json=body) as response:
            return response.status, await response.json()

    _, created = await call("POST", "/api/tasks", {"text": "get the bench ready"})
    await read_events(http, f"{base}{created['events']}")
    status, skill = await call("POST", "/api/skills", {"task_id": created["id"]})
    assert status == 201 and skill["name"] == "get_bench_ready" and skill["task_id"] == created["id"]
    assert skill["source"] == BENCH_READY
    status, listing = await call("GET", "/api/skills")
    assert [item["name"] for item in listing["skills"]] == ["get_bench_ready"] and listing["errors"] == []
    status, refused = await call("POST", "/api/skills/get_bench_ready/run", {"args": {"level": 3}})
    assert status == 400 and "has no parameter 'level'" in refused["error"]["message"]

    shelly.output = False
    status, run = await call("POST", "/api/skills/get_bench_ready/run", {})
    assert status == 202
    events = await read_events(http, f"{base}{run['events']}")
    assert events[-1][1]["status"] == "done" and shelly.output is True
    _, task = await call("GET", f"/api/tasks/{run['id']}")
    assert task["processed_locally"] is True and task["text"] == "skill get_bench_ready()"

    config = tmp_path / "cli.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[api]\nport = {daemon.server.port}\n')
    code, out, err = await pyuse("automations", "add", "bench-daily", "--at", "07:30", "--skill",
                                 "get_bench_ready", "-c", str(config))
    assert code == 0 and "added bench-daily: at 07:30" in out, err
    code, _, err = await pyuse("automations", "add", "bench-daily", "--every", "1d", "--skill", "get_bench_ready",
                               "-c", str(config))
    assert code == 1 and "exists already" in err
    shelly.output = False
    code, out, _ = await pyuse("automations", "trigger", "bench-daily", "-c", str(config))
    assert code == 0 and "started" in out
    for _ in range(100):
        _, automation = await call("GET", "/api/automations/bench-daily")
        if automation["runs"] == 1 and automation["running"] == 0:
            break
        await asyncio.sleep(0.05)
    assert automation["last_status"] == "done" and shelly.output is True
    _, task = await call("GET", f"/api/tasks/{automation['last_task']}")
    assert task["origin"] == "automation:bench-daily"
    code, out, _ = await pyuse("automations", "list", "-c", str(config))
    assert code == 0 and "bench-daily  [on]  at 07:30 → skill get_bench_ready  (1 run(s)" in out
    code, out, _ = await pyuse("automations", "delete", "bench-daily", "-c", str(config))
    assert code == 0
    assert (await call("GET", "/api/automations"))[1] == {"automations": []}

    assert (await call("DELETE", "/api/skills/get_bench_ready"))[0] == 200
    status, missing = await call("GET", "/api/skills/get_bench_ready")
    assert status == 404 and missing["error"]["code"] == "not_found"
