"""Home Assistant MQTT entities: a publish on one of the command topics its discovery config names, read the way
Home Assistant would have meant it (the payload_* words of that entity, a number on a brightness or position
topic, a mode on a mode topic). A payload that is none of an entity's words could be anything to the device
behind it, so it is `unknown`; topics the entities only report on take no command.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, number, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading

# command_topic payloads by component: which payload_* field means what.
PAYLOADS = {
    "switch": {"payload_on": "output_on", "payload_off": "output_off"},
    "light": {"payload_on": "output_on", "payload_off": "output_off"},
    "fan": {"payload_on": "output_on", "payload_off": "output_off"},
    "lock": {"payload_lock": "lock", "payload_unlock": "unlock", "payload_open": "unlock"},  # open: unlatch
    "cover": {"payload_open": "open", "payload_close": "close", "payload_stop": "stop"},
}


def _comparable(text: str) -> Any:
    """A payload compared as a device might read it: JSON decoded, words in any case and without padding."""
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip().casefold()
    return _folded(value)


def _folded(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, dict):
        return {key: _folded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_folded(item) for item in value]
    return value


def command_actions(entity: dict[str, Any], payload: str) -> list[Action]:
    """A payload on the entity's command_topic."""
    sent = _comparable(payload)
    meanings = PAYLOADS.get(entity.get("component", ""), {})
    found = [action for field, action in meanings.items()
             if isinstance(entity.get(field), (str, int, float)) and _comparable(str(entity[field])) == sent]
    return [Action(action) for action in dict.fromkeys(found)] or [unknown(payload)]


def value_actions(field: str, entity: dict[str, Any], payload: str) -> list[Action]:
    """A payload on one of the entity's value topics."""
    value = number(payload)
    if field == "mode_command_topic":
        return [Action("set_mode", payload.strip())]
    if value is None:
        return [unknown(payload)]
    if field == "temperature_command_topic":
        return [Action("set_temperature", value)]
    if field == "set_position_topic":
        return [Action("set_position", value)]
    scale = entity.get("brightness_scale", 255) if field == "brightness_command_topic" else 100
    name = "set_brightness" if field == "brightness_command_topic" else "set_speed"
    percent = value * 100 / scale if isinstance(scale, (int, float)) and scale > 0 else None
    return [Action(name, percent)] + ([Action("output_on")] if value > 0 else [Action("output_off")])


VALUE_TOPICS = ("mode_command_topic", "temperature_command_topic", "set_position_topic", "brightness_command_topic",
                "percentage_command_topic")


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    entities = device.api.get("entities") or [device.api.get("main") or {}]
    topic, payload = call.topic or "", call.payload or ""
    actions: list[Action] = []
    for entity in (entity for entity in entities if isinstance(entity, dict)):
        if entity.get("command_topic") == topic:
            actions += command_actions(entity, payload)
        actions += [action for field in VALUE_TOPICS if entity.get(field) == topic
                    for action in value_actions(field, entity, payload)]
    if actions:
        return Reading(list(dict.fromkeys(actions)))
    # A topic the entities report on (state, availability) takes no command from us.
    reported = {value for entity in entities if isinstance(entity, dict) for key, value in entity.items()
                if key.endswith("_topic")}
    reported |= {item.get("topic") for entity in entities if isinstance(entity, dict)
                 for item in entity.get("availability") or [] if isinstance(item, dict)}
    return Reading([] if topic in reported else [unknown(topic)])
