"""Zigbee2MQTT devices: `<base>/set` takes a JSON object or a bare state word, `<base>/set/<attr>` a JSON value or
bare text for one attribute; both are merged into one message of attributes, read as the bridge's converters read
them (values in any case). `<base>/get` only reads. simulators/zigbee2mqtt/bridge.py is the reference.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, number, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading

STATE_WORDS = {"on": "output_on", "off": "output_off", "toggle": "output_toggle", "open": "open", "close": "close",
               "stop": "stop", "lock": "lock", "unlock": "unlock"}
COLOR_TEMP_PRESETS = {"coolest": 153, "cool": 250, "neutral": 370, "warm": 454, "warmest": 500}  # mireds
SETPOINTS = {"occupied_heating_setpoint", "current_heating_setpoint", "occupied_cooling_setpoint"}
SETTINGS = {"power_on_behavior", "effect", "transition"}


def message(attribute: str | None, text: str) -> dict[str, Any] | None:
    """The bridge's parseMessage: None when it would refuse the payload."""
    if attribute:
        try:
            return {attribute: json.loads(text)}
        except ValueError:
            return {attribute: text}
    try:
        value = json.loads(text)
    except ValueError:
        return {"state": text} if text.lower() in STATE_WORDS else None
    return value if isinstance(value, dict) else {}


def attribute_actions(key: str, value: Any) -> list[Action]:
    if key == "state":
        word = value.lower() if isinstance(value, str) else None
        return [Action(STATE_WORDS[word])] if word in STATE_WORDS else [unknown(f"state {value!r}")]
    if key == "brightness":
        level = number(value)
        if level is None:
            return [unknown(f"brightness {value!r}")]
        level = min(max(round(level), 0), 254)  # a level switches the light on, 0 off
        return [Action("output_on"), Action("set_brightness", level * 100 / 254)] if level else [Action("output_off")]
    if key == "color_temp":
        mireds = COLOR_TEMP_PRESETS[value] if isinstance(value, str) and value in COLOR_TEMP_PRESETS \
            else number(value)
        if mireds is None:
            return [unknown(f"color_temp {value!r}")]
        return [Action("set_color_temp", float(round(1_000_000 / min(max(round(mireds), 153), 500))))]
    if key == "color":
        return [Action("set_color", json.dumps(value, sort_keys=True))]
    if key == "system_mode":
        return [Action("set_mode", value.lower())] if isinstance(value, str) else [unknown(f"system_mode {value!r}")]
    if key in SETPOINTS:
        celsius = number(value)
        return [Action("set_temperature", celsius)] if celsius is not None else [unknown(f"{key} {value!r}")]
    if key in SETTINGS:
        return [Action("configure", key)]
    return [unknown(key)]


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    base, topic = device.base_topic or "", call.topic or ""
    # The bridge takes the shortest name followed by /set or /get: a name with such a level means another device.
    if not base or {"set", "get"} & set(base.split("/")):
        return Reading([unknown(topic)])
    if topic in (base, f"{base}/availability"):
        return Reading([])  # the bridge takes no command there
    verb, _, attribute = topic[len(base) + 1:].partition("/") if topic.startswith(base + "/") else ("", "", "")
    if verb == "get":
        return Reading([Action("read")])
    if verb != "set":
        return Reading([unknown(topic)])
    parsed = message(attribute or None, call.payload or "")
    if parsed is None:
        return Reading([unknown(call.payload or "")])
    # One message, however many attributes: `state: ON` and a brightness switch the light on once.
    return Reading(list(dict.fromkeys(action for key, value in parsed.items()
                                      for action in attribute_actions(key, value))))
