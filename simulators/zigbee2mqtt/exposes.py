"""Zigbee2MQTT's exposes format (https://www.zigbee2mqtt.io/guide/usage/exposes.html): what a device can do.

Each expose names a property with its type, its unit or values, and access bits: STATE (published), SET
(writable through /set) and GET (readable through /get).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ACCESS_STATE, ACCESS_SET, ACCESS_GET = 1, 2, 4


def binary(name: str, label: str, access: int, value_on: Any, value_off: Any, description: str,
           value_toggle: Any = None) -> dict[str, Any]:
    expose = {"type": "binary", "name": name, "property": name, "label": label, "access": access,
              "value_on": value_on, "value_off": value_off, "description": description}
    if value_toggle is not None:
        expose["value_toggle"] = value_toggle
    return expose


def numeric(name: str, label: str, access: int, description: str, unit: str | None = None,
            value_min: float | None = None, value_max: float | None = None, value_step: float | None = None,
            category: str | None = None, **extra: Any) -> dict[str, Any]:
    expose: dict[str, Any] = {"type": "numeric", "name": name, "property": name, "label": label, "access": access,
                              "description": description}
    for key, value in (("unit", unit), ("value_min", value_min), ("value_max", value_max),
                       ("value_step", value_step), ("category", category)):
        if value is not None:
            expose[key] = value
    return expose | extra


def enum(name: str, label: str, access: int, values: list[str], description: str,
         category: str | None = None) -> dict[str, Any]:
    expose = {"type": "enum", "name": name, "property": name, "label": label, "access": access, "values": values,
              "description": description}
    if category:
        expose["category"] = category
    return expose


def preset(name: str, value: float, description: str) -> dict[str, Any]:
    return {"name": name, "value": value, "description": description}


def battery() -> dict[str, Any]:
    return numeric("battery", "Battery", ACCESS_STATE, "Remaining battery in %", "%", 0, 100,
                   category="diagnostic")


def linkquality() -> dict[str, Any]:
    return numeric("linkquality", "Linkquality", ACCESS_STATE, "Link quality (signal strength)", "lqi", 0, 255,
                   category="diagnostic")


def flat_features(exposes: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Every expose and, depth first, the features nested in it."""
    for expose in exposes:
        yield expose
        yield from flat_features(expose.get("features", []))

