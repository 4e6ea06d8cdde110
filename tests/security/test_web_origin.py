"""A hostile web page against the running gateway's API, and a flood of connections against the API itself.

Reproduced against `pyuse run` before these defences: another site's page POSTed a task as text/plain (no CORS
preflight), approved its dangerous call by trying the ids c1..c10, added an automation, and through DNS
rebinding read the devices, tasks and pending questions; 1,100 idle event streams stopped the API. Each test
drives a real daemon (in this process, its API on a free loopback port) and checks the devices and the store
as well as the answer: refused, and nothing changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest
from aiohttp import web
from conftest import code_reply, make_config, psu_entry, serve_app, shelly_entry, until
from test_web import CHROMIUM, CHROMIUM_ARGS, COMMAND

from gateway.api import server as server_module
from gateway.api.auth import TOKEN_FILE, Access, load_or_create_token
from gateway.api.limits import RepeatedErrors
from gateway.daemon import Daemon
from simulators.scpi import ScpiPowerSupply

try:
    from playwright.async_api import Browser, async_playwright, expect
except ImportError:  # the test extra is not installed
    async_playwright = None

OUTPUT_ON = 'psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))'
AUTOMATION = {"name": "every-minute", "trigger": {"every": "1m"}, "action": "switch the output on"}
ATTACKER = "http://127.0.0.1:9"  # another origin on this host: browsers send it the gateway's cookie all the same
# Chromium's own checks on a public page reaching a loopback address (Private/Local Network Access).
BROWSER_REBINDING_CHECKS = ("BlockInsecurePrivateNetworkRequests", "PrivateNetworkAccessSendPreflights",
                            "PrivateNetworkAccessRespectPreflightResults", "LocalNetworkAccessChecks")


def bearer(daemon: Daemon) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.access.token}"}


def cookie(daemon: Daemon) -> dict[str, str]:
    return {"Cookie": f"{daemon.access.cookie}={daemon.access.token}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def answer(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


def assert_nothing_changed(daemon: Daemon, psu: ScpiPowerSupply | None = None) -> None:
    assert daemon.gateway.store.list_tasks(limit=10) == []
    assert daemon.automations.automations == {}
    if psu is not None:
        assert psu.output is False


# ---- the credential ----------------------------------------------------------------------------------------------

async def test_without_the_token_nothing_is_read_or_changed(tmp_path, psu, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    base = daemon.server.url
    attempts = [("POST", "/api/tasks", {"json": {"text": "switch the output on"}}),
                ("POST", "/api/automations", {"json": AUTOMATION}),
                ("POST", "/api/confirmations/c1", {"json": {"approve": True}}),
                ("POST", "/api/voice", {"data": b"RIFF", "headers": {"Content-Type": "audio/wav"}}),
                ("GET", "/api/devices", {}), ("GET", "/api/tasks", {}), ("GET", "/api/confirmations", {}),
                ("GET", "/api/events", {}), ("GET", "/api/health", {}),
                ("GET", f"/api/devices?token={daemon.access.token}", {})]  # no longer a way in: URLs get logged
    for method, path, options in attempts:
        for credential in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": f"{daemon.access.cookie}=wrong"}):
            offered = {**options, "headers": {**options.get("headers", {}), **credential}}
            status, body = await answer(http, method, base + path, **offered)
            assert (status, body["error"]["code"]) == (401, "unauthorized"), (method, path, credential)
    assert "pyuse token" in body["error"]["message"]
    assert_nothing_changed(daemon, psu)

    for credential in (bearer(daemon), cookie(daemon)):  # a script's header, the page's cookie
        status, devices = await answer(http, "GET", f"{base}/api/devices", headers=credential)
        assert status == 200 and [device["id"] for device in devices] == ["bench_psu"]


async def test_the_page_gets_its_cookie_as_it_loads_httponly_and_samesite_strict(tmp_path, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path))
    async with http.get(f"{daemon.server.url}/") as response:
        assert response.status == 200
        given = response.cookies[daemon.access.cookie]
        headers = response.headers
    assert given.value == daemon.access.token
    assert (given["httponly"], given["samesite"], given["path"]) == (True, "Strict", "/api/")
    assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert (tmp_path / "data" / "api_token").stat().st_mode & 0o777 == 0o600


def test_the_token_file_is_kept_private_and_an_empty_one_is_no_token(tmp_path):
    token, created = load_or_create_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    assert created and len(token) >= 40 and path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)  # restored from a backup, say
    assert load_or_create_token(tmp_path) == (token, False) and path.stat().st_mode & 0o777 == 0o600
    path.write_text("\n")  # an empty token would let an empty bearer in
    token, created = load_or_create_token(tmp_path)
    assert created and token and not Access.for_bind("127.0.0.1", token).credential_ok("Bearer ", None)


# ---- another site's page -----------------------------------------------------------------------------------------

async def test_a_page_on_another_origin_is_refused_even_when_its_request_carries_the_cookie(tmp_path, psu,
                                                                                           daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    base = daemon.server.url
    as_text = {**cookie(daemon), "Content-Type": "text/plain"}
    foreign = [{"Origin": ATTACKER}, {"Origin": "null"}, {"Origin": base.replace("127.0.0.1", "localhost")},
               {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"}]
    for headers in foreign:
        for method, path, body in (("POST", "/api/tasks", {"text": "switch the output on"}),
                                   ("POST", "/api/automations", AUTOMATION),
                                   ("POST", "/api/confirmations/c1", {"approve": True}),
                                   ("GET", "/api/confirmations", None), ("GET", "/api/devices", None)):
            status, refused = await answer(http, method, base + path, data=json.dumps(body) if body else None,
                                           headers={**as_text, **headers})
            assert (status, refused["error"]["code"]) == (403, "foreign_origin"), (headers, path)
    assert_nothing_changed(daemon, psu)

    own = {**cookie(daemon), "Origin": base, "Sec-Fetch-Site": "same-origin"}  # what the gateway's page sends
    status, _ = await answer(http, "POST", f"{base}/api/automations", json=AUTOMATION, headers=own)
    assert status == 201


async def test_only_json_bodies_are_read(tmp_path, psu, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    base = daemon.server.url
    task = json.dumps({"text": "switch the output on"})
    form = b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nswitch the output on\r\n--x--\r\n'
    for options in ({"data": task, "headers": {"Content-Type": "text/plain"}},  # no CORS preflight for these three
                    {"data": task, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
                    {"data": form, "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
                    {"data": task.encode()}):  # application/octet-stream
        options["headers"] = {**options.get("headers", {}), **bearer(daemon)}
        for path in ("/api/tasks", "/api/automations", "/api/tasks/x/cancel"):
            status, refused = await answer(http, "POST", base + path, **options)
            assert (status, refused["error"]["code"]) == (415, "unsupported_media_type"), (options, path)
            assert "application/json" in refused["error"]["message"]
    status, refused = await answer(http, "POST", f"{base}/api/voice", json={"text": "unlock"},
                                   headers=bearer(daemon))
    assert status == 415 and "audio/*" in refused["error"]["message"]
    assert_nothing_changed(daemon, psu)


# ---- DNS rebinding -----------------------------------------------------------------------------------------------

async def test_a_rebound_host_name_is_refused_and_gets_no_cookie(tmp_path, psu, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    base, port = daemon.server.url, daemon.server.port
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}",
                 f"evil.example@127.0.0.1:{port}", f"127.0.0.1.nip.io:{port}"):
        for path in ("/", "/static/app.js", "/api/devices", "/api/tasks", "/api/confirmations", "/api/events"):
            async with http.get(base + path, headers={"Host": host, **bearer(daemon)}) as response:
                assert response.status == 403, (host, path)
                assert (await response.json())["error"]["code"] == "unknown_host"
                assert daemon.access.cookie not in response.cookies
        status, _ = await answer(http, "POST", f"{base}/api/tasks", json={"text": "switch the output on"},
                                 headers={"Host": host, "Origin": f"http://{host}", **bearer(daemon)})
        assert status == 403
    assert_nothing_changed(daemon, psu)

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "localhost:8080"):
        async with http.get(f"{base}/", headers={"Host": host}) as response:  # ssh -L 8080:... keeps working
            assert response.status == 200, host
            assert response.cookies[daemon.access.cookie].value == daemon.access.token


async def test_a_name_given_in_the_config_is_served_and_others_are_not(tmp_path, daemon_factory, http):
    config = make_config(tmp_path)
    config.api.names = ["pyuse.home"]
    daemon = await daemon_factory(config)
    base, port = daemon.server.url, daemon.server.port
    async with http.get(f"{base}/api/devices", headers={"Host": f"pyuse.home:{port}", **bearer(daemon)}) as response:
        assert response.status == 200
    async with http.get(f"{base}/api/devices", headers={"Host": f"other.home:{port}", **bearer(daemon)}) as response:
        assert response.status == 403


def test_the_names_a_gateway_answers_to():
    loopback = Access.for_bind("127.0.0.1", "token")
    # An IP literal cannot be a rebound name: the browser connected to exactly that address.
    assert all(loopback.host_allowed(host) for host in ("127.0.0.1:8321", "[::1]:8321", "localhost", "10.0.0.5:80"))
    assert [loopback.host_allowed(host) for host in ("evil.example", "localhost.", "a.localhost", "pyuse.home",
                                                     "x@127.0.0.1", "127.0.0.1/x", "")] == [False] * 7
    named = Access.for_bind("gateway.lan", "token", ("pyuse.home",))  # the bound name, and configured ones
    assert named.host_allowed("gateway.lan:8321") and named.host_allowed("PYUSE.home")
    assert not named.page_gets_token and loopback.page_gets_token


# ---- confirmations -----------------------------------------------------------------------------------------------

async def pending_question(daemon: Daemon) -> Any:
    await until(lambda: bool(daemon.gateway.confirmations.pending), 15)
    [(question, _)] = daemon.gateway.confirmations.pending.values()
    return question


def mqtt_client(broker: Any) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


async def test_a_question_of_an_api_task_is_answered_by_its_id_and_token_only_never_by_guessing_or_mqtt(
        tmp_path, scripted_llm, psu, mqtt_broker, daemon_factory, http):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [code_reply(OUTPUT_ON)]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], broker=mqtt_broker))
    base = daemon.server.url
    status, _ = await answer(http, "POST", f"{base}/api/tasks", json={"text": "switch the output on"},
                             headers=bearer(daemon))
    assert status == 202
    question = await pending_question(daemon)
    assert len(question.id) >= 20 and not re.fullmatch(r"c\d+", question.id)

    for guess in [f"c{number}" for number in range(1, 11)] + ["1", "0", question.id[:-1]]:
        status, refused = await answer(http, "POST", f"{base}/api/confirmations/{guess}", json={"approve": True},
                                       headers=bearer(daemon))
        assert (status, refused["error"]["code"]) == (404, "not_found")
    for headers in ({}, {**cookie(daemon), "Origin": ATTACKER}):
        status, _ = await answer(http, "POST", f"{base}/api/confirmations/{question.id}", json={"approve": True},
                                 headers=headers)
        assert status in (401, 403)
    client = mqtt_client(mqtt_broker)  # the MQTT confirm topic answers only tasks that came by MQTT
    try:
        client.publish(f"pyuse/pyuse/confirm/{question.id}/set", "yes", qos=1).wait_for_publish(5)
        await asyncio.sleep(0.5)
    finally:
        client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
        client.loop_stop()
    assert question.id in daemon.gateway.confirmations.pending and psu.output is False

    status, _ = await answer(http, "POST", f"{base}/api/confirmations/{question.id}", json={"approve": True},
                             headers=bearer(daemon))
    assert status == 200
    await until(lambda: psu.output is True)


async def test_a_question_of_an_mqtt_task_is_not_listed_or_answerable_over_the_api(
        tmp_path, scripted_llm, psu, mqtt_broker, daemon_factory, http):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply(OUTPUT_ON), "FINAL ANSWER: The output stays off."]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], broker=mqtt_broker))
    base = daemon.server.url
    client = mqtt_client(mqtt_broker)
    try:
        client.publish("pyuse/pyuse/task", "switch the output on", qos=1).wait_for_publish(5)
        question = await pending_question(daemon)
        assert question.origin == "mqtt"
        assert await answer(http, "GET", f"{base}/api/confirmations", headers=bearer(daemon)) == (200, [])
        status, _ = await answer(http, "POST", f"{base}/api/confirmations/{question.id}", json={"approve": True},
                                 headers=bearer(daemon))
        assert status == 404 and psu.output is False
        client.publish(f"pyuse/pyuse/confirm/{question.id}/set", "no", qos=1).wait_for_publish(5)
        await until(lambda: not daemon.gateway.confirmations.pending)
    finally:
        client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait up to 1 s for
        client.loop_stop()
    assert psu.output is False


# ---- floods and sizes --------------------------------------------------------------------------------------------

async def test_event_streams_beyond_the_cap_get_a_503_and_a_closed_one_frees_its_place(tmp_path, daemon_factory,
                                                                                       http):
    daemon = await daemon_factory(make_config(tmp_path))
    daemon.server.limits.streams = 3
    url = f"{daemon.server.url}/api/events"
    streams = []
    for _ in range(3):
        response = await http.get(url, headers=bearer(daemon))
        assert response.status == 200 and (await response.content.readline()).startswith(b"event: hello")
        streams.append(response)
    for _ in range(5):
        status, refused = await answer(http, "GET", url, headers=bearer(daemon))
        assert (status, refused["error"]["code"]) == (503, "busy")
        assert "3 event streams" in refused["error"]["message"]

    streams.pop().close()
    await until(lambda: daemon.server.api.open_streams == 2)
    async with http.get(url, headers=bearer(daemon)) as response:
        assert response.status == 200
    for stream in streams:
        stream.close()


async def raw_get(port: int, path: str, token: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: close\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_connections_beyond_the_cap_are_turned_away_with_a_503_not_a_traceback(tmp_path, daemon_factory,
                                                                                     caplog):
    daemon = await daemon_factory(make_config(tmp_path))
    daemon.server.limits.connections = 4
    port, token = daemon.server.port, daemon.access.token
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]  # never send a request
    await until(lambda: daemon.server.site.open_connections == 4)

    replies = await asyncio.gather(*(raw_get(port, "/api/health", token) for _ in range(30)))
    for reply in replies:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"application/json" in head
        assert json.loads(body)["error"]["code"] == "busy"
    turned_away = [record for record in caplog.records if "turned away" in record.getMessage()]
    assert len(turned_away) == 1  # once a minute, however many
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]

    for _, writer in idle:
        writer.close()
    await until(lambda: daemon.server.site.open_connections == 0)
    assert (await raw_get(port, "/api/health", token)).startswith(b"HTTP/1.1 200")


async def body_in_chunks(text_length: int) -> AsyncIterator[bytes]:
    """A JSON task sent with Transfer-Encoding: chunked, so there is no Content-Length to check."""
    yield b'{"text": "'
    for _ in range(text_length // 1024):
        yield b"x" * 1024
    yield b'"}'


async def test_a_chunked_body_over_the_limit_is_refused(tmp_path, daemon_factory, http):
    daemon = await daemon_factory(make_config(tmp_path))
    base = daemon.server.url
    headers = {**bearer(daemon), "Content-Type": "application/json"}
    for path in ("/api/tasks", "/api/automations"):
        status, refused = await answer(http, "POST", base + path, data=body_in_chunks(200 * 1024), headers=headers)
        assert (status, refused["error"]["code"]) == (413, "too_large"), path
    status, refused = await answer(http, "POST", f"{base}/api/tasks", data=body_in_chunks(0), headers=headers)
    assert status == 400 and "text" in refused["error"]["message"]  # a small chunked body is read and validated
    assert_nothing_changed(daemon)


async def test_a_hidden_device_is_listed_as_not_exposed(tmp_path, shelly, psu, daemon_factory, http):
    config = make_config(tmp_path, devices=[shelly_entry(shelly), psu_entry(psu)], policy={"hide": ["desk_plug"]})
    daemon = await daemon_factory(config)
    status, devices = await answer(http, "GET", f"{daemon.server.url}/api/devices", headers=bearer(daemon))
    assert status == 200 and {device["id"]: device["exposed"] for device in devices} == {
        "desk_plug": False, "bench_psu": True}
    status, device = await answer(http, "GET", f"{daemon.server.url}/api/devices/desk_plug", headers=bearer(daemon))
    assert device["exposed"] is False


async def test_the_soft_open_file_limit_is_raised_to_the_hard_one_at_start(tmp_path, daemon_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard open-file limit here ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        await daemon_factory(make_config(tmp_path))
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_repeated_errors_are_logged_once_a_minute_with_a_count():
    now = [0.0]
    repeats = RepeatedErrors(clock=lambda: now[0])

    def record(message: str, error: type[BaseException] | None = None, line: int = 1) -> logging.LogRecord:
        made = logging.LogRecord("asyncio", logging.ERROR, "base_events.py", line, message, (), None)
        made.exc_info = (error, error(), None) if error else None
        return made

    shown = [repeats.filter(record(f"accept failed on fd {fd}", OSError)) for fd in range(500)]
    assert shown.count(True) == 1  # the same call failing the same way, whatever the message says
    assert repeats.filter(record("another call", OSError, line=2))  # a different failure is shown
    assert repeats.filter(record("no traceback, one text")) and not repeats.filter(record("no traceback, one text"))
    assert repeats.filter(record("no traceback, another text"))
    assert repeats.filter(logging.LogRecord("x", logging.INFO, "x.py", 1, "info is never held back", (), None))
    now[0] = 61.0
    later = record("accept failed on fd 7", OSError)
    assert repeats.filter(later) and "(499 more like this in the last 60 s were not logged)" in later.getMessage()


# ---- in a browser: headless Chromium -----------------------------------------------------------------------------

async def launch(playwright: Any, resolver_rules: str, *extra: str) -> Browser:
    args = [arg for arg in CHROMIUM_ARGS if not arg.startswith("--host-resolver-rules")]
    return await playwright.chromium.launch(executable_path=CHROMIUM,
                                            args=[*args, f"--host-resolver-rules={resolver_rules}", *extra])


@pytest.fixture
async def chromium() -> AsyncIterator[Callable[[str], Awaitable[Browser]]]:
    if async_playwright is None or CHROMIUM is None:
        pytest.skip("needs Playwright for Python and Debian's Chromium (see tests/test_web.py)")
    async with async_playwright() as playwright:
        browsers: list[Browser] = []

        async def start(resolver_rules: str = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2",
                        *extra: str) -> Browser:
            browsers.append(await launch(playwright, resolver_rules, *extra))
            return browsers[-1]

        yield start
        for browser in browsers:
            await browser.close()


def attack_page(gateway: str) -> str:
    """Another site's page: every way a page has to write to the gateway, blind, then to read from it."""
    task = json.dumps({"text": "switch the output on"})
    return f"""<!doctype html><meta charset="utf-8"><title>cat pictures</title>
<iframe name="sink"></iframe>
<form id="csrf" method="POST" enctype="text/plain" target="sink" action="{gateway}/api/tasks">
  <input name='{{"text": "switch the output on", "pad": "' value='"}}'>
</form>
<script>
const GW = {json.dumps(gateway)};
const results = {{}};
async function attempt(name, run) {{
  try {{ results[name] = await run(); }} catch (error) {{ results[name] = "blocked"; }}
}}
const blind = (path, body) => fetch(GW + path, {{ method: "POST", mode: "no-cors", credentials: "include",
  headers: {{ "Content-Type": "text/plain" }}, body: JSON.stringify(body) }}).then((reply) => reply.type);
const read = (path) => fetch(GW + path, {{ credentials: "include" }}).then((reply) => reply.text());
window.attack = (async () => {{
  await attempt("task", () => blind("/api/tasks", {task}));
  await attempt("automation", () => blind("/api/automations", {json.dumps(AUTOMATION)}));
  for (let n = 1; n <= 10; n++) {{
    await attempt(`confirm c${{n}}`, () => blind(`/api/confirmations/c${{n}}`, {{ approve: true }}));
  }}
  await attempt("json task", () => fetch(GW + "/api/tasks", {{ method: "POST", credentials: "include",
    headers: {{ "Content-Type": "application/json" }}, body: {json.dumps(task)} }}).then((reply) => reply.status));
  for (const path of ["/api/devices", "/api/tasks", "/api/confirmations"]) {{
    await attempt(`read ${{path}}`, () => read(path));
  }}
  await attempt("stream", () => new Promise((resolve, reject) => {{
    const source = new EventSource(GW + "/api/events", {{ withCredentials: true }});
    source.addEventListener("hello", (event) => {{ source.close(); resolve(event.data); }});
    source.onerror = () => {{ source.close(); reject(new Error("refused")); }};
  }}));
  await attempt("form", () => new Promise((resolve) => {{
    document.querySelector("iframe").onload = () => resolve("sent");
    document.getElementById("csrf").submit();
  }}));
  return results;
}})();
</script>"""


