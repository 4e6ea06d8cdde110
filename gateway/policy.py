"""What a task may touch and which calls need a person's yes: exposure, danger rules, confirmations, rate limits.

The broker consults this for every handle call, after reducing the call to an Operation, so a rule holds
however the model's code phrases the call (e.g. Shelly RPC through .rpc(), a GET on /rpc/<Method>, or a POST of a
frame). Nothing the model writes can change these decisions.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import unicodedata
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from gateway.config import PolicyRule, PolicySection
from gateway.devices.docs import DangerRule, DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import Registry
from gateway.transports.mqtt import topic_matches


class ScopeError(ValueError):
    """A task asked for devices it cannot have."""


@dataclass
class Operation:
    """A handle call reduced to what danger rules match on."""

    transport: str
    rpc: str | None = None
    method: str | None = None
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    topic: str | None = None
    payload: str | None = None
    json_values: dict[str, Any] = field(default_factory=dict)
    command: str | None = None

    def summary(self) -> str:
        """What a person is asked to approve: escaped, so nothing the model wrote can steer their terminal."""
        if self.rpc:
            text = f"{self.rpc}({_kwargs(self.params)})"
        elif self.command is not None:
            text = self.command
        elif self.topic:
            text = f"publish {self.topic} {self.payload!r}"
        else:
            text = f"{self.method} {self.path}" + (f" {_kwargs(self.params)}" if self.params else "")
        return printable(text)


@dataclass
class Decision:
    action: str  # allow | confirm | deny
    reason: str = ""


def printable_char(char: str) -> bool:
    """Not a control character, surrogate or non-character: safe in a topic, a path or a terminal."""
    code = ord(char)
    return not (code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF
                or (code & 0xFFFE) == 0xFFFE)


def printable(text: str) -> str:
    """Text with every unsafe character written as an escape (\\x1b, \\u202e...)."""
    return "".join(char if printable_char(char) and unicodedata.category(char) != "Cf"
                   else char.encode("unicode_escape").decode() for char in text)


def _kwargs(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in params.items())


def operation_for(device: Device, method: str, args: dict[str, Any], rpc_path: str) -> Operation:
    """Normalise a validated handle call. HTTP calls that reach the RPC endpoint count as RPC calls."""
    if device.transport == "serial":
        return Operation("serial", command=args["cmd"].strip())
    if device.transport == "mqtt":
        payload = args.get("payload", "")
        text = payload if isinstance(payload, str) else json.dumps(payload)
        values = payload if isinstance(payload, dict) else _json_object(text)
        return Operation("mqtt", topic=args["topic"], payload=text, json_values=values)
    if method == "rpc":
        return Operation("http", rpc=args["rpc_method"], params=dict(args.get("params") or {}))
    path, _, query = args["path"].partition("?")
    params = {key: _scalar(value) for key, value in parse_qsl(query, keep_blank_values=True)}
    params.update({key: _scalar(value) if isinstance(value, str) else value
                   for key, value in (args.get("params") or {}).items()})
    body = args.get("json")
    http_method = method.upper()
    if path.rstrip("/") == rpc_path.rstrip("/") and isinstance(body, dict) and "method" in body:
        return Operation("http", rpc=str(body["method"]), params=dict(body.get("params") or {}))
    if isinstance(body, dict):
        params.update(body)
    if path.startswith(rpc_path.rstrip("/") + "/"):
        return Operation("http", rpc=path[len(rpc_path.rstrip("/")) + 1:], params=params)
    return Operation("http", method=http_method, path=path, params=params)


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        return actual.casefold() == expected.casefold()
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or (isinstance(actual, str) and actual.casefold() == str(expected).casefold())
    return actual == expected


def rule_matches(rule: DangerRule, device: Device, operation: Operation) -> bool:
    if rule.rpc is not None and (operation.rpc is None or operation.rpc.casefold() != rule.rpc.casefold()):
        return False
    if rule.method is not None and (operation.method or "").upper() != rule.method.upper():
        return False
    if rule.path is not None and (operation.path is None or not fnmatch.fnmatchcase(operation.path, rule.path)):
        return False
    if any(not _same(operation.params.get(key), value) for key, value in rule.params.items()):
        return False
    if rule.topic is not None:
        pattern = fill(rule.topic, device)
        if pattern is None or operation.topic is None or not topic_matches(pattern, operation.topic):
            return False
    if rule.payload is not None:
        pattern = fill(rule.payload, device, escape=True)
        if pattern is None or operation.payload is None or not re.fullmatch(pattern, operation.payload.strip(),
                                                                            re.IGNORECASE):
            return False
    if any(not _same(operation.json_values.get(key), value) for key, value in rule.json_values.items()):
        return False
    if rule.command is not None:
        return operation.command is not None and any(_command_matches(rule, part)
                                                     for part in command_parts(operation.command))
    return True


TEMPLATE = re.compile(r"\{(base_topic|main\.[a-z_]+)\}")


def fill(pattern: str, device: Device, escape: bool = False) -> str | None:
    """Substitute {base_topic} and {main.<field>} (the main discovered entity); None if a value is missing."""
    main = device.api.get("main") if isinstance(device.api.get("main"), dict) else {}
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        found = device.base_topic if name == "base_topic" else main.get(name[5:])
        if not isinstance(found, (str, int, float)) or found == "":
            missing = True
            return ""
        return re.escape(str(found)) if escape else str(found)

    result = TEMPLATE.sub(value, pattern)
    return None if missing else result


def command_parts(command: str) -> list[str]:
    """The commands in one line: SCPI and Tasmota Backlog chain them with ';', a leading ':' means the root."""
    return [part.strip().lstrip(":") for part in command.split(";") if part.strip()]


def _command_matches(rule: DangerRule, command: str) -> bool:
    found = re.fullmatch(rule.command or "", command, re.IGNORECASE)
    if not found:
        return False
    if rule.above is None and rule.below is None:
        return True
    try:
        value = float(found.group("value"))
    except (TypeError, ValueError, IndexError):
        return True  # MAX, DEF or anything unreadable counts as the dangerous case
    return (rule.above is None or value > rule.above) and (rule.below is None or value < rule.below)


class RateLimiter:
    """A token bucket per device: bursts are fine, a runaway loop is stopped."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, per_minute: int) -> bool:
        now = time.monotonic()
        capacity = max(1.0, per_minute / 3)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * per_minute / 60)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True


