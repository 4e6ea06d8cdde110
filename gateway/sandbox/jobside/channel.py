"""The job's line to the broker, the errors a refused or failed call raises, and the record of what the
model's code did with the devices in the current execution.

Stdlib only (runs in the job). A handle holds no connection: every native call sends one request over the
job's SEQPACKET channel to the broker in the gateway, which decides, performs the call and audits it.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE = 1 << 20  # the same limit as the gateway's messages.py


class DeviceError(Exception):
    """The device or its transport answered with an error (HTTP status, RPC error, serial timeout...)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer in time: caught by `except DeviceError` and by `except TimeoutError`."""


class NoAnswer(Exception):
    """ask() found nobody to ask, or nobody answered in time."""


ERRORS: dict[str, type[Exception]] = {
    "NoAnswer": NoAnswer,
    "PermissionError": PermissionError,
    "TimeoutError": DeviceTimeout,
    "ValueError": ValueError,
    "ConnectionError": ConnectionError,
    "DeviceError": DeviceError,
}


class Channel:
    """Request/response over the job's SEQPACKET socket; replies to interrupted calls are skipped by id."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._last_id = 0
        self.held_s = 0.0  # how long this execution waited for a person: not counted against its time limit

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=_unencodable).encode()
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"request too large ({len(data)} bytes; the limit is {MAX_MESSAGE})")
        self._sock.send(data)

    def receive(self) -> dict[str, Any]:
        data = self._sock.recv(MAX_MESSAGE + 1)
        if not data:
            raise SystemExit(0)
        message: dict[str, Any] = json.loads(data)
        return message

    def call(self, device: str, method: str, args: dict[str, Any]) -> Any:
        ACTIVITY.touched += 1
        return self.request({"op": "call", "device": device, "method": method, "args": args})

    def request(self, message: dict[str, Any]) -> Any:
        """Send a request that the gateway answers (a call, a question) and wait for its answer."""
        self._last_id += 1
        call_id = self._last_id
        self.send({**message, "id": call_id})
        held: tuple[float, float] | None = None  # (time limit left, since): the gateway is asking a person
        while True:
            reply = self.receive()
            if reply.get("op") == "hold" and held is None:
                held = (signal.setitimer(signal.ITIMER_REAL, 0)[0], time.monotonic())
            elif reply.get("id") == call_id:
                break
        if held is not None:
            left, since = held
            self.held_s += time.monotonic() - since
            if left > 0:
                signal.setitimer(signal.ITIMER_REAL, left)
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ERRORS.get(error.get("type", ""), DeviceError)(error.get("message", "the broker refused the call"))


def _unencodable(value: object) -> Any:
    raise TypeError(f"cannot send a {type(value).__name__} to a device; use str, int, float, bool, list or dict")


@dataclass
class Activity:
    """What the model's code did with the devices in the current execution; the job resets it before each."""

    # Lookups, calls and readings: an answer that used none stands on nothing the devices said, and is sent back.
    touched: int = 0
    # The capability calls that returned, as the model wrote them: when a later line fails, the model is told these
    # were done, so it answers instead of doing them again.
    done: list[str] = field(default_factory=list)
    depth: int = 0  # brighter() calls set_brightness(): only the outermost call is reported

    def reset(self) -> None:
        self.touched, self.done, self.depth = 0, [], 0


ACTIVITY = Activity()
