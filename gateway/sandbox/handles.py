"""Device handles as the model's code sees them inside a job.

Stdlib only (runs under `python -I -S`). A handle holds no connection: every method sends one request over
the job's channel to the broker in the gateway, which decides, performs the call and audits it.
The prompt stubs in gateway/agent/prompts/handles.pyi describe exactly these classes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any

MAX_MESSAGE = 1 << 20


class DeviceError(Exception):
    """The device or its transport answered with an error (HTTP status, RPC error, serial timeout...)."""


ERRORS: dict[str, type[Exception]] = {
    "PermissionError": PermissionError,
    "TimeoutError": TimeoutError,
    "ValueError": ValueError,
    "ConnectionError": ConnectionError,
    "DeviceError": DeviceError,
}


class Channel:
    """Request/response over the job's SEQPACKET socket; replies to interrupted calls are skipped by id."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._last_id = 0

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=_unencodable).encode()
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"request too large ({len(data)} bytes; the limit is {MAX_MESSAGE})")
        self._sock.send(data)

    def receive(self) -> dict[str, Any]:
        data = self._sock.recv(MAX_MESSAGE + 1)
        if not data:
            raise SystemExit(0)
        return json.loads(data)

    def call(self, device: str, method: str, args: dict[str, Any]) -> Any:
        self._last_id += 1
        call_id = self._last_id
        self.send({"op": "call", "id": call_id, "device": device, "method": method, "args": args})
        while True:
            reply = self.receive()
            if reply.get("id") == call_id:
                break
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ERRORS.get(error.get("type", ""), DeviceError)(error.get("message", "the broker refused the call"))


def _unencodable(value: object) -> Any:
    raise TypeError(f"cannot send a {type(value).__name__} to a device; use str, int, float, bool, list or dict")


class Device:
    """A device the task may use. `state` is a snapshot taken when the turn started."""

    def __init__(self, channel: Channel, info: dict[str, Any]) -> None:
        self._channel = channel
        self.id: str = info["id"]
        self.name: str = info["name"]
        self.area: str = info.get("area", "")
        self.kind: str = info["kind"]
        self.state: dict[str, Any] = info.get("state", {})
        self.api: dict[str, Any] = info.get("api", {})

    def _call(self, method: str, **args: Any) -> Any:
        return self._channel.call(self.id, method, args)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} {self.name!r} area={self.area!r} kind={self.kind!r}>"


class HttpDevice(Device):
    def get(self, path: str, **params: Any) -> Any:
        return self._call("get", path=path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self._call("post", path=path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        return self._call("put", path=path, json=json)

    def rpc(self, method: str, **params: Any) -> Any:
        return self._call("rpc", rpc_method=method, params=params)


class MqttDevice(Device):
    def __init__(self, channel: Channel, info: dict[str, Any]) -> None:
        super().__init__(channel, info)
        self.base_topic: str | None = info.get("base_topic")
        self.topics: list[str] = info.get("topics", [])

    def publish(self, topic: str, payload: Any = "", qos: int = 0, retain: bool = False) -> None:
        self._call("publish", topic=topic, payload=payload, qos=qos, retain=retain)

    def request(self, topic: str, payload: Any, reply_topic: str, timeout: float = 5) -> Any:
        return self._call("request", topic=topic, payload=payload, reply_topic=reply_topic, timeout=timeout)

    def wait(self, topic: str, timeout: float = 5) -> Any:
        return self._call("wait", topic=topic, timeout=timeout)


class SerialDevice(Device):
    def query(self, cmd: str, timeout: float = 2) -> str:
        return self._call("query", cmd=cmd, timeout=timeout)

    def write(self, cmd: str) -> None:
        self._call("write", cmd=cmd)


HANDLE_CLASSES: dict[str, type[Device]] = {"http": HttpDevice, "mqtt": MqttDevice, "serial": SerialDevice}


class Devices(Mapping[str, Device]):
    """The devices exposed to this task, by id."""

    def __init__(self, handles: list[Device]) -> None:
        self._by_id = {handle.id: handle for handle in handles}

    def __getitem__(self, device_id: str) -> Device:
        try:
            return self._by_id[device_id]
        except KeyError:
            raise PermissionError(
                f"device {device_id!r} is not exposed to this task or does not exist; "
                f"exposed: {', '.join(sorted(self._by_id)) or 'none'}") from None

    def get(self, device_id: str, default: Any = None) -> Any:
        return self._by_id.get(device_id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, text: str | None = None, area: str | None = None, kind: str | None = None) -> list[Device]:
        """Devices whose id or name contains `text` (any case), in `area`, of `kind`; all given filters apply."""
        needle = (text or "").casefold()
        return [handle for handle in self._by_id.values()
                if (not needle or needle in handle.id.casefold() or needle in handle.name.casefold())
                and (area is None or handle.area.casefold() == area.casefold())
                and (kind is None or handle.kind == kind)]

    def refresh(self, channel: Channel, infos: list[dict[str, Any]]) -> None:
        """Take a new inventory: known handles keep their identity and get the new state."""
        current = {}
        for info in infos:
            handle = self._by_id.get(info["id"])
            if handle is None or handle.kind != info["kind"]:
                handle = HANDLE_CLASSES[info["transport"]](channel, info)
            handle.state = info.get("state", {})
            handle.api = info.get("api", {})
            current[info["id"]] = handle
        self._by_id = current

    def __repr__(self) -> str:
        return f"devices({', '.join(sorted(self._by_id))})"


