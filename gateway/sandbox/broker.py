"""The broker: performs a job's handle calls on the real transports, after checking each one.

A job names a device and a method; the device's address, port and topics come from the registry, never from
the job. Each call is checked (exposed to this task? a method of its transport? a path on that device? a
topic it owns?), read as the device would read it (the canonical actions it performs), judged on those actions
by the danger rules, counted against the rate limit command by command, performed, and written to the audit table
with its actions, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.listeners import Listeners
from gateway.policy import (
    Action,
    Confirmations,
    Confirmer,
    Operation,
    Policy,
    Reading,
    describe,
    operation_for,
)
from gateway.policy.confirmations import SAID_NO
from gateway.policy.rates import RateLimiter
from gateway.questions import Asker, NoAnswer, Questions
from gateway.sandbox.call_args import (
    CallArgs,
    HttpGet,
    HttpPost,
    HttpRpc,
    MqttPublish,
    MqttRequest,
    MqttWait,
    SerialQuery,
    SerialWrite,
    call_target,
    check_serial_command,
    normalize_http_path,
    validation_message,
)
from gateway.sandbox.messages import AskRequest, CallRequest, JobRequest
from gateway.store import AuditRecord, Store
from gateway.transports.http import HttpTransport
from gateway.transports.lines import TcpLines
from gateway.transports.mqtt import MqttTransport
from gateway.transports.serial import SerialPorts
from gateway.untrusted import escaped, one_line, safe_char, topic_matches

log = logging.getLogger(__name__)

class CallDenied(Exception):
    """A policy refusal; reaches the model as PermissionError."""


class DeviceError(Exception):
    """The device or transport failed; reaches the model as DeviceError."""


class DeviceOffline(ConnectionError):
    """The gateway knows the device is offline: the call is not even tried (it would only wait for a reply)."""


@dataclass
class JobContext:
    task_id: str
    devices: dict[str, Device]
    confirm: Confirmer | None = None  # how to ask the person the task came from; None: nobody can be asked
    origin: str = "cli"
    # Stops the execution's time limit while a person is asked (the job's session sets it).
    hold: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext
    ask: Asker | None = None  # how to put the model's questions to that person; None: nobody can be asked


# Models offered a refusal tend to try a near miss (2 A when 3 A was refused): the refusal says not to.
REFUSED_HINT = "Answer that it was refused, and why; do not try something else in its place."
# Calls that only read: nothing is sent to the device.
READ_ONLY_METHODS = {("mqtt", "wait")}
READ_ONLY = Reading([Action("read")])


Handler = Callable[[Device, Any], Awaitable[Any]]


class Broker:
    def __init__(self, docs: DocLibrary, policy: Policy, confirmations: Confirmations, store: Store,
                 http: HttpTransport, mqtt: MqttTransport, serial: SerialPorts, rpc_source: str,
                 questions: Questions | None = None, lines: TcpLines | None = None) -> None:
        self.docs = docs
        self.questions = questions or Questions(policy.settings.confirm_timeout_s)
        self.policy = policy
        self.confirmations = confirmations
        self.store = store
        self.http = http
        self.mqtt = mqtt
        self.serial = serial
        self.lines = lines or TcpLines()  # instruments on the LAN: serial calls to a device with an address
        self.rpc_source = rpc_source
        self._rpc_ids = itertools.count(1)
        # told of a job's HTTP call that may have changed the device (anything but GET): the state poller's cue
        self.change_listeners: Listeners[Device] = Listeners("device change")
        self._methods: dict[str, dict[str, tuple[type[CallArgs], Handler]]] = {
            "http": {"get": (HttpGet, self._http_get), "post": (HttpPost, self._http_post),
                     "put": (HttpPost, self._http_put), "rpc": (HttpRpc, self._http_rpc)},
            "mqtt": {"publish": (MqttPublish, self._mqtt_publish), "request": (MqttRequest, self._mqtt_request),
                     "wait": (MqttWait, self._mqtt_wait)},
            "serial": {"query": (SerialQuery, self._serial_query), "write": (SerialWrite, self._serial_write)},
        }

    async def handle(self, context: JobContext, request: JobRequest) -> dict[str, Any]:
        """Answer one call from a job: {"id", "ok", "result"} or {"id", "ok": false, "error": {type, message}}."""
        if isinstance(request, AskRequest):
            return await self.ask(context, request)
        started = time.perf_counter()
        device = context.devices.get(request.device)
        target = call_target(request.args)
        note: str | None = None
        reading: Reading | None = None
        try:
            if device is None or not self.policy.exposed(device):
                raise CallDenied(f"device {request.device!r} is not exposed to this task")
            methods = self._methods[device.transport]
            if request.method not in methods:
                raise ValueError(f"{device.transport} devices have no method {request.method!r}; "
                                 f"use one of {', '.join(methods)}")
            schema, handler = methods[request.method]
            try:
                args = schema.model_validate(request.args)
            except ValidationError as exc:
                raise ValueError(validation_message(request.method, exc)) from None
            self._precheck(device, args)
            if device.transport == "mqtt" and not device.online:
                why = "its availability topic says so" if self.mqtt.connected else "the MQTT broker is unreachable"
                raise DeviceOffline(f"{device.id} is offline ({why}); nothing was sent")
            if isinstance(args, (MqttPublish, MqttRequest)):
                refusal = self.policy.refuse_publish(context.origin, args.topic, args.payload)
                if refusal is not None:
                    raise CallDenied(refusal)
            if (device.transport, request.method) in READ_ONLY_METHODS:
                reading = READ_ONLY
            else:
                operation = self._operation(device, request.method, args)
                reading = self.policy.read(device, operation)
                note = await self._authorize(context, device, operation, reading)
            within, limit = self.policy.within_rate(device, reading.cost)
            if not within:
                raise CallDenied(_rate_message(device, limit, reading.cost))
            result = await self._call_device(handler, device, args)
            self.policy.performed(device, reading)
            if device.transport == "http" and request.method != "get":
                self.change_listeners(device)
        except CallDenied as exc:
            return self._refuse(context, request, target, "denied", "PermissionError", str(exc), started, reading)
        except ValueError as exc:
            return self._refuse(context, request, target, "invalid", "ValueError", str(exc), started, reading)
        except TimeoutError as exc:
            return self._refuse(context, request, target, "error", "TimeoutError",
                                f"{exc}; it may be offline or busy", started, reading)
        except DeviceOffline as exc:
            return self._refuse(context, request, target, "error", "ConnectionError", str(exc), started, reading)
        except (ConnectionError, OSError) as exc:
            return self._refuse(context, request, target, "error", "ConnectionError",
                                f"{request.device} is unreachable, it may be offline: {_os_message(exc)}", started,
                                reading)
        except DeviceError as exc:
            return self._refuse(context, request, target, "error", "DeviceError", str(exc), started, reading)
        except asyncio.CancelledError:
            self._audit(context, request, target, "cancelled", None, started, reading)
            raise
        except Exception as exc:  # a transport bug must not take the gateway down
            log.exception("handle call %s.%s failed", request.device, request.method)
            return self._refuse(context, request, target, "error", "DeviceError", f"{type(exc).__name__}: {exc}",
                                started, reading)
        self._audit(context, request, target, "ok", note, started, reading)
        return {"id": request.id, "ok": True, "result": result}

    async def ask(self, context: JobContext, request: AskRequest) -> dict[str, Any]:
        """The model's question, put to the task's person while the execution's time limit stands still; the
        job raises NoAnswer when nobody answers. Its text is the model's: one clean line each, for every channel."""
        choices = [choice for choice in dict.fromkeys(one_line(choice) for choice in request.choices) if choice]
        try:
            async with context.hold():
                answer = await self.questions.ask(context.task_id, context.origin, one_line(request.question, 500),
                                                  choices, context.ask)
        except NoAnswer as exc:
            return {"id": request.id, "ok": False, "error": {"type": "NoAnswer", "message": exc.why}}
        return {"id": request.id, "ok": True, "result": answer}

    async def _call_device(self, handler: Handler, device: Device, args: CallArgs) -> Any:
        """Perform the call; a timeout names the device and the limit, the call's own or the transport's."""
        try:
            return await handler(device, args)
        except TimeoutError:
            limit = getattr(args, "timeout", self.http.timeout_s)
            if isinstance(args, MqttWait):  # nothing was asked: the topic was only quiet
                raise TimeoutError(f"no message on {args.topic} within {limit:g} s") from None
            raise TimeoutError(f"{device.id} did not answer within {limit:g} s") from None

    def _precheck(self, device: Device, args: CallArgs) -> None:
        """What the call names must be well-formed before anyone is asked about it (or shown it)."""
        if isinstance(args, (HttpGet, HttpPost)):
            args.path = normalize_http_path(args.path)
        for topic in (getattr(args, "topic", None), getattr(args, "reply_topic", None)):
            if topic is not None:
                self._check_topic(device, topic)
        if isinstance(args, (SerialQuery, SerialWrite)):
            check_serial_command(args.cmd)

    def _operation(self, device: Device, method: str, args: CallArgs) -> Operation:
        doc = self.docs.get(device.kind)
        return operation_for(device, method, args.model_dump(by_alias=True), doc.rpc_path if doc else "/rpc")

    async def _authorize(self, context: JobContext, device: Device, operation: Operation,
                         reading: Reading) -> str | None:
        """Apply the danger rules to what the call does; returns an audit note for a confirmed call, raises
        CallDenied otherwise."""
        decision = self.policy.decide(device, reading.actions)
        if decision.action == "allow":
            return None
        if decision.action == "deny":
            raise CallDenied(f"denied: {operation.summary()} on {device.id!r} is not allowed ({decision.reason}). "
                             f"{REFUSED_HINT}")
        async with context.hold():
            approved, why = await self.confirmations.ask(context.task_id, context.origin, device, operation,
                                                         decision.reason, context.confirm)
        if not approved:
            if why == SAID_NO:
                declined = f"{describe(reading.actions)} on {device.name}"
                self.confirmations.declined.setdefault(context.task_id, declined)
            raise CallDenied(f"denied: {operation.summary()} on {device.id!r} needs a person's confirmation "
                             f"({decision.reason}), and {why}. {REFUSED_HINT}")
        return f"confirmed ({decision.reason}): {why}"

    def _refuse(self, context: JobContext, request: CallRequest, target: str | None, outcome: str, error_type: str,
                message: str, started: float, reading: Reading | None) -> dict[str, Any]:
        self._audit(context, request, target, outcome, message, started, reading)
        return {"id": request.id, "ok": False, "error": {"type": error_type, "message": message}}

    def _audit(self, context: JobContext, request: CallRequest, target: str | None, outcome: str,
               detail: str | None, started: float, reading: Reading | None) -> None:
        """One row per call, with the actions it performs (or would have): a chain is one row of many actions."""
        does = f"does: {describe(reading.actions)}" if reading is not None and reading is not READ_ONLY else None
        self.store.audit(AuditRecord(
            task_id=context.task_id, device_id=request.device, method=request.method, target=target,
            args=request.args, outcome=outcome, detail="; ".join(part for part in (detail, does) if part) or None,
            duration_ms=round((time.perf_counter() - started) * 1000, 2)))

    # HTTP
    async def _http_get(self, device: Device, args: HttpGet) -> Any:
        return await self._http(device, "GET", args.path, params=args.params)

    async def _http_post(self, device: Device, args: HttpPost) -> Any:
        return await self._http(device, "POST", args.path, json_body=args.json_body)

    async def _http_put(self, device: Device, args: HttpPost) -> Any:
        return await self._http(device, "PUT", args.path, json_body=args.json_body)

    async def _http_rpc(self, device: Device, args: HttpRpc) -> Any:
        doc = self.docs.get(device.kind)
        frame = {"id": next(self._rpc_ids), "src": self.rpc_source, "method": args.rpc_method,
                 "params": args.params}
        reply = await self._http(device, "POST", doc.rpc_path if doc else "/rpc", json_body=frame)
        if not isinstance(reply, dict):
            raise DeviceError(f"{args.rpc_method}: the device answered with something that is not an RPC frame")
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {"message": reply["error"]}
            raise DeviceError(f"{args.rpc_method} failed: error {error.get('code')}: {error.get('message')}")
        return reply.get("result")

    async def _http(self, device: Device, method: str, path: str, **kwargs: Any) -> Any:
        assert device.host and device.port
        reply = await self.http.request(method, device.host, device.port, path, **kwargs)
        if not reply.ok:
            raise DeviceError(f"HTTP {reply.status} from {method} {path}: {str(reply.body)[:500]}")
        return reply.body

    # MQTT
    def _check_topic(self, device: Device, topic: str) -> None:
        if any(not safe_char(char) for char in topic):
            raise ValueError(f"topic {escaped(topic)}: control characters and non-characters are not allowed")
        if "+" in topic or "#" in topic:
            raise ValueError(f"topic {topic!r}: wildcards are not allowed here; name one topic")
        if not any(topic_matches(owned, topic) for owned in device.topics):
            raise CallDenied(f"topic {topic!r} does not belong to device {device.id!r} "
                             f"(it owns {', '.join(device.topics) or 'no topics'})")

    async def _mqtt_publish(self, device: Device, args: MqttPublish) -> None:
        await self.mqtt.publish(args.topic, args.payload, qos=args.qos, retain=args.retain)

    async def _mqtt_request(self, device: Device, args: MqttRequest) -> Any:
        message = await self.mqtt.next_message(
            args.reply_topic, args.timeout, skip_retained=True,
            before_waiting=lambda: self.mqtt.publish(args.topic, args.payload))
        return message.decoded()

    async def _mqtt_wait(self, device: Device, args: MqttWait) -> Any:
        return (await self.mqtt.next_message(args.topic, args.timeout)).decoded()

    # serial
    def _terminator(self, device: Device) -> str:
        doc = self.docs.get(device.kind)
        return doc.line_terminator if doc else "\n"

    async def _serial_query(self, device: Device, args: SerialQuery) -> str:
        if device.serial_port is None:
            assert device.host and device.port
            return await self.lines.query(device.host, device.port, args.cmd, self._terminator(device), args.timeout)
        return await self.serial.query(device.serial_port, device.baudrate, args.cmd, self._terminator(device),
                                       args.timeout)

    async def _serial_write(self, device: Device, args: SerialWrite) -> None:
        if device.serial_port is None:
            assert device.host and device.port
            await self.lines.write(device.host, device.port, args.cmd, self._terminator(device))
            return
        await self.serial.write(device.serial_port, device.baudrate, args.cmd, self._terminator(device))


def _rate_message(device: Device, limit: int, cost: int) -> str:
    if cost == 1:
        return f"rate limit: more than {limit} calls a minute to {device.id!r}; slow down"
    return (f"rate limit: this call does {cost} things, and {device.id!r} takes at most {limit} a minute (in bursts "
            f"of {RateLimiter.capacity(limit):g}); slow down or do fewer at once")


def _os_message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
