"""Kinds without a protocol reader: their doc's `[[calls]]` say what a native call does, so a new kind needs only
a doc. A call no entry describes is `unknown` (an HTTP GET, `read`; an MQTT wait never gets here)."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from gateway.devices.actions import CallReading
from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.jsonpointer import MISSING, resolve
from gateway.policy.actions import Action, Value, number, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    return actual == expected and isinstance(actual, bool) == isinstance(expected, bool)


def _value(raw: Any, entry: CallReading) -> Value:
    """The action's value from what the call carries: a number scaled (or `per` it), text as it is."""
    found = number(raw)
    if found is None:
        return raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
    if entry.per is not None:
        return entry.per / found if found else None
    return found * entry.scale


def _document(call: Operation) -> Any:
    if call.transport == "http":
        return call.params
    try:
        return json.loads(call.payload or "")
    except ValueError:
        return call.payload or ""


def entry_actions(entry: CallReading, call: Operation, device: Device) -> list[Action]:
    """The action an entry reads in the call, if the call is what the entry describes."""
    raw: Any = MISSING
    if entry.command is not None:
        found = re.fullmatch(entry.command, (call.command or "").strip(), re.IGNORECASE)
        if not found:
            return []
        raw = found.groupdict().get("value", MISSING)
    elif entry.path is not None:
        if call.rpc is not None or not fnmatch.fnmatchcase(call.path or "", entry.path):
            return []
        if (entry.method.upper() != call.method) if entry.method else (call.method == "GET"):
            return []
    elif "{base_topic}" in (entry.topic or "") and not device.base_topic \
            or (entry.topic or "").replace("{base_topic}", device.base_topic or "") != call.topic:
        return []
    if entry.payload is not None and entry.payload.casefold() != (call.payload or "").strip().casefold():
        return []
    document = _document(call)
    if any(not _same(resolve(document, path), expected) for path, expected in entry.json_values.items()):
        return []
    if entry.value is not None:
        raw = resolve(document, entry.value)
        if raw is MISSING:
            return []
    return [Action(entry.does, None if raw is MISSING or raw is None else _value(raw, entry), entry.channel)]


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    actions = [action for entry in (doc.calls if doc else []) for action in entry_actions(entry, call, device)]
    if actions:
        return Reading(actions)
    if call.transport == "http" and call.rpc is None and call.method == "GET":
        return Reading([Action("read")])
    return Reading([unknown(call.summary())])