async def serve_attack(host: str, gateway: str) -> web.AppRunner:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=attack_page(gateway), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner, _ = await serve_app(app, host)
    return runner


@dataclass
class Seen:
    method: str
    path: str
    origin: str | None
    with_cookie: bool
    status: int | None  # the refusal's, or None: let through to its handler


@pytest.fixture
def seen_by_gateway(monkeypatch: pytest.MonkeyPatch) -> list[Seen]:
    """Every request as the gateway's guard saw and judged it: what the browser hides from the test as well as
    from the page (a refused no-cors response is withheld from both)."""
    seen: list[Seen] = []
    check = server_module.check_request

    def spy(request: web.Request, access: Any, route: Any) -> None:
        entry = Seen(request.method, request.path, request.headers.get("Origin"), access.cookie in request.cookies,
                     None)
        seen.append(entry)
        try:
            check(request, access, route)
        except server_module.ApiError as refused:
            entry.status = refused.status
            raise

    monkeypatch.setattr(server_module, "check_request", spy)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("attacker_host", ["127.0.0.2", "127.0.0.1"], ids=["cross-site", "same-site-other-port"])
async def test_a_page_from_another_origin_can_neither_drive_nor_read_the_gateway_while_its_own_page_can(
        attacker_host, tmp_path, scripted_llm, psu, daemon_factory, chromium, seen_by_gateway):
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply(OUTPUT_ON), "FINAL ANSWER: done"]}]})
    # The question must outlive the attack on a busy machine: unanswered, it would be a no, hiding the dialog (the
    # execution's own time limit stands still while a person is asked).
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], policy={"confirm_timeout_s": 300}))
    gateway = daemon.server.url
    context = await (await chromium()).new_context()
    own = await context.new_page()  # the person has the gateway's page open: the browser holds its cookie
    await own.goto(f"{gateway}/")
    await own.get_by_label(COMMAND).fill("switch the bench supply output on")
    await own.keyboard.press("Enter")
    dialog = own.get_by_role("dialog", name="Allow this?")
    await expect(dialog).to_be_visible()  # a dangerous call waits for the person: the attack tries to answer it

    attacker = await serve_attack(attacker_host, gateway)
    origin = f"http://{attacker_host}:{attacker.addresses[0][1]}"
    try:
        page = await context.new_page()
        await page.goto(f"{origin}/")
        results = await page.evaluate("window.attack")
    finally:
        await attacker.cleanup()

    assert results == {name: "blocked" for name in results} | {"form": "sent"}  # nothing read, not even a status
    assert len(results) == 18
    attack = [entry for entry in seen_by_gateway if entry.origin == origin]
    assert attack and {entry.status for entry in attack} == {403}  # the gateway refused every one it was sent
    blind = [entry.with_cookie for entry in attack if entry.method == "POST"]
    assert len(blind) >= 13  # the task, the automation, ten confirmations and the form reached the gateway
    assert all(blind) if attacker_host == "127.0.0.1" else not any(blind)  # same site: the cookie went along
    assert {entry.origin for entry in seen_by_gateway if entry.status is None} <= {None, gateway}
    assert len(daemon.gateway.store.list_tasks(limit=10)) == 1  # the person's own
    assert daemon.automations.automations == {} and psu.output is False

    await dialog.get_by_role("button", name="Approve").click()  # the person's own page still works
    await expect(own.locator("#task-status")).to_have_text("done")
    [task] = daemon.gateway.store.list_tasks(limit=10)
    assert psu.output is True, [step.observation for step in daemon.gateway.store.steps(task.id)]
    await context.close()


