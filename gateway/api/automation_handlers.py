"""The /api/automations routes: list, add, show, delete, resume, recompile and trigger automations."""

from __future__ import annotations

from aiohttp import web

from gateway.api.guard import ApiError, read_body
from gateway.automations import Automation, AutomationError, Automations
from gateway.config import AutomationEntry


class AutomationHandlers:
    def __init__(self, automations: Automations) -> None:
        self.automations = automations

    def _automation(self, request: web.Request) -> Automation:
        try:
            return self.automations.get(request.match_info["name"])
        except KeyError as exc:
            raise ApiError(404, "not_found", exc.args[0]) from None

    async def list_automations(self, request: web.Request) -> web.Response:
        return web.json_response({"automations": [automation.summary()
                                                  for automation in self.automations.automations.values()]})

    async def add_automation(self, request: web.Request) -> web.Response:
        entry = await read_body(request, AutomationEntry)
        try:
            automation = self.automations.add(entry)
        except AutomationError as exc:
            raise ApiError(409, "exists", str(exc)) from None
        return web.json_response(automation.summary(), status=201)

    async def get_automation(self, request: web.Request) -> web.Response:
        return web.json_response(self._automation(request).summary())

    async def delete_automation(self, request: web.Request) -> web.Response:
        automation = self._automation(request)
        try:
            await self.automations.remove(automation.name)
        except AutomationError as exc:
            raise ApiError(409, "in_config", str(exc)) from None
        return web.json_response({"name": automation.name, "deleted": True})

    async def resume_automation(self, request: web.Request) -> web.Response:
        return web.json_response(self.automations.resume(self._automation(request).name).summary())

    async def recompile_automation(self, request: web.Request) -> web.Response:
        try:
            automation = self.automations.recompile(self._automation(request).name)
        except AutomationError as exc:
            raise ApiError(409, "no_words", str(exc)) from None
        return web.json_response(automation.summary())

    async def trigger_automation(self, request: web.Request) -> web.Response:
        automation = self._automation(request)
        started = self.automations.fire(automation, {"manual": True})
        return web.json_response({"name": automation.name, "started": started}, status=202)
