"""The HTTP API (aiohttp): the application, its middleware and server, and the handlers of tasks with their live
traces (Server-Sent Events), devices, confirmations, voice, health, the OpenAPI document, and the web page. The
handlers of skills and automations are in skill_handlers.py and automation_handlers.py.

Bound to 127.0.0.1 by default. Every request passes guard.py first: the install's token (auth.py: a bearer
header, or the page's cookie), this origin under one of the gateway's own host names, the route's media type and
size limit. Connections and event streams are capped (limits.py). Every error is JSON {"error": {"code",
"message"}}. The router and the OpenAPI document are both built from ROUTES (routes.py), so they cannot drift
apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.api import models
from gateway.api.auth import Access
from gateway.api.automation_handlers import AutomationHandlers
from gateway.api.guard import ApiError, check_request, error_response, read_body, read_limited, read_query
from gateway.api.limits import CappedSite, Limits
from gateway.api.render import device_json, health_json, task_json
from gateway.api.routes import AUDIO_LIMIT, JSON_LIMIT, ROUTES
from gateway.api.skill_handlers import SkillHandlers
from gateway.api.voice import Transcriber, VoiceUnavailable
from gateway.automations import Automation, Automations
from gateway.devices.model import Device
from gateway.devices.registry import DeviceEvent
from gateway.policy import ConfirmationRequest, ScopeError, answered_elsewhere
from gateway.questions import Question
from gateway.runner import Busy, RunningTask, TaskRunner
from gateway.task_history import TaskRecord
from gateway.tasks import Origin, TaskEvent, TaskOptions

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
COOKIE_MAX_AGE_S = 400 * 24 * 3600  # the longest browsers keep a cookie; the page renews it on every load
# On every response: no other site may frame the page (a hidden Approve button), sniff a type, or embed a reply.
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin",
                    "Referrer-Policy": "same-origin"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Broadcast:
    """Fan-out of gateway-wide events to /api/events subscribers."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()

    def send(self, kind: str, data: dict[str, Any]) -> None:
        for queue in self.queues:
            if queue.qsize() < 1000:  # a stalled browser loses events rather than growing memory
                queue.put_nowait((kind, data))


