"""A hostile HTTP device answers 3xx: the gateway must never follow it (issue 11, item 4).

Followed, a redirect makes the gateway itself send the job's request, with the gateway's network access, to any
address: the simulators' admin endpoint, another device, or the gateway's own API (creating and approving a task).
The device here is a real aiohttp server redirecting every request; the target is another real server (or the
daemon's API), and containment is checked on the target's side: it saw no request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from conftest import make_config, serve_app

from gateway.config import DeviceEntry


@dataclass
class Server:
    """A real loopback HTTP server recording the paths it was asked for."""

    app: web.Application
    seen: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Server:
        self._runner, self.port = await serve_app(self.app)
        return self

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()


def recording(seen: list[str]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path_qs}")
        return web.json_response({"admin": "secret state"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def redirecting(seen: list[str], location: Callable[[], str], status: int) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path_qs}")
        return web.Response(status=status, headers={"Location": location()})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        await server.close()


async def serve(servers: list[Server], make_app: Callable[[list[str]], web.Application]) -> Server:
    seen: list[str] = []
    server = await Server(make_app(seen), seen).start()
    servers.append(server)
    return server


def evil_entry(device: Server, kind: str = "shelly_switch") -> DeviceEntry:
    return DeviceEntry(id="evil_plug", name="Evil Plug", area="porch", kind=kind, host="127.0.0.1", port=device.port)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ['.get("/status")', '.post("/rpc", json={"id": 1, "method": "Switch.GetStatus"})',
                                  '.rpc("Switch.GetStatus", id=0)'])
async def test_a_redirect_is_a_device_error_and_the_target_sees_nothing(start_attacker, servers, status, call):
    target = await serve(servers, recording)
    location = f"http://127.0.0.1:{target.port}/admin/state"
    device = await serve(servers, lambda seen: redirecting(seen, lambda: location, status))
    attacker = await start_attacker([evil_entry(device)])
    device.seen.clear()  # the poller's own state read

    result = await attacker.run(f'print(devices["evil_plug"]{call})')

    assert "DeviceError" in result.output and f"HTTP {status}" in result.output, result.output
    assert location in result.output and "never follow redirects" in result.output
    assert "secret state" not in result.output
    assert len(device.seen) == 1 and target.seen == []
    assert attacker.audit(result.task_id)[-1][2] == "error"


async def test_a_capability_method_meets_the_same_refusal(start_attacker, servers):
    target = await serve(servers, recording)
    device = await serve(servers, lambda seen: redirecting(seen, lambda: f"http://127.0.0.1:{target.port}/", 307))
    attacker = await start_attacker([evil_entry(device)])

    result = await attacker.run('devices["evil_plug"].on()')

    assert "DeviceError: HTTP 307" in result.output, result.output
    assert target.seen == []


async def test_the_gateways_own_api_is_not_reachable_through_a_device(tmp_path, servers, daemon_factory):
    """The reproduction: a 307 to the daemon's /api/tasks made the gateway POST a task to itself."""
    api = {"url": ""}  # known once the daemon listens; the device is configured before that
    device = await serve(servers, lambda seen: redirecting(seen, lambda: api["url"], 307))
    # A kind without danger rules: the body is the API's, not a command the policy would stop on its own.
    daemon = await daemon_factory(make_config(tmp_path, devices=[evil_entry(device, "wled_strip")]))
    api["url"] = f"http://127.0.0.1:{daemon.server.port}/api/tasks"
    before = len(daemon.gateway.store.list_tasks(100))

    _, execution = await daemon.gateway.run_code(
        'devices["evil_plug"].post("/json/state", json={"text": "say hello"})', "redirect to the API")

    assert "DeviceError: HTTP 307" in execution.output and api["url"] in execution.output, execution.output
    tasks = daemon.gateway.store.list_tasks(100)
    assert len(tasks) == before + 1 and tasks[0].origin == "exec"  # only the exec task itself
