"""The HTTP API (aiohttp): tasks with their live traces (Server-Sent Events), devices, confirmations, voice,
health, the OpenAPI document, and the web page.

Bound to 127.0.0.1 by default. Every /api request needs the install's token (auth.py: a bearer header, or the
page's cookie), comes from this origin under one of the gateway's own host names, and sends its body as the
route's media type (JSON everywhere but the voice upload), within the route's size limit, chunked or not.
Connections and event streams are capped (limits.py). Every error is JSON {"error": {"code", "message"}}. The
OpenAPI document is generated from ROUTES, the same table the router is built from, so it cannot drift from
the handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.agent.llm import LLMError
from gateway.agent.loop import TaskEvent
from gateway.agent.skill_writer import SkillWriteError
from gateway.api import models
from gateway.api.auth import Access
from gateway.api.limits import CappedSite, Limits
from gateway.api.voice import Transcriber, VoiceUnavailable
from gateway.app import SkillArgumentError, TaskOptions
from gateway.automations import AutomationError, Automations
from gateway.config import AutomationEntry
from gateway.devices.docs import DocLibrary
from gateway.devices.registry import DeviceEvent
from gateway.policy import ANSWER_CHANNELS, ConfirmationRequest, ScopeError, answered_elsewhere
from gateway.runner import Busy, RunningTask, TaskRunner

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
JSON = "application/json"
JSON_LIMIT = 64 * 1024
AUDIO_LIMIT = 16 * 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE_MAX_AGE_S = 400 * 24 * 3600  # the longest browsers keep a cookie; the page renews it on every load
# On every response: no other site may frame the page (a hidden Approve button), sniff a type, or embed a reply.
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin",
                    "Referrer-Policy": "same-origin"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Query = TypeVar("Query", bound=BaseModel)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # name of an Api method
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    stream: bool = False
    many: bool = False  # the response is a list of `response`
    body_limit: int = JSON_LIMIT
    query: type[BaseModel] | None = None  # the query parameters, each a field
    upload: str | None = None  # the media type of a body that is not JSON (a pattern such as audio/*)
    public: bool = False  # answered without the token
    errors: tuple[tuple[str, str], ...] = ()  # (status, meaning): answers of this route besides the common ones

    @property
    def media_type(self) -> str | None:
        """What the body must be sent as; None when the route takes no body."""
        return JSON if self.body is not None else self.upload


ROUTES = [
    Route("POST", "/api/tasks", "create_task", "Start a task from a command", models.TaskRequest,
          models.TaskCreated, 202),
    Route("GET", "/api/tasks", "list_tasks", "Recent tasks, newest first", response=models.TaskPage,
          query=models.TaskQuery),
    Route("GET", "/api/tasks/{id}", "get_task", "One task with its steps (by its id, or a unique prefix of it)",
          response=models.Task),
    Route("POST", "/api/tasks/{id}/cancel", "cancel_task", "Cancel a queued or running task",
          response=models.Cancelled),
    Route("GET", "/api/tasks/{id}/events", "task_events", "The task's trace as Server-Sent Events: queued, "
          "started, delta, retry, code, observation, confirmation, answer, finished", stream=True),
    Route("POST", "/api/prompt", "preview_prompt", "The exact messages a command would send to the model, without "
          "running it (`pyuse prompt`)", models.PromptRequest, models.PromptPreview),
    Route("GET", "/api/devices", "list_devices", "Every device the gateway knows", response=models.Device,
          many=True),
    Route("GET", "/api/devices/{id}", "get_device", "One device", response=models.Device),
    Route("GET", "/api/confirmations", "list_confirmations", "Dangerous calls waiting for a yes or no",
          response=models.Confirmation, many=True),
    Route("POST", "/api/confirmations/{id}", "answer_confirmation", "Approve or refuse a dangerous call",
          models.ConfirmationAnswer, models.Answered),
    Route("GET", "/api/events", "events", "Device changes and task progress for the web page, as Server-Sent "
          "Events", stream=True),
    Route("POST", "/api/voice", "voice", "Upload audio (any format the transcription server takes); its "
          "transcript runs as a task", response=models.TaskCreated, status=202, body_limit=AUDIO_LIMIT,
          upload="audio/*", errors=(("422", "nothing was heard in the audio"),
                                    ("501", "no transcription server is configured ([stt] base_url)"))),
    Route("GET", "/api/skills", "list_skills", "Saved skills, and files in the skills folder that do not check "
          "out", response=models.SkillList),
    Route("POST", "/api/skills", "save_skill", "Have the model turn a task it solved into a skill (takes a model "
          "call)", models.SkillSave, models.Skill, 201,
          errors=(("422", "the task cannot become a skill: the message says why"),
                  ("503", "no model is configured, or it cannot be reached"))),
    Route("GET", "/api/skills/{name}", "get_skill", "One skill with its source", response=models.Skill),
    Route("POST", "/api/skills/{name}/run", "run_skill", "Run a skill as a task", models.SkillRun,
          models.TaskCreated, 202),
    Route("DELETE", "/api/skills/{name}", "delete_skill", "Delete a skill's file", response=models.Deleted),
    Route("GET", "/api/automations", "list_automations", "Automations, with their state and last run",
          response=models.AutomationList),
    Route("POST", "/api/automations", "add_automation", "Add an automation (kept in the store; the same fields "
          "as [[automations]] in the config)", AutomationEntry, models.Automation, 201,
          errors=(("409", "an automation with this name exists"),)),
    Route("GET", "/api/automations/{name}", "get_automation", "One automation", response=models.Automation),
    Route("DELETE", "/api/automations/{name}", "delete_automation", "Delete an automation made through the API",
          response=models.Deleted, errors=(("409", "it is defined in the config file: remove it there"),)),
    Route("POST", "/api/automations/{name}/resume", "resume_automation", "Let a stopped automation run again",
          response=models.Automation),
    Route("POST", "/api/automations/{name}/recompile", "recompile_automation", "Have the model compile the "
          "action's words again on the next run", response=models.Automation,
          errors=(("409", "it runs a skill, not words: there is nothing to compile"),)),
    Route("POST", "/api/automations/{name}/trigger", "trigger_automation", "Run it now, as if triggered",
          response=models.Fired, status=202),
    Route("GET", "/api/health", "health", "Whether the gateway is ready, and what it runs under",
          response=models.Health),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
    Route("POST", "/api/session", "start_session", "Trade the API token for this browser's cookie (the page on a "
          "gateway bound to a non-loopback address asks for the token once)", models.SessionStart, status=204,
          public=True, errors=(("401", "that is not this gateway's API token"),)),
]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def problems(exc: ValidationError, where: str) -> str:
    """One clause per problem, each naming its field: "limit: Input should be less than or equal to 200"."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or where}: "
                     f"{error['msg'].removeprefix('Value error, ')}" for error in exc.errors())


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def task_json(record: Any, steps: list[Any] | None = None, calls: list[Any] | None = None) -> dict[str, Any]:
    return models.Task(
        id=record.id, text=record.text, origin=record.origin, status=record.status, answer=record.answer,
        error=record.error, created_at=record.created_at, started_at=record.started_at,
        finished_at=record.finished_at, turns=record.turns, tokens=record.tokens, duration_ms=record.duration_ms,
        sandbox_layers=[layer for layer in (record.sandbox_layers or "").split(",") if layer],
        processed_locally=bool(record.processed_locally),
        steps=None if steps is None else [models.Step(
            turn=step.turn, thought=step.thought, code=step.code, observation=step.observation,
            llm_ms=step.llm_ms, exec_ms=step.exec_ms, prompt_tokens=step.prompt_tokens,
            completion_tokens=step.completion_tokens) for step in steps],
        calls=None if calls is None else [models.Call(device=row.device_id, method=row.method, target=row.target,
                                                      outcome=row.outcome) for row in calls]).model_dump()


