"""A client for a running `pyuse run`'s HTTP API, for the CLI commands that act through the daemon: automations
always, and `ask`, `devices` and `skills run` whenever a daemon owns the data dir (see running_daemon).

It reads the API token from the data dir (the daemon made it there, mode 600) and sends it as a bearer header,
so the CLI works wherever the daemon listens, with no step of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import aiohttp

from gateway.api.auth import TOKEN_FILE, read_token
from gateway.config import Config
from gateway.demo_link import running_demo
from gateway.errors import GatewayError
from gateway.lock import DataDirBusy, holder
from gateway.policy import ConfirmationRequest, Confirmer
from gateway.questions import Asker, Question
from gateway.tasks import EventKind, EventSink, TaskEvent, TaskResult

EVENT_KINDS: dict[str, EventKind] = {kind: kind for kind in get_args(EventKind)}


class DaemonUnavailable(GatewayError):
    """Nothing answers at the configured API address; the message says how to start it."""


class RemoteError(GatewayError):
    """The daemon answered with an error; the message is its own."""


class DaemonClient:
    def __init__(self, config: Config) -> None:
        host = config.api.host
        connect_to = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else
                                                                   f"[{host}]" if ":" in host else host)
        self.base_url = f"http://{connect_to}:{config.api.port}"
        self.token_path = config.gateway.data_dir / TOKEN_FILE
        try:
            token = read_token(config.gateway.data_dir)
        except PermissionError:  # the daemon runs as another user: the 401 below says where the token is
            token = None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.request(method, self.base_url + path, json=body, headers=self.headers) as reply:
                    data = await reply.json(content_type=None)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        self._check(reply.status, data)
        return data

    async def events(self, path: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """A Server-Sent Events stream as (event, data) pairs, until the daemon ends it."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)  # a task may run for minutes
        try:
            async with aiohttp.ClientSession(trust_env=False, timeout=timeout) as session:
                async with session.get(self.base_url + path, headers=self.headers) as reply:
                    if reply.status >= 400:
                        self._check(reply.status, await reply.json(content_type=None))
                    buffer = b""
                    async for chunk in reply.content.iter_any():  # not by line: an observation may be long
                        buffer += chunk
                        *frames, buffer = buffer.split(b"\n\n")
                        for frame in frames:
                            event = _parse_event(frame.decode("utf-8", "replace"))
                            if event is not None:
                                yield event
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self._unavailable(exc) from None

    async def follow_task(self, task_id: str, on_event: EventSink, confirm: Confirmer | None,
                          ask: Asker | None = None) -> TaskResult:
        """Follow a task in the daemon to its end, handing its events to `on_event` as a local task would and
        putting its dangerous calls to `confirm` (None: nobody can answer, so they are refused at once) and its
        questions to `ask` (None: they wait until they expire, and the task ends needing input)."""
        async for kind, data in self.events(f"/api/tasks/{task_id}/events"):
            if kind == "finished":
                return TaskResult(task_id, data["status"], data.get("answer"), data.get("error"),
                                  data.get("turns", 0), data.get("tokens", 0), data.get("duration_ms", 0.0),
                                  data.get("processed_locally", False), calls=data.get("calls", 0))
            if kind == "confirmation":
                if data["state"] == "asked":
                    request = ConfirmationRequest(**{name: data[name]
                                                     for name in ConfirmationRequest.__dataclass_fields__})
                    approved = await confirm(request) if confirm else False
                    try:
                        await self.call("POST", f"/api/confirmations/{request.id}", {"approve": approved})
                    except RemoteError:  # expired meanwhile: the task says what became of the call
                        pass
            elif kind == "question":
                if data["state"] == "asked" and ask is not None:
                    question = Question(**{name: data[name] for name in Question.__dataclass_fields__})
                    try:
                        await self.call("POST", f"/api/questions/{question.id}", {"answer": await ask(question)})
                    except RemoteError:  # expired meanwhile, or an empty answer: the task says what became of it
                        pass
            elif kind in EVENT_KINDS:
                on_event(TaskEvent(task_id, EVENT_KINDS[kind], data))
        raise DaemonUnavailable(f"the gateway at {self.base_url} ended task {task_id}'s event stream before the "
                                "task finished: did it stop?")

    def _unavailable(self, exc: Exception) -> DaemonUnavailable:
        return DaemonUnavailable(f"no gateway answers at {self.base_url} ({exc.__class__.__name__}); this command "
                                 "needs the daemon: start it with `pyuse run`")

    def _check(self, status: int, data: Any) -> None:
        if status == 401:
            raise RemoteError(f"the gateway at {self.base_url} refused the API token in {self.token_path}"
                              f"{'' if self.headers else ' (none could be read)'}: use the same config (data_dir) as "
                              "`pyuse run`, and restart the daemon after `pyuse token --rotate`")
        if status >= 400:
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            raise RemoteError(error.get("message") or f"HTTP {status}")


def _parse_event(frame: str) -> tuple[str, dict[str, Any]] | None:
    kind, data = "message", []
    for line in frame.splitlines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return (kind, json.loads("\n".join(data))) if data else None  # None: a keep-alive comment


async def running_daemon(config: Config) -> DaemonClient | None:
    """The daemon that owns the config's data dir, to run a one-shot command through; None when no process holds
    the data dir, and the command may start a gateway of its own. Raises DataDirBusy when the holder cannot be
    reached: another one-shot command, or a daemon whose API does not answer. With no process on the data dir, a
    running `pyuse demo` started with this config is the daemon (gateway/demo_link.py)."""
    data_dir = config.gateway.data_dir
    owner = holder(data_dir)
    if owner is None:
        demo = running_demo(config)
        return None if demo is None else await running_daemon(demo)
    if owner.role != "daemon":
        raise DataDirBusy(data_dir, owner, "wait for it to finish")
    client = DaemonClient(config)
    try:
        await client.call("GET", "/api/health")
    except DaemonUnavailable:
        raise DataDirBusy(data_dir, owner, f"its API does not answer at {client.base_url}: wait until it is "
                          "ready, or use the config it runs with (-c), for its [api] address") from None
    return client
