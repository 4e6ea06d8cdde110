"""Odd input to the running daemon's API: huge numbers, deep nesting, out-of-range queries, wildcards in ids, bytes
that are not UTF-8. Each gets a 4xx naming what was wrong, never a 500, and the answer is the one the OpenAPI
document promises for that route."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from openapi_schema_validator import OAS31Validator

from conftest import code_reply, make_config, psu_entry
from gateway.daemon import Daemon

BIG = "1" * 400  # an integer past every int64 and float
DEEP = 5000
SKILL = '''TRIGGERS = ["repeat {word} {times} times"]


def repeat_word(word: str, times: int, gap: float) -> str:
    """Say a word a number of times."""
    return " ".join([word] * times)
'''


class Client:
    """A script with the install's token, checking every answer against the daemon's own OpenAPI document."""

    def __init__(self, http: aiohttp.ClientSession, daemon: Daemon, spec: dict[str, Any]) -> None:
        self.http, self.daemon, self.spec = http, daemon, spec
        self.base = daemon.server.url
        self.headers = {"Authorization": f"Bearer {daemon.access.token}"}

    async def call(self, method: str, path: str, *, body: Any = None, data: bytes | None = None
                   ) -> tuple[int, Any]:
        """`body` is sent as JSON; `data` as bytes said to be JSON, for what json.dumps cannot write."""
        headers = self.headers | ({"Content-Type": "application/json"} if data is not None else {})
        async with self.http.request(method, f"{self.base}{path}", json=body, data=data,
                                     headers=headers) as response:
            answer = await response.json() if response.content_type == "application/json" else None
        self.check(method, path, response.status, answer)
        return response.status, answer

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """The status is one the document lists for this route, and the body has the schema it gives."""
        assert status != 500, body
        route = path.split("?")[0]
        template = next(name for name in self.spec["paths"]
                        if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", name), route))
        responses = self.spec["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template} answered {status}, which its document does not list"
        content = responses[str(status)].get("content", {}).get("application/json")
        if content is not None:
            OAS31Validator({**content["schema"], "components": self.spec["components"]}).validate(body)


@pytest.fixture
async def client(tmp_path, daemon_factory) -> AsyncIterator[Client]:
    skills = tmp_path / "data" / "skills"
    skills.mkdir(parents=True)
    (skills / "repeat_word.py").write_text(SKILL)
    daemon = await daemon_factory(make_config(tmp_path, discovery={"mqtt": False}, api={"mqtt_intake": False}))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.server.url}/api/openapi.json",
                            headers={"Authorization": f"Bearer {daemon.access.token}"}) as response:
            spec = await response.json()
        yield Client(http, daemon, spec)


@pytest.mark.parametrize("query, problem", [
    ("limit=-1", "limit: Input should be greater than or equal to 1"),
    ("limit=0", "limit: Input should be greater than or equal to 1"),
    ("limit=201", "limit: Input should be less than or equal to 200"),
    ("limit=1e400", "limit: Input should be a valid integer"),
    (f"limit={BIG}", "limit: Input should be less than or equal to 200"),
    (f"offset={BIG}", "offset: Input should be less than or equal to 1000000000"),
    ("offset=-5", "offset: Input should be greater than or equal to 0"),
    ("limit=%00", "limit: Input should be a valid integer"),
    ("limit=" + "9" * 5000, "limit: Unable to parse input string as an integer"),
])
async def test_a_task_list_query_out_of_range_is_refused_naming_the_parameter(client, query, problem):
    status, body = await client.call("GET", f"/api/tasks?{query}")

    assert status == 400 and body["error"]["code"] == "invalid_query"
    assert body["error"]["message"].startswith(problem)


async def test_the_task_list_takes_its_documented_range_and_says_so(client):
    for _ in range(3):
        assert (await client.call("POST", "/api/tasks", body={"text": "hello there"}))[0] == 202

    status, page = await client.call("GET", "/api/tasks?limit=2&offset=1")
    assert status == 200 and (page["limit"], page["offset"], len(page["tasks"])) == (2, 1, 2)
    status, page = await client.call("GET", "/api/tasks?limit=200&offset=1000000000")
    assert status == 200 and page["tasks"] == []
    ranges = {parameter["name"]: (parameter["schema"]["minimum"], parameter["schema"]["maximum"])
              for parameter in client.spec["paths"]["/api/tasks"]["get"]["parameters"]}
    assert ranges == {"limit": (1, 200), "offset": (0, 1_000_000_000)}


async def test_wildcards_in_a_task_id_match_nothing(client):
    status, created = await client.call("POST", "/api/tasks", body={"text": "hello there"})
    assert status == 202
    task_id = created["id"]

    for wildcard in ("%25", "_", "_" * len(task_id), f"{task_id[:3]}%25", f"{task_id[:3]}_", "%25%25"):
        for method, path in (("GET", f"/api/tasks/{wildcard}"), ("POST", f"/api/tasks/{wildcard}/cancel"),
                             ("GET", f"/api/tasks/{wildcard}/events")):
            status, body = await client.call(method, path)
            assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    status, task = await client.call("GET", f"/api/tasks/{task_id[:5]}")  # a unique prefix, as documented
    assert status == 200 and task["id"] == task_id


@pytest.mark.parametrize("body", [
    b"[" * DEEP + b"]" * DEEP,
    b'{"text": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"text": "x", "devices": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"text": "x", "devices": [' + BIG.encode() + b"]}",
    b'{"text": ' + BIG.encode() + b"}",
])
async def test_deep_or_huge_json_bodies_are_refused(client, body):
    status, answer = await client.call("POST", "/api/tasks", data=body)

    assert status == 400 and answer["error"]["code"] == "invalid_body"


@pytest.mark.parametrize("fields, problem", [
    ({"trigger": {"mqtt": "a/b", "when": "not " * 3000 + "x"}}, "trigger.when: condition 'not not"),
    ({"trigger": {"mqtt": "a/b", "when": "-" * 3000 + "x"}}, "nests more than 32 levels deep"),
    ({"trigger": {"mqtt": "a/b", "when": "x == " + "[" * 40 + "]" * 40}}, "nests more than 32 levels deep"),
    ({"trigger": {"mqtt": "a/b", "when": "a" + ".b" * 3000}}, "nests more than 32 levels deep"),
    ({"trigger": {"mqtt": "a/b", "when": f"x == {'1' * 5000}"}}, "trigger.when: condition 'x == 1111"),
    ({"trigger": {"every": f"{BIG}m"}}, "is not an interval"),
    ({"debounce_s": float("inf")}, "debounce_s: Input should be a finite number"),
    ({"timeout_s": float("inf")}, "timeout_s: Input should be a finite number"),
])
async def test_an_automation_with_odd_numbers_or_deep_conditions_is_refused_naming_the_field(client, fields,
                                                                                           problem):
    automation = {"name": "odd", "trigger": {"every": "5m"}, "action": "switch the desk plug on"} | fields
    # json.dumps writes inf as Infinity, which the JSON parser reads: the same as 1e400
    status, body = await client.call("POST", "/api/automations", data=json.dumps(automation).encode())

    assert status == 400 and problem in body["error"]["message"], body
    assert (await client.call("GET", "/api/automations/odd"))[0] == 404


@pytest.mark.parametrize("args, code, problem", [
    ('{"word": "hi", "times": 1e400}', "invalid_body", "args.times.int: Input should be a finite number"),
    ('{"word": "hi", "times": Infinity}', "invalid_body", "Input should be a finite number"),
    ('{"word": "hi", "times": NaN}', "invalid_body", "Input should be a finite number"),
    ('{"word": "hi", "times": ' + "1" * 5000 + "}", "invalid_body", "number out of range"),
    ('{"word": "hi", "times": "1e400", "gap": 1}', "invalid_args", "repeat_word(): times must be int, got '1e400'"),
    ('{"word": "hi", "times": 2, "gap": "nan"}', "invalid_args", "gap must be float, got 'nan'"),
    ('{"word": "hi", "times": 2, "gap": "1e400"}', "invalid_args", "gap must be float, got '1e400'"),
    ('{"word": "hi", "times": "' + "1" * 5000 + '", "gap": 1}', "invalid_args", "times must be int, got '1111"),
])
async def test_skill_arguments_that_are_not_finite_numbers_are_refused(client, args, code, problem):
    status, body = await client.call("POST", "/api/skills/repeat_word/run", data=f'{{"args": {args}}}'.encode())

    assert status == 400 and body["error"]["code"] == code and problem in body["error"]["message"], body
    assert len(body["error"]["message"]) < 600


async def test_odd_path_parameters_are_not_found(client):
    for path in ("/api/devices/%00", "/api/skills/%00", "/api/skills/..%2F..%2Fetc%2Fpasswd", "/api/automations/%00",
                 "/api/tasks/" + "a" * 5000, "/api/skills/%ED%A0%80", "/api/devices/%C3%A9"):
        status, body = await client.call("GET", path)
        assert status == 404 and body["error"]["code"] == "not_found", path
    for method, path in (("DELETE", "/api/skills/%00"), ("DELETE", "/api/automations/%25"),
                         ("POST", "/api/automations/%25/trigger"), ("POST", "/api/skills/%25/run")):
        status, _ = await client.call(method, path, body={} if path.endswith("/run") else None)
        assert status == 404, path
    status, _ = await client.call("POST", "/api/confirmations/%25", body={"approve": True})
    assert status == 404


async def test_a_token_that_is_not_utf8_is_a_wrong_token(client):
    host, port = client.daemon.server.host, client.daemon.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/health HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n".encode()
                 + b"Authorization: Bearer \xe9\xff\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()

    assert status_line.split()[1] == b"401"


async def test_the_documented_errors_of_a_route_are_the_ones_it_gives(client):
    status, _ = await client.call("POST", "/api/automations", body={
        "name": "plug-on", "trigger": {"every": "5m"}, "action": "switch the desk plug on"})
    assert status == 201
    status, body = await client.call("POST", "/api/automations", body={
        "name": "plug-on", "trigger": {"every": "5m"}, "action": "switch the desk plug on"})
    assert status == 409 and body["error"]["code"] == "exists"
    status, _ = await client.call("POST", "/api/automations", body={
        "name": "say-hi", "trigger": {"every": "5m"}, "skill": "repeat_word",
        "args": {"word": "hi", "times": 2, "gap": 0}})
    assert status == 201
    status, body = await client.call("POST", "/api/automations/say-hi/recompile")
    assert status == 409 and body["error"]["code"] == "no_words"
    async with client.http.post(f"{client.base}/api/voice", data=b"RIFF", headers={
            **client.headers, "Content-Type": "audio/wav"}) as response:
        client.check("POST", "/api/voice", response.status, await response.json())
        assert response.status == 501


async def test_a_pending_confirmation_has_the_documented_shape(tmp_path, scripted_llm, psu, daemon_factory):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [code_reply(
        'psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))')]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], discovery={"mqtt": False},
                                              api={"mqtt_intake": False}))
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {daemon.access.token}"}
        async with http.get(f"{daemon.server.url}/api/openapi.json", headers=headers) as response:
            client = Client(http, daemon, await response.json())
        assert (await client.call("POST", "/api/tasks", body={"text": "switch the output on"}))[0] == 202
        async with asyncio.timeout(15):
            while not daemon.gateway.confirmations.pending:
                await asyncio.sleep(0.02)

        status, pending = await client.call("GET", "/api/confirmations")  # checked against the schema

        assert status == 200 and len(pending) == 1 and pending[0]["device_id"] == "bench_psu"
        assert (await client.call("POST", f"/api/confirmations/{pending[0]['id']}", body={"approve": False}))[0] == 200
