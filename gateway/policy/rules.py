"""Danger rules: a handle call reduced to an Operation, and the rules (config first, then the device doc's) that
match it. An Operation is what the call does, whatever the model's code phrased it as: Shelly RPC through .rpc(),
a GET on /rpc/<Method> or a POST of a frame are one RPC call."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from gateway.devices.docs import DangerRule
from gateway.devices.model import Device
from gateway.policy.text import printable
from gateway.transports.mqtt import topic_matches


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