def device_json(device: Any, docs: DocLibrary, exposed: bool) -> dict[str, Any]:
    doc = docs.get(device.kind)
    return models.Device(id=device.id, name=device.name, kind=device.kind, transport=device.transport,
                         area=device.area, aliases=device.aliases, online=device.online, exposed=exposed,
                         source=device.source, state=device.state,
                         state_keys=doc.state_keys if doc else []).model_dump()


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes as it arrives: a chunked body has no Content-Length to check first."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return bytes(body)


def _media_matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected[:-1]) if expected.endswith("/*") else actual == expected


def check_request(request: web.Request, access: Access, route: Route | None) -> None:
    """Refuse what another site's page could send: a name that is not ours (DNS rebinding), another origin, no
    token, a body that is not the route's media type (text/plain needs no CORS preflight), or one over its limit."""
    headers = request.headers
    if not access.host_allowed(headers.get("Host")):
        raise ApiError(403, "unknown_host", f"this gateway does not answer to {headers.get('Host')!r}: open it by "
                       "its address (http://127.0.0.1:<port>/ on this machine) or as localhost")
    if not request.path.startswith("/api/"):
        return
    if not access.same_origin(headers.get("Origin"), headers.get("Host"), headers.get("Sec-Fetch-Site")):
        raise ApiError(403, "foreign_origin", "the API answers the gateway's own page and clients that are not "
                       "browsers, never another site's page")
    if not (route and route.public) and not access.credential_ok(headers.get("Authorization"),
                                                                  request.cookies.get(access.cookie)):
        raise ApiError(401, "unauthorized", "this gateway needs its API token: send 'Authorization: Bearer "
                       "<token>' with the token from `pyuse token` (the file api_token in the data dir)")
    expected = route.media_type if route else None
    if request.method not in SAFE_METHODS and (expected or request.body_exists) \
            and not _media_matches(request.content_type, expected or JSON):
        raise ApiError(415, "unsupported_media_type", f"send the body as {expected or JSON} "
                       f"(Content-Type: {expected or JSON}), not {request.content_type}")
    limit = route.body_limit if route else JSON_LIMIT
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")