@pytest.mark.slow
async def test_a_rebound_name_reaches_the_gateway_but_reads_and_changes_nothing(tmp_path, psu, daemon_factory,
                                                                                chromium):
    daemon = await daemon_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    port = daemon.server.port
    # evil.example first served the attacker's page (the route below), then its DNS answer became 127.0.0.1.
    # Chromium's Private Network Access would stop a public page's fetch to loopback on its own; other browsers
    # do not, nor does it when the attacker's page comes from the LAN: it is off here, so the gateway must hold.
    browser = await chromium("MAP evil.example 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                             "--disable-features=" + ",".join(BROWSER_REBINDING_CHECKS))
    context = await browser.new_context()
    page = await context.new_page()
    rebound = f"http://evil.example:{port}"
    await page.route(f"{rebound}/cats.html", lambda route: route.fulfill(
        content_type="text/html", body="<!doctype html><title>cat pictures</title>"))
    await page.goto(f"{rebound}/cats.html")

    results = await page.evaluate("""async () => {
      const results = {};
      for (const path of ["/", "/api/devices", "/api/tasks", "/api/confirmations", "/api/health"]) {
        const reply = await fetch(path);  // the same origin, as far as the browser knows: readable
        results[path] = [reply.status, await reply.text()];
      }
      const made = await fetch("/api/tasks", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify({ text: "switch the output on" }) });
      results["POST /api/tasks"] = [made.status, await made.text()];
      return results;
    }""")
    for what, (status, body) in results.items():
        assert status == 403 and json.loads(body)["error"]["code"] == "unknown_host", what
        assert "bench_psu" not in body and "Bench Supply" not in body
    assert await context.cookies() == []  # the page never got the gateway's cookie under the rebound name
    assert_nothing_changed(daemon, psu)
    await context.close()
