"""A device's state as people read it ("power on", "brightness 40 %", "window open") and the controls its doc
gives the page (a switch, a brightness slider), so that intakes render rather than interpret raw fields.

Readings come from the doc's `state_keys` (the telling fields), read by what the field means: its name, the doc's
intents domain (a lock's `state` is locked/unlocked, a bulb's on/off) and the unit of the doc's property of the
same name. A field this module does not know shows its value as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.devices.docs import DeviceDoc

MAX_READINGS = 4  # a card, not a data sheet: the raw state stays a fold away
ON_WORDS = {"on", "true", "1", "lock", "locked"}
OFF_WORDS = {"off", "false", "0", "unlock", "unlocked"}
# Full scale of raw levels that are not already 0..100: Zigbee's 0..254, WLED's 0..255.
FULL_SCALE = {("zigbee2mqtt", "brightness"): 254.0, (None, "bri"): 255.0}


@dataclass
class Reading:
    label: str
    value: str


@dataclass
class Controls:
    """What a tap may do: switch it (`is_on`: as it is now, None when unknown) and set its level (0..100 %)."""

    switch: bool
    is_on: bool | None
    dimmable: bool
    level: int | None


def _on(value: Any) -> bool | None:
    word = str(value).strip().lower()
    return True if word in ON_WORDS else False if word in OFF_WORDS else None


def _number(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value} {unit}".strip()
    places = 1 if abs(value) >= 10 else 3  # 21.4 °C, but 0.125 A
    shown = f"{value:.{places}f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{shown} {unit}".strip()


def _switch_word(value: Any) -> str:
    on = _on(value)
    return str(value) if on is None else "on" if on else "off"


def _lock_word(value: Any) -> str:
    on = _on(value)
    return str(value).replace("_", " ").lower() if on is None else "locked" if on else "unlocked"


# field -> (label, how its value reads); labels are short because the card is narrow.
Reader = Callable[[Any], str]
FIELDS: dict[str, tuple[str, Reader]] = {
    "on": ("power", _switch_word),
    "power": ("power", _switch_word),
    "state": ("power", _switch_word),
    "output": ("power", _switch_word),
    "lock_state": ("lock", _lock_word),
    "contact": ("contact", lambda value: "closed" if value is True else "open" if value is False else str(value)),
    "occupancy": ("motion", lambda value: "detected" if value else "none"),
    "temperature": ("temperature", lambda value: _number(value, "°C")),
    "local_temperature": ("room", lambda value: _number(value, "°C")),
    "occupied_heating_setpoint": ("target", lambda value: _number(value, "°C")),
    "humidity": ("humidity", lambda value: _number(value, "%")),
    "system_mode": ("mode", str),
    "running_state": ("heating", lambda value: "yes" if value == "heat" else "no"),
    "apower": ("load", lambda value: _number(value, "W")),
    "voltage": ("voltage", lambda value: _number(value, "V")),
    "current": ("current", lambda value: _number(value, "A")),
}
LEVEL_FIELDS = ("brightness", "bri", "dimmer")
# Fields whose name means something else on this kind: an Elgato's `temperature` is its colour, in mireds.
KIND_FIELDS: dict[tuple[str, str], tuple[str, Reader]] = {
    ("elgato_light", "temperature"): ("colour", lambda value: _number(round(1_000_000 / value), "K")
                                      if isinstance(value, int | float) and value > 0 else str(value)),
}


def _level(doc: DeviceDoc, state: dict[str, Any]) -> int | None:
    for key in LEVEL_FIELDS:
        value = state.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            scale = FULL_SCALE.get((doc.protocol, key)) or FULL_SCALE.get((None, key)) or 100.0
            return round(value * 100 / scale)
    return None


def _reading(doc: DeviceDoc, key: str, value: Any) -> Reading:
    if key in LEVEL_FIELDS:
        level = _level(doc, {key: value})
        return Reading("brightness", str(value) if level is None else f"{level} %")
    if doc.intents.domain == "lock" and key == "state":
        return Reading("lock", _lock_word(value))
    label, read = KIND_FIELDS.get((doc.kind, key)) or FIELDS.get(key) or (key.replace("_", " "), str)
    unit = doc.properties[key].unit if key in doc.properties and read is str else ""
    return Reading(label, _number(value, unit) if unit else read(value))


def readings(doc: DeviceDoc | None, state: dict[str, Any]) -> list[Reading]:
    """The telling fields of `state`, as people read them; without a doc (or telling fields), none."""
    if doc is None:
        return []
    shown: list[Reading] = []
    for key in doc.state_keys:
        if key not in state or isinstance(state[key], dict | list):
            continue
        reading = _reading(doc, key, state[key])
        if all(reading.label != other.label for other in shown):  # a lock's `state` and `lock_state` say one thing
            shown.append(reading)
    return shown[:MAX_READINGS]


def controls(doc: DeviceDoc | None, state: dict[str, Any]) -> Controls:
    """Whether the fast path can switch it and set its level, as its doc's intents say, and how it is now."""
    if doc is None:
        return Controls(False, None, False, None)
    intents = doc.intents.with_defaults(doc.methods, doc.properties)
    switch = intents.domain in ("light", "switch", "fan") and bool(intents.turn_on and intents.turn_off)
    on_key = next((key for key in doc.state_keys if key in ("on", "power", "state", "output")), None)
    is_on = _on(state.get(on_key)) if switch and on_key else None
    dimmable = intents.domain == "light" and intents.set_level is not None
    return Controls(switch, is_on, dimmable, _level(doc, state) if dimmable else None)