class Broadcast:
    """Fan-out of gateway-wide events to /api/events subscribers."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()

    def send(self, kind: str, data: dict[str, Any]) -> None:
        for queue in self.queues:
            if queue.qsize() < 1000:  # a stalled browser loses events rather than growing memory
                queue.put_nowait((kind, data))


class Api:
    def __init__(self, runner: TaskRunner, automations: Automations, access: Access, transcriber: Transcriber,
                 limits: Limits) -> None:
        self.runner = runner
        self.automations = automations
        self.gateway = runner.gateway
        self.access = access
        self.transcriber = transcriber
        self.limits = limits
        self.open_streams = 0
        self.broadcast = Broadcast()
        self.gateway.registry.subscribe(self._device_event)
        self.runner.listeners.append(self._task_event)
        self.gateway.confirmations.listeners.append(self._confirmation_event)
        self.automations.listeners.append(self._automation_event)
        self.gateway.mqtt.on_connect.append(self._mqtt_event)
        self.gateway.mqtt.on_disconnect.append(self._mqtt_event)

    # plumbing
    def _device_json(self, device: Any) -> dict[str, Any]:
        return device_json(device, self.gateway.docs, self.gateway.policy.exposed(device))

    def _device_event(self, event: DeviceEvent) -> None:
        self.broadcast.send("device", {"event": event.type, "device": self._device_json(event.device)})

    def _task_event(self, task: RunningTask, event: TaskEvent) -> None:
        if event.kind in ("queued", "started", "answer", "finished"):
            self.broadcast.send("task", {"id": task.id, "event": event.kind, "text": task.text, **event.data})

    def _confirmation_event(self, what: str, request: ConfirmationRequest, approved: bool | None) -> None:
        data = asdict(request) | {"state": what, "approved": approved}
        self.broadcast.send("confirmation", data)
        task = self.runner.tasks.get(request.task_id)
        if task is not None:
            self.runner.emit(task, TaskEvent(task.id, "confirmation", data))

    def _automation_event(self, what: str, automation: Any) -> None:
        self.broadcast.send("automation", {"event": what, "automation": automation.summary()})

    def _mqtt_event(self) -> None:
        """The broker came or went: the page asks for health again, which says so."""
        self.broadcast.send("health", {"mqtt_connected": self.gateway.mqtt.connected})

    async def _body(self, request: web.Request, model: type[BaseModel]) -> Any:
        raw = await read_limited(request, JSON_LIMIT)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError(400, "invalid_body", problems(exc, "body")) from None

    @staticmethod
    def _query(request: web.Request, model: type[Query]) -> Query:
        try:
            return model.model_validate({name: request.query[name] for name in model.model_fields
                                         if name in request.query})
        except ValidationError as exc:
            raise ApiError(400, "invalid_query", problems(exc, "query")) from None

    def _submit(self, text: str, origin: str, devices: list[str] | None,
                options: TaskOptions | None = None) -> web.Response:
        try:
            task = self.runner.submit(text, origin, devices, confirm=answered_elsewhere, options=options)
        except Busy as exc:
            raise ApiError(503, "busy", str(exc)) from None
        return web.json_response(models.TaskCreated(id=task.id, status="queued",
                                                    events=f"/api/tasks/{task.id}/events").model_dump(), status=202)

    # handlers
    async def create_task(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.TaskRequest)
        if body.devices:
            try:
                self.gateway.policy.devices_for_task(self.gateway.registry, body.devices)
            except ScopeError as exc:
                raise ApiError(400, "unknown_devices", str(exc)) from None
        return self._submit(body.text, body.origin, body.devices)

    async def list_tasks(self, request: web.Request) -> web.Response:
        query = self._query(request, models.TaskQuery)
        records = self.gateway.store.list_tasks(limit=query.limit, offset=query.offset)
        return web.json_response({"tasks": [task_json(record) for record in records], "offset": query.offset,
                                  "limit": query.limit})

    def _record(self, request: web.Request) -> Any:
        record = self.gateway.store.get_task(request.match_info["id"])
        if record is None:
            raise ApiError(404, "not_found", f"no task {request.match_info['id']!r}")
        return record

    async def get_task(self, request: web.Request) -> web.Response:
        record = self._record(request)
        store = self.gateway.store
        return web.json_response(task_json(record, store.steps(record.id), store.audit_rows(record.id)))

    async def cancel_task(self, request: web.Request) -> web.Response:
        record = self._record(request)
        return web.json_response({"id": record.id, "cancelled": self.runner.cancel(record.id)})

    async def task_events(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        async with self._stream(request) as response:
            task = self.runner.tasks.get(record.id)
            if task is None:  # finished before this daemon started: its outcome is all there is
                await self._send(response, "finished", {"task_id": record.id, "status": record.status,
                                                        "answer": record.answer, "error": record.error,
                                                        "processed_locally": bool(record.processed_locally)})
                return response
            async for event in task.follow():
                await self._send(response, event.kind, event.data)
            return response

    async def events(self, request: web.Request) -> web.StreamResponse:
        async with self._stream(request) as response:
            queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
            self.broadcast.queues.add(queue)
            try:
                await self._send(response, "hello", {"gateway": self.gateway.config.gateway.id})
                while True:
                    try:
                        async with asyncio.timeout(15):
                            kind, data = await queue.get()
                        await self._send(response, kind, data)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
            except (ConnectionResetError, asyncio.CancelledError):
                return response
            finally:
                self.broadcast.queues.discard(queue)

    @asynccontextmanager
    async def _stream(self, request: web.Request) -> AsyncIterator[web.StreamResponse]:
        """An event stream, counted against the cap while it is open: each one holds a connection and a file."""
        if self.open_streams >= self.limits.streams:
            raise ApiError(503, "busy", f"{self.limits.streams} event streams are open, the most the gateway "
                           "serves: close other tabs or clients following it, then try again")
        self.open_streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "X-Accel-Buffering": "no"})
            await response.prepare(request)
            yield response
        finally:
            self.open_streams -= 1

    @staticmethod
    async def _send(response: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
        await response.write(f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode())

    async def preview_prompt(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.PromptRequest)
        try:
            prompt = self.gateway.build_prompt(body.text, body.devices)
        except ScopeError as exc:
            raise ApiError(400, "unknown_devices", str(exc)) from None
        return web.json_response(models.PromptPreview.model_validate(asdict(prompt)).model_dump())

    async def list_devices(self, request: web.Request) -> web.Response:
        return web.json_response([self._device_json(device) for device in self.gateway.registry.all()])

    async def get_device(self, request: web.Request) -> web.Response:
        device = self.gateway.registry.get(request.match_info["id"])
        if device is None:
            raise ApiError(404, "not_found", f"no device {request.match_info['id']!r}")
        return web.json_response(self._device_json(device))

    async def list_confirmations(self, request: web.Request) -> web.Response:
        """Only the questions of tasks started through the API: the others are answered on their own channel."""
        return web.json_response([asdict(pending) for pending, _ in self.gateway.confirmations.pending.values()
                                  if ANSWER_CHANNELS.get(pending.origin) == "api"])

    async def answer_confirmation(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.ConfirmationAnswer)
        request_id = request.match_info["id"]
        if not self.gateway.confirmations.answer(request_id, body.approve, channel="api"):
            raise ApiError(404, "not_found", f"no pending confirmation {request_id!r} for a task started here "
                                             "(answered, expired, or it belongs to another channel)")
        return web.json_response({"id": request_id, "approved": body.approve})

    async def voice(self, request: web.Request) -> web.Response:
        audio = await read_limited(request, AUDIO_LIMIT)
        if not audio:
            raise ApiError(400, "invalid_body", "send the audio as the request body")
        try:
            text = await self.transcriber.transcribe(audio, request.content_type or "audio/wav")
        except VoiceUnavailable as exc:
            raise ApiError(501, "voice_not_configured", str(exc)) from None
        if not text.strip():
            raise ApiError(422, "no_speech", "the transcription is empty: nothing was said, or it was not heard")
        return self._submit(text.strip(), "voice", None)

    # skills
    def _skill_json(self, skill: Any, records: dict[str, dict[str, Any]], source: bool = False) -> dict[str, Any]:
        record = records.get(skill.name, {})
        return models.Skill(name=skill.name, doc=skill.doc, params=skill.params, triggers=skill.triggers,
                            runs=record.get("runs", 0), failures=record.get("failures", 0),
                            task_id=record.get("task_id"), last_error=record.get("last_error"),
                            source=skill.source if source else None).model_dump()

    async def list_skills(self, request: web.Request) -> web.Response:
        skills = self.gateway.skills.load()
        records = self.gateway.store.skill_records()
        return web.json_response({"skills": [self._skill_json(skill, records) for skill in skills],
                                  "errors": self.gateway.skills.errors})

    def _skill(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        skill = self.gateway.skills.get(name)
        if skill is None:
            problems = [error for error in self.gateway.skills.errors if error.startswith(f"{name}.py")]
            raise ApiError(404, "not_found", problems[0] if problems else f"no skill {name!r}")
        return skill

    async def get_skill(self, request: web.Request) -> web.Response:
        return web.json_response(self._skill_json(self._skill(request), self.gateway.store.skill_records(), True))

    async def save_skill(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.SkillSave)
        try:
            skill = await self.gateway.save_skill(body.task_id)
        except SkillWriteError as exc:
            raise ApiError(422, "not_saved", str(exc)) from None
        except LLMError as exc:
            raise ApiError(503, "model_unavailable", str(exc)) from None
        return web.json_response(self._skill_json(skill, self.gateway.store.skill_records(), True), status=201)

    async def run_skill(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.SkillRun)
        skill = self._skill(request)
        try:
            text, work = self.gateway.skill_work(skill.name, body.args)
        except SkillArgumentError as exc:
            raise ApiError(400, "invalid_args", str(exc)) from None
        return self._submit(text, "api", None, TaskOptions(work=work))

    async def delete_skill(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self.gateway.skills.delete(name):
            raise ApiError(404, "not_found", f"no skill {name!r}")
        self.gateway.store.forget_skill(name)
        return web.json_response({"name": name, "deleted": True})

    # automations
    def _automation(self, request: web.Request) -> Any:
        try:
            return self.automations.get(request.match_info["name"])
        except KeyError as exc:
            raise ApiError(404, "not_found", exc.args[0]) from None

    async def list_automations(self, request: web.Request) -> web.Response:
        return web.json_response({"automations": [automation.summary()
                                                  for automation in self.automations.automations.values()]})

    async def add_automation(self, request: web.Request) -> web.Response:
        entry = await self._body(request, AutomationEntry)
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

    async def health(self, request: web.Request) -> web.Response:
        sandbox, mqtt = self.gateway.sandbox, self.gateway.mqtt
        stats = self.runner.stats()
        return web.json_response(models.Health(
            status="ok" if sandbox.refusal is None else "degraded", gateway=self.gateway.config.gateway.id,
            sandbox_layers=sandbox.layers, sandbox_refusal=sandbox.refusal,
            mqtt_broker=f"{mqtt.host}:{mqtt.port}" if mqtt.in_use else None, mqtt_connected=mqtt.connected,
            mqtt_down_since=mqtt.down_since, model_configured=self.gateway.llm is not None,
            devices=len(self.gateway.registry.all()), tasks_running=stats["running"],
            tasks_queued=stats["queued"]).model_dump())

    async def openapi(self, request: web.Request) -> web.Response:
        from gateway.api.openapi import build_spec

        return web.json_response(build_spec(ROUTES, self.access.cookie))

    async def start_session(self, request: web.Request) -> web.Response:
        body = await self._body(request, models.SessionStart)
        if not self.access.credential_ok(f"Bearer {body.token}", None):
            raise ApiError(401, "unauthorized", "that is not this gateway's API token: `pyuse token` prints it")
        response = web.Response(status=204)
        self._give_cookie(response)
        return response

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
        if self.access.page_gets_token:
            self._give_cookie(response)
        return response

    def _give_cookie(self, response: web.StreamResponse) -> None:
        """HttpOnly: no script reads it; SameSite=Strict: no other site's request carries it."""
        response.set_cookie(self.access.cookie, self.access.token, max_age=COOKIE_MAX_AGE_S, path="/api/",
                            httponly=True, samesite="Strict")


