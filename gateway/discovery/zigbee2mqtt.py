"""Zigbee2MQTT's device list (`<base>/bridge/devices`): its entries validated, and what their definitions expose;
whether a base topic's `bridge/info` or `bridge/devices` is a bridge's.

A bridge's device owns `<base>/<friendly name>` and everything below it, so a friendly name must itself be a
concrete topic: no wildcards, nothing unsafe.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.untrusted import valid_topic


class Z2mDevice(BaseModel):
    model_config = ConfigDict(extra="allow")
    ieee_address: str = Field(pattern=r"^0x[0-9A-Fa-f]{16}$")
    friendly_name: str = Field(min_length=1, max_length=200)
    type: str = ""
    definition: dict[str, Any] | None = None

    @field_validator("friendly_name")
    @classmethod
    def _concrete(cls, value: str) -> str:
        if not valid_topic(value):
            raise ValueError("not usable in a topic")
        return value


def check_bridge(leaf: str, payload: bytes) -> None:
    """Raises ValueError unless `<base>/bridge/<leaf>` looks like a Zigbee2MQTT bridge's: a `bridge/info` with its
    version, or a `bridge/devices` listing its coordinator."""
    data = json.loads(payload)
    if leaf == "info" and not (isinstance(data, dict) and isinstance(data.get("version"), str)):
        raise ValueError("a bridge/info without a version is no Zigbee2MQTT bridge's")
    if leaf == "devices" and not (isinstance(data, list) and any(
            isinstance(entry, dict) and entry.get("type") == "Coordinator" for entry in data)):
        raise ValueError("a device list without a coordinator is no Zigbee2MQTT bridge's")


def z2m_device(entry: Any) -> Z2mDevice | None:
    try:
        return Z2mDevice.model_validate(entry)
    except ValidationError:
        return None


def z2m_exposes(definition: dict[str, Any]) -> set[str]:
    """Expose types and property names, features included."""
    found: set[str] = set()
    stack = list(definition.get("exposes") or [])
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(str(item[key]) for key in ("type", "property", "name") if isinstance(item.get(key), str))
            stack.extend(item.get("features") or [])
    return found


def z2m_readable(definition: dict[str, Any]) -> list[str]:
    """Properties a /get can read (access bit 4); sleepy sensors have none and report on their own."""
    found: list[str] = []
    stack = list(definition.get("exposes") or [])
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("property"), str) and isinstance(item.get("access"), int) and item["access"] & 4:
                found.append(item["property"])
            stack.extend(item.get("features") or [])
    return sorted(set(found))[:20]