# Which channel may answer a confirmation for a task of each origin; others are answered by their own confirmer
# only (the terminal), and an automation has nobody to ask.
ANSWER_CHANNELS = {"api": "api", "voice": "api", "web": "api", "mqtt": "mqtt"}


@dataclass
class ConfirmationRequest:
    id: str
    task_id: str
    origin: str
    device_id: str
    device_name: str
    action: str
    reason: str
    expires_at: float

    def prompt(self) -> str:
        return (f"Confirm: {self.device_name} ({self.device_id}): {self.action} — {self.reason}. "
                f"Allow it?")


Confirmer = Callable[[ConfirmationRequest], Awaitable[bool]]
ConfirmationListener = Callable[[str, ConfirmationRequest, bool | None], None]  # ("asked"|"resolved", request, yes)


async def answered_elsewhere(request: ConfirmationRequest) -> bool:
    """The confirmer of a task from the API, the web page or MQTT: the question goes out as an event, and the
    answer arrives by id (POST /api/confirmations/<id>, the confirm topic); until then, this waits."""
    await asyncio.Event().wait()
    return False


class Confirmations:
    """Pending confirmations: asked through the task's own channel, answerable from anywhere by id."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.pending: dict[str, tuple[ConfirmationRequest, asyncio.Future[bool]]] = {}
        self.listeners: list[ConfirmationListener] = []
        self._ids = itertools.count(1)

    def _tell(self, what: str, request: ConfirmationRequest, approved: bool | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(what, request, approved)
            except Exception:  # a broken channel must not decide the question
                logging.getLogger(__name__).exception("confirmation listener failed")

    async def ask(self, task_id: str, origin: str, device: Device, operation: Operation, reason: str,
                  confirmer: Confirmer | None) -> tuple[bool, str]:
        """(approved, why) — why says who decided, for the audit trail and the model."""
        if confirmer is None:
            return False, "nobody can confirm it from where this task came from"
        request = ConfirmationRequest(id=f"c{next(self._ids)}", task_id=task_id, origin=origin, device_id=device.id,
                                      device_name=device.name, action=operation.summary(), reason=reason,
                                      expires_at=time.time() + self.timeout_s)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending[request.id] = (request, answer)
        self._tell("asked", request, None)
        asker = asyncio.ensure_future(confirmer(request))
        asker.add_done_callback(lambda done: self.answer(request.id, bool(done.result()))
                                if not done.cancelled() and done.exception() is None else None)
        approved = False
        try:
            async with asyncio.timeout(self.timeout_s):
                approved = await asyncio.shield(answer)
        except TimeoutError:
            return False, f"no answer within {self.timeout_s:g} s"
        finally:
            self.pending.pop(request.id, None)
            asker.cancel()
            self._tell("resolved", request, approved)
        return approved, "approved by the user" if approved else "the user said no"

    def answer(self, request_id: str, approved: bool, channel: str | None = None) -> bool:
        """Settle a pending question. A `channel` ("api", "mqtt") may only answer tasks that came through it."""
        entry = self.pending.get(request_id)
        if entry is None or entry[1].done():
            return False
        if channel is not None and ANSWER_CHANNELS.get(entry[0].origin) != channel:
            return False
        entry[1].set_result(approved)
        return True


class Policy:
    def __init__(self, settings: PolicySection, docs: DocLibrary) -> None:
        self.settings = settings
        self.docs = docs
        self.rates = RateLimiter()

    def exposed(self, device: Device) -> bool:
        if not device.exposed:
            return False
        return (any(_selects(pattern, device) for pattern in self.settings.expose)
                and not any(_selects(pattern, device) for pattern in self.settings.hide))

    def decide(self, device: Device, operation: Operation) -> Decision:
        """The first matching rule: config rules (more specific) before the device doc's."""
        doc = self.docs.get(device.kind)
        candidates: list[DangerRule] = [rule for rule in self.settings.rules if _rule_selects(rule, device)]
        candidates += doc.danger if doc else []
        for rule in candidates:
            if rule_matches(rule, device, operation):
                return Decision(rule.action, rule.reason)
        return Decision("allow")

    def within_rate(self, device: Device) -> tuple[bool, int]:
        doc = self.docs.get(device.kind)
        limit = min(self.settings.rate_limit_per_minute,
                    doc.rate_limit_per_minute if doc and doc.rate_limit_per_minute else 10**9)
        return self.rates.allow(device.id, limit), limit

    def devices_for_task(self, registry: Registry, requested: list[str] | None) -> list[Device]:
        """All exposed devices, or the requested ones, each of which must exist and be exposed."""
        exposed = [device for device in registry.all() if self.exposed(device)]
        if not requested:
            return exposed
        by_id = {device.id: device for device in exposed}
        unknown = [device_id for device_id in requested if device_id not in by_id]
        if unknown:
            raise ScopeError(f"not exposed or unknown device(s): {', '.join(unknown)}; "
                             f"exposed: {', '.join(sorted(by_id)) or 'none'}")
        return [by_id[device_id] for device_id in requested]


def _selects(pattern: str, device: Device) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("area:"):
        return device.area.casefold() == pattern[5:].casefold()
    if pattern.startswith("kind:"):
        return device.kind == pattern[5:]
    return device.id == pattern


def _rule_selects(rule: PolicyRule, device: Device) -> bool:
    return ((rule.device is None or rule.device == device.id)
            and (rule.area is None or rule.area.casefold() == device.area.casefold())
            and (rule.kind is None or rule.kind == device.kind))