def create_app(api: Api) -> web.Application:
    access = api.access
    routes = {(route.method, route.path): route for route in ROUTES}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resource = request.match_info.route.resource
            check_request(request, access, routes.get((request.method, resource.canonical if resource else "")))
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "too_large", "the body is too large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("API handler failed on %s %s", request.method, request.path)
            return error_response(500, "internal", "the gateway failed on this request; its log says why")

    async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    app = web.Application(middlewares=[guard], client_max_size=JSON_LIMIT)
    app.on_response_prepare.append(secure_headers)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, getattr(api, route.handler))
    app.router.add_get("/", api.index)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
    return app


class ApiServer:
    def __init__(self, runner: TaskRunner, automations: Automations, host: str, port: int, access: Access,
                 transcriber: Transcriber, limits: Limits | None = None) -> None:
        self.host, self.port = host, port
        self.limits = limits or Limits()
        self.api = Api(runner, automations, access, transcriber, self.limits)
        self.app = create_app(self.api)
        self._runner: web.AppRunner | None = None
        self.site: CappedSite | None = None

    async def start(self) -> None:
        # handler_cancellation: an SSE stream ends when its client goes, not at the shutdown timeout.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2, handler_cancellation=True)
        await self._runner.setup()
        self.site = CappedSite(self._runner, self.host, self.port, self.limits)
        await self.site.start()
        self.port = self.site.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()