class Api:
    """The handlers of tasks, their event streams, devices, confirmations, voice, health and the page; those of
    skills and automations are in their own modules."""

    def __init__(self, runner: TaskRunner, automations: Automations, access: Access, transcriber: Transcriber,
                 limits: Limits) -> None:
        self.runner = runner
        self.gateway = runner.gateway
        self.access = access
        self.transcriber = transcriber
        self.limits = limits
        self.open_streams = 0
        self.broadcast = Broadcast()
        self.skills = SkillHandlers(self.gateway, lambda text, origin, options: self._submit(text, origin, None,
                                                                                            options))
        self.automations = AutomationHandlers(automations)
        self.gateway.watch_devices(self._device_event)
        self.runner.listeners.append(self._task_event)
        self.gateway.watch_confirmations(self._confirmation_event)
        self.gateway.watch_questions(self._question_event)
        automations.listeners.append(self._automation_event)
        self.gateway.mqtt.on_connect.append(self._mqtt_event)
        self.gateway.mqtt.on_disconnect.append(self._mqtt_event)

    def handler(self, name: str) -> Handler:
        """The method that answers the route whose handler is `name`."""
        owner = next(owner for owner in (self, self.skills, self.automations) if hasattr(owner, name))
        handler: Handler = getattr(owner, name)
        return handler

    # plumbing
    def _device_json(self, device: Device) -> dict[str, Any]:
        return device_json(self.gateway.device_view(device))

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

    def _question_event(self, what: str, question: Question, answer: str | None) -> None:
        data = asdict(question) | {"state": what, "answer": answer}
        self.broadcast.send("question", data)
        task = self.runner.tasks.get(question.task_id)
        if task is not None:
            self.runner.emit(task, TaskEvent(task.id, "question", data))

    def _automation_event(self, what: str, automation: Automation) -> None:
        self.broadcast.send("automation", {"event": what, "automation": automation.summary()})

    def _mqtt_event(self) -> None:
        """The broker came or went: the page asks for health again, which says so."""
        self.broadcast.send("health", {"mqtt_connected": self.gateway.mqtt.connected})

    def _submit(self, text: str, origin: Origin, devices: list[Device] | None,
                options: TaskOptions | None = None) -> web.Response:
        try:
            task = self.runner.submit(text, origin, devices, confirm=answered_elsewhere, options=options,
                                      ask=answered_elsewhere)
        except Busy as exc:
            raise ApiError(503, "busy", str(exc)) from None
        return web.json_response(models.TaskCreated(id=task.id, status="queued",
                                                    events=f"/api/tasks/{task.id}/events").model_dump(), status=202)

    # handlers
    async def create_task(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.TaskRequest)
        try:  # the scope is resolved once, now: the task carries it
            devices = self.gateway.scope(body.devices) if body.devices else None
        except ScopeError as exc:
            raise ApiError(400, "unknown_devices", str(exc)) from None
        return self._submit(body.text, body.origin, devices)

    async def list_tasks(self, request: web.Request) -> web.Response:
        query = read_query(request, models.TaskQuery)
        records = self.gateway.history.recent(limit=query.limit, offset=query.offset)
        return web.json_response({"tasks": [task_json(record) for record in records], "offset": query.offset,
                                  "limit": query.limit})

    def _record(self, request: web.Request) -> TaskRecord:
        record = self.gateway.task(request.match_info["id"])
        if record is None:
            raise ApiError(404, "not_found", f"no task {request.match_info['id']!r}")
        return record

    async def get_task(self, request: web.Request) -> web.Response:
        trace = self.gateway.history.trace(request.match_info["id"])
        if trace is None:
            raise ApiError(404, "not_found", f"no task {request.match_info['id']!r}")
        return web.json_response(task_json(trace.task, trace))

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
        body = await read_body(request, models.PromptRequest)
        try:
            prompt = self.gateway.build_prompt(body.text, body.devices)
        except ScopeError as exc:
            raise ApiError(400, "unknown_devices", str(exc)) from None
        return web.json_response(models.PromptPreview.model_validate(asdict(prompt)).model_dump())

    async def help(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(await self.gateway.help()))

    async def list_devices(self, request: web.Request) -> web.Response:
        return web.json_response([self._device_json(device) for device in self.gateway.devices()])

    async def get_device(self, request: web.Request) -> web.Response:
        device = self.gateway.device(request.match_info["id"])
        if device is None:
            raise ApiError(404, "not_found", f"no device {request.match_info['id']!r}")
        return web.json_response(self._device_json(device))

    async def list_confirmations(self, request: web.Request) -> web.Response:
        """Only the questions of tasks started through the API: the others are answered on their own channel."""
        return web.json_response([asdict(pending) for pending in self.gateway.pending_confirmations("api")])

    async def answer_confirmation(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.ConfirmationAnswer)
        request_id = request.match_info["id"]
        if not self.gateway.answer_confirmation(request_id, body.approve, channel="api"):
            raise ApiError(404, "not_found", f"no pending confirmation {request_id!r} for a task started here "
                                             "(answered, expired, or it belongs to another channel)")
        return web.json_response({"id": request_id, "approved": body.approve})

    async def list_questions(self, request: web.Request) -> web.Response:
        """Only the questions of tasks started through the API: the others are answered on their own channel."""
        return web.json_response([asdict(pending) for pending in self.gateway.pending_questions("api")])

    async def answer_question(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.QuestionAnswer)
        question_id = request.match_info["id"]
        try:
            taken = self.gateway.answer_question(question_id, body.answer, channel="api")
        except ValueError as exc:
            raise ApiError(422, "invalid_answer", str(exc)) from None
        if taken is None:
            raise ApiError(404, "not_found", f"no pending question {question_id!r} for a task started here "
                                             "(answered, expired, or it belongs to another channel)")
        return web.json_response({"id": question_id, "answer": taken})

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

    async def health(self, request: web.Request) -> web.Response:
        stats = self.runner.stats()
        return web.json_response(health_json(self.gateway.health(), stats["running"], stats["queued"]))

    async def openapi(self, request: web.Request) -> web.Response:
        from gateway.api.openapi import build_spec

        return web.json_response(build_spec(ROUTES, self.access.cookie))

    async def start_session(self, request: web.Request) -> web.Response:
        body = await read_body(request, models.SessionStart)
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
        app.router.add_route(route.method, route.path, api.handler(route.handler))
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
