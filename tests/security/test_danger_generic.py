"""A kind nobody wrote a reader for: its doc's [[calls]] say what each native call does, its rules name those
actions, and a call the doc does not describe asks (fail closed) rather than slipping past."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from conftest import make_config, serve_app

from gateway.app import Gateway
from gateway.config import DeviceEntry
from gateway.policy import ConfirmationRequest

TERRARIUM_DOC = '''+++
kind = "terrarium"
title = "Terrarium controller (REST)"
transport = "http"

[[calls]]
does = "set_temperature"
method = "PUT"
path = "/api/heater"
value = "/target_c"

[[calls]]
does = "output_on"
method = "PUT"
path = "/api/heater"
json = { "/on" = true }

[[calls]]
does = "set_brightness"
method = "PUT"
path = "/api/light"
value = "/pct"

[[danger]]
when = "set_temperature > 35"
action = "deny"
reason = "too hot for the gecko"

[methods.heat_to]
doc = "Heat to this temperature, in °C."
does = ["output_on", "set_temperature"]
params = { celsius = "float 20..45" }
code = 'self.put("/api/heater", json={"on": True, "target_c": celsius})'
+++
`.put("/api/heater", json={"on": bool, "target_c": float})`, `.put("/api/light", json={"pct": 0-100})`.
'''


class Terrarium:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"heater": {"on": False, "target_c": 25.0}, "light_pct": 0}
        self.writes: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/status", self.status)
        app.router.add_put("/api/heater", self.heater)
        app.router.add_put("/api/light", self.light)
        app.router.add_post("/api/reboot", self.reboot)
        return app

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.state)

    async def heater(self, request: web.Request) -> web.Response:
        self.writes.append("heater")
        self.state["heater"].update(await request.json())
        return web.json_response(self.state)

    async def light(self, request: web.Request) -> web.Response:
        self.writes.append("light")
        self.state["light_pct"] = (await request.json())["pct"]
        return web.json_response(self.state)

    async def reboot(self, request: web.Request) -> web.Response:
        self.writes.append("reboot")
        return web.json_response({})


@pytest.fixture
async def terrarium(tmp_path, gateway_factory) -> AsyncIterator[tuple[Gateway, Terrarium]]:
    device = Terrarium()
    runner, port = await serve_app(device.app())
    (tmp_path / "data" / "device_docs").mkdir(parents=True)
    (tmp_path / "data" / "device_docs" / "terrarium.md").write_text(TERRARIUM_DOC)
    entry = DeviceEntry(id="gecko_tank", name="Gecko Tank", kind="terrarium", host="127.0.0.1", port=port)
    yield await gateway_factory(make_config(tmp_path, devices=[entry])), device
    await runner.cleanup()


@pytest.mark.parametrize(("code", "outcome"), [
    ("tank.heat_to(30)", "ok"),
    ("tank.heat_to(40)", "is not allowed (too hot for the gecko)"),
    ("tank.put('/api/heater', json={'target_c': '40'})", "is not allowed (too hot for the gecko)"),
    ("tank.put('/api/light', json={'pct': 60})", "ok"),
    ("tank.get('/api/status')", "ok"),
    ("tank.post('/api/reboot')", "(could not read this command)"),
    ("tank.put('/api/heater', json={'on': True})", "ok"),
], ids=["within the rule", "over it", "over it as text", "another action", "a read", "undescribed", "the heater on"])
async def test_a_kinds_calls_are_read_by_its_doc(terrarium, code, outcome):
    gateway, device = terrarium
    asked: list[ConfirmationRequest] = []

    async def says_no(question: ConfirmationRequest) -> bool:
        asked.append(question)
        return False

    _, execution = await gateway.run_code(f"tank = devices['gecko_tank']\n{code}", "terrarium", confirm=says_no)

    if outcome == "ok":
        assert execution.status == "ok" and asked == [], execution.output
    else:
        assert outcome in execution.output and device.state["heater"]["target_c"] == 25.0
        assert "reboot" not in device.writes
