"""The admin endpoint of a running home, on a loopback address: tests and people grade and steer it by state.

    GET  /state         every device's state, keyed by device id
    GET  /state/<id>    one device's state
    POST /state/<id>    a JSON object of settable values and/or a fault ({"temperature": 23.5},
                        {"fault": "offline"}); replies with the new state
    GET  /devices       each device's kind, name, area and address
    GET  /clock         the simulated time and the clock's speed
    POST /clock         {"speed": N}: run simulated time N times faster than real time

Errors are JSON: `{"error": "temperature: expected float, got 'warm'", "key": "temperature"}` (400), or
`{"error": "no device 'x'"}` (404).
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any

from aiohttp import web

from simulators.base import PatchError
from simulators.runner import SimHome

HOME = web.AppKey("home", SimHome)


def admin_app(home: SimHome) -> web.Application:
    app = web.Application()
    app[HOME] = home
    app.add_routes([web.get("/state", _all_states), web.get("/state/{id}", _state),
                    web.post("/state/{id}", _apply), web.get("/devices", _devices), web.get("/clock", _clock),
                    web.post("/clock", _set_clock)])
    return app


class AdminServer:
    """Serves admin_app(home) on a loopback address until close()."""

    def __init__(self, home: SimHome, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"admin host: expected a loopback address such as 127.0.0.1, got {host!r}")
        self.host, self.port = host, port
        self._runner = web.AppRunner(admin_app(home), access_log=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self._runner.cleanup()


def _error(status: int, message: str, key: str | None = None) -> web.Response:
    return web.json_response({"error": message} | ({"key": key} if key else {}), status=status)


async def _all_states(request: web.Request) -> web.Response:
    return web.json_response(request.app[HOME].state())


async def _state(request: web.Request) -> web.Response:
    home, device_id = request.app[HOME], request.match_info["id"]
    if device_id not in home.devices:
        return _error(404, f"no device {device_id!r}")
    return web.json_response(home.devices[device_id].state())


async def _apply(request: web.Request) -> web.Response:
    home, device_id = request.app[HOME], request.match_info["id"]
    if device_id not in home.devices:
        return _error(404, f"no device {device_id!r}")
    patch = await _json_object(request)
    if patch is None:
        return _error(400, 'expected a JSON object, e.g. {"temperature": 23.5} or {"fault": "offline"}')
    try:
        return web.json_response(home.apply(device_id, patch))
    except PatchError as error:
        return _error(400, str(error), error.key)
    except ValueError as error:
        return _error(400, str(error))


async def _devices(request: web.Request) -> web.Response:
    return web.json_response(request.app[HOME].directory())


async def _clock(request: web.Request) -> web.Response:
    clock = request.app[HOME].context.clock
    return web.json_response({"speed": clock.speed, "now": clock.now()})


async def _set_clock(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if body is None or set(body) != {"speed"}:
        return _error(400, 'expected {"speed": N}, N times faster than real time')
    speed = body["speed"]
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < math.inf:
        return _error(400, f"speed: expected a positive number, got {speed!r}", "speed")
    clock = request.app[HOME].context.clock
    clock.speed = float(speed)
    return web.json_response({"speed": clock.speed, "now": clock.now()})


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
