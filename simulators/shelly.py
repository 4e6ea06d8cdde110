"""A Shelly Gen2 switch/plug speaking the RPC protocol over HTTP (v0: the switch and the identity calls)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulators.base import Simulator


class ShellySwitch(Simulator):
    kind = "shelly_switch"

    def __init__(self, device_id: str = "plug", name: str = "", area: str = "", mac: str = "AABBCCDDEE01",
                 host: str = "127.0.0.1", port: int = 0, model: str = "SNPL-00112EU", app: str = "PlusPlugS") -> None:
        super().__init__(device_id, name, area)
        self.mac = mac.upper()
        self.host, self.port = host, port
        self.model, self.app = model, app
        self.shelly_id = f"shelly{app.lower()}-{self.mac.lower()}"
        self.output = False
        self.source = "init"
        self._runner: web.AppRunner | None = None

    async def serve(self) -> None:
        app = web.Application()
        app.router.add_get("/shelly", self._identity)
        app.router.add_post("/rpc", self._frame)
        app.router.add_route("*", "/rpc/{method}", self._method)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def state(self) -> dict[str, Any]:
        return {"output": self.output}

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def device_info(self) -> dict[str, Any]:
        return {"name": None, "id": self.shelly_id, "mac": self.mac, "slot": 0, "model": self.model, "gen": 2,
                "fw_id": "20241011-114455/1.4.4-g6d2a586", "ver": "1.4.4", "app": self.app, "auth_en": False,
                "auth_domain": None}

    def switch_status(self) -> dict[str, Any]:
        return {"id": 0, "source": self.source, "output": self.output,
                "apower": 0.0, "voltage": 230.1, "current": 0.0, "aenergy": {"total": 0.0}}

    def call(self, method: str, params: dict[str, Any], source: str) -> Any:
        """Run one RPC method; raises RpcError as the device reports it."""
        if method == "Shelly.GetDeviceInfo":
            return self.device_info()
        if method == "Shelly.GetStatus":
            return {"switch:0": self.switch_status(), "sys": {"mac": self.mac, "restart_required": False}}
        if method in ("Switch.Set", "Switch.Toggle", "Switch.GetStatus"):
            if params.get("id", 0) != 0:
                raise RpcError(-105, f"Argument 'id', value {params.get('id')} not found!")
            if method == "Switch.GetStatus":
                return self.switch_status()
            was_on = self.output
            if method == "Switch.Toggle":
                self.output = not self.output
            else:
                if not isinstance(params.get("on"), bool):
                    raise RpcError(-103, "Missing required argument 'on'!")
                self.output = params["on"]
            self.source = source
            return {"was_on": was_on}
        raise RpcError(404, f"No handler for {method}")

    async def _identity(self, request: web.Request) -> web.Response:
        return web.json_response(self.device_info())

    async def _method(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = {}
        for key, value in request.query.items():
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        if request.method == "POST" and request.can_read_body:
            try:
                params.update(await request.json())
            except ValueError:
                return web.json_response({"code": -103, "message": "Invalid JSON"}, status=400)
        try:
            return web.json_response(self.call(request.match_info["method"], params, "HTTP_in"))
        except RpcError as error:
            status = 404 if error.code == 404 else 400
            return web.json_response({"code": error.code, "message": error.message}, status=status)

    async def _frame(self, request: web.Request) -> web.Response:
        try:
            frame = await request.json()
            method, params = frame["method"], frame.get("params") or {}
        except (ValueError, KeyError, TypeError):
            return web.json_response({"id": None, "src": self.shelly_id, "error": {
                "code": -103, "message": "Invalid request frame"}}, status=400)
        reply: dict[str, Any] = {"id": frame.get("id"), "src": self.shelly_id}
        if "src" in frame:
            reply["dst"] = frame["src"]
        try:
            reply["result"] = self.call(method, params, "HTTP_in")
        except RpcError as error:
            reply["error"] = {"code": error.code, "message": error.message}
        return web.json_response(reply)


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
