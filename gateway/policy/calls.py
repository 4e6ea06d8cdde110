"""A handle call reduced to the native call the device receives: the one form the protocol readers read and a
person is shown. Shelly RPC through .rpc(), a GET or POST on /rpc/<Method> or a POSTed frame is one RPC call; an
MQTT payload is the text the transport puts on the wire."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from gateway.devices.model import Device
from gateway.transports.mqtt_message import encode_payload
from gateway.untrusted import escaped


@dataclass
class Operation:
    transport: str
    rpc: str | None = None
    method: str | None = None
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    topic: str | None = None
    payload: str | None = None
    command: str | None = None

    def summary(self) -> str:
        """What a person is asked to approve: escaped, so nothing the model wrote can steer their terminal."""
        if self.rpc:
            text = f"{self.rpc}({_kwargs(self.params)})"
        elif self.command is not None:
            text = self.command.strip()
        elif self.topic:
            text = f"publish {self.topic} {self.payload!r}"
        else:
            text = f"{self.method} {self.path}" + (f" {_kwargs(self.params)}" if self.params else "")
        return escaped(text)


def _kwargs(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in params.items())


def operation_for(device: Device, method: str, args: dict[str, Any], rpc_path: str) -> Operation:
    """Normalise a validated handle call. HTTP calls that reach the RPC endpoint count as RPC calls."""
    if device.transport == "serial":
        return Operation("serial", command=args["cmd"])
    if device.transport == "mqtt":
        return Operation("mqtt", topic=args["topic"],
                         payload=encode_payload(args.get("payload", "")).decode("utf-8", "replace"))
    if method == "rpc":
        return Operation("http", rpc=args["rpc_method"], params=dict(args.get("params") or {}))
    path, _, query = args["path"].partition("?")
    params = {key: _scalar(value) for key, value in parse_qsl(query, keep_blank_values=True)}
    params.update({key: _scalar(value) if isinstance(value, str) else value
                   for key, value in (args.get("params") or {}).items()})
    body = args.get("json")
    rpc_root = rpc_path.rstrip("/").casefold()  # in any case: a device lenient about it must not slip past
    if path.rstrip("/").casefold() == rpc_root and isinstance(body, dict) and "method" in body:
        frame_params = body.get("params")
        return Operation("http", rpc=str(body["method"]),
                         params=dict(frame_params) if isinstance(frame_params, dict) else {})
    if isinstance(body, dict):
        params.update(body)
    if path.casefold().startswith(rpc_root + "/"):
        return Operation("http", rpc=path[len(rpc_root) + 1:], params=params)
    return Operation("http", method=method.upper(), path=path, params=params)


def _scalar(text: str) -> Any:
    """A query value as a Shelly device reads it: JSON if it parses, the text otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text
