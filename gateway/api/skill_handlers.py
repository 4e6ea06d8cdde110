"""The /api/skills routes: list, show, save from a task, run as a task, and delete saved skills."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.agent.llm import LLMError
from gateway.agent.skill_writer import SkillWriteError
from gateway.api import models
from gateway.api.guard import ApiError, read_body
from gateway.api.render import skill_json
from gateway.app import Gateway
from gateway.saved_skills import SkillNotFound
from gateway.tasks import Origin, SkillArgumentError, TaskOptions

Submit = Callable[[str, Origin, TaskOptions], web.Response]  # queue a task, answer 202 with where to follow it


class SkillHandlers:
    def __init__(self, gateway: Gateway, submit: Submit) -> None:
        self.skills = gateway.saved_skills
        self.gateway = gateway
        self.submit = submit

    async def list_skills(self, request: web.Request) -> web.Response:
        entries, errors = self.skills.entries()
        return web.json_response({"skills": [skill_json(entry) for entry in entries], "errors": errors})

    async def get_skill(self, request: web.Request) -> web.Response:
        try:
            skill = self.skills.get(request.match_info["name"])
        except SkillNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return web.json_response(skill_json(self.skills.entry(skill), source=True))

    async def save_skill(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.SkillSave)
        try:
            skill = await self.gateway.save_skill(body.task_id)
        except SkillWriteError as exc:
            raise ApiError(422, "not_saved", str(exc)) from None
        except LLMError as exc:
            raise ApiError(503, "model_unavailable", str(exc)) from None
        return web.json_response(skill_json(self.skills.entry(skill), source=True), status=201)

    async def run_skill(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.SkillRun)
        try:
            text, work = self.skills.work(request.match_info["name"], body.args)
        except SkillNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except SkillArgumentError as exc:
            raise ApiError(400, "invalid_args", str(exc)) from None
        return self.submit(text, "api", TaskOptions(work=work))

    async def delete_skill(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            self.skills.delete(name)
        except SkillNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return web.json_response({"name": name, "deleted": True})
