"""The devices the gateway knows, by stable id."""

from __future__ import annotations

import re

from gateway.config import DeviceEntry
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")
    return slug or "device"


class Registry:
    def __init__(self, docs: DocLibrary) -> None:
        self.docs = docs
        self._devices: dict[str, Device] = {}

    def add(self, device: Device) -> Device:
        self._devices[device.id] = device
        return device

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def all(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda device: device.id)

    def unique_id(self, name: str, area: str) -> str:
        base = slugify(name)
        if base not in self._devices:
            return base
        with_area = f"{slugify(area)}_{base}" if area else base
        candidate, number = with_area, 2
        while candidate in self._devices:
            candidate, number = f"{with_area}_{number}", number + 1
        return candidate

    def add_static(self, entries: list[DeviceEntry], source: str) -> list[str]:
        """Add devices declared in the config; returns one problem line per unusable entry."""
        problems = []
        for index, entry in enumerate(entries):
            where = f"{source}: devices[{index}]"
            doc = self.docs.get(entry.kind)
            if doc is None:
                problems.append(f"{where}.kind: unknown device kind {entry.kind!r}; known kinds: "
                                f"{', '.join(self.docs.kinds())} (or add a doc in <data_dir>/device_docs/)")
                continue
            missing = [name for name, needed in (
                ("host", doc.transport == "http"),
                ("port", doc.transport == "http" and doc.default_port is None),
                ("base_topic", doc.transport == "mqtt" and not entry.topics),
                ("serial_port", doc.transport == "serial")) if needed and getattr(entry, name) in (None, "")]
            if missing:
                problems += [f"{where}.{name}: required for kind {doc.kind} ({doc.transport})" for name in missing]
                continue
            device_id = entry.id or self.unique_id(entry.name, entry.area)
            if device_id in self._devices:
                problems.append(f"{where}.id: {device_id!r} is already used by another device")
                continue
            topics = entry.topics or (doc.owned_topics(entry.base_topic) if entry.base_topic else [])
            self.add(Device(
                id=device_id, name=entry.name, kind=doc.kind, transport=doc.transport, area=entry.area,
                aliases=entry.aliases, host=entry.host, port=entry.port or doc.default_port,
                base_topic=entry.base_topic, topics=topics, serial_port=entry.serial_port,
                baudrate=entry.baudrate if "baudrate" in entry.model_fields_set else doc.baudrate,
                exposed=entry.exposed, source="static"))
        return problems
