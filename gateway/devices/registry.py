"""The devices the gateway knows: stable ids, areas, aliases, online state, last state; persisted and observable.

A device is identified by its key, given by whoever found it ("z2m:0x00158d...", "tasmota:AABBCC112233",
"mdns:shellyplusplugs-...", "static:desk_plug"). Its id is a slug of its name, prefixed by its area when that
is taken, and stays tied to the key for good: a restart, a rediscovery or a rename never moves or reuses it.
Overrides from the config (name, area, aliases, exposed) win over what discovery reports. Every change is
announced to subscribers (the API, automations).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config import DeviceEntry
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.store import Store

log = logging.getLogger(__name__)

EventType = Literal["added", "updated", "removed", "online", "offline", "state"]
OVERRIDABLE = ("name", "area", "aliases", "exposed")
STATE_FLUSH_S = 10.0


@dataclass(frozen=True)
class DeviceEvent:
    type: EventType
    device: Device


Listener = Callable[[DeviceEvent], None]


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")
    return slug or "device"


def infer_area(name: str, areas: list[str]) -> str:
    """The area a device name starts with ("Bedroom 3 Ceiling Light" -> "bedroom 3"), or ""."""
    lowered = name.casefold()
    for area in sorted(areas, key=len, reverse=True):
        match = re.match(rf"{re.escape(area.casefold())}(\s+\d+)?(?=\s|$)", lowered)
        if match:
            return match.group(0)
    return ""


class Registry:
    def __init__(self, docs: DocLibrary, store: Store | None = None, overrides: list[DeviceEntry] = (),
                 areas: list[str] = ()) -> None:
        self.docs = docs
        self.store = store
        self.overrides = {entry.id: entry for entry in overrides if entry.id}
        self.areas = list(areas)
        self._devices: dict[str, Device] = {}
        self._ids_by_key: dict[str, str] = {}  # every key ever seen, removed devices included
        self._listeners: list[Listener] = []
        self._dirty: set[str] = set()
        self._flusher: asyncio.TimerHandle | None = None

    # reading
    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def by_key(self, key: str) -> Device | None:
        device_id = self._ids_by_key.get(key)
        return self._devices.get(device_id) if device_id else None

    def all(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda device: device.id)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # persistence
    def load(self) -> int:
        """Restore the discovered devices the store knows, as last seen; their ids, and those of devices
        declared in the config (which come from the config on every start), stay reserved."""
        if self.store is None:
            return 0
        for device_id, key, removed, record in self.store.load_devices():
            self._ids_by_key[key] = device_id
            if removed or key.startswith("static:"):
                continue
            try:
                self._devices[device_id] = Device.model_validate_json(record)
            except ValueError as exc:
                log.warning("stored device %s is unreadable and was dropped: %s", device_id, exc)
        return len(self._devices)

    def _persist(self, devices: list[Device], removed: bool = False) -> None:
        if self.store is not None:
            self.store.save_devices([(device.id, device.key, removed, device.model_dump_json()) for device in devices])

    def flush(self) -> None:
        """Write states changed since the last write (states are saved lazily: they change often)."""
        if self._flusher:
            self._flusher.cancel()
            self._flusher = None
        dirty = [self._devices[device_id] for device_id in self._dirty if device_id in self._devices]
        self._dirty.clear()
        self._persist(dirty)

    # changes
    def upsert(self, found: Device) -> Device:
        """Add or refresh a device by its key; returns the registry's record."""
        if not found.key:
            raise ValueError("a device needs a key")
        current = self.by_key(found.key)
        device_id = self._ids_by_key.get(found.key) or self._new_id(found)
        record = found.model_copy(update={"id": device_id})
        if current is not None:
            record.state = {**current.state, **found.state}
        self._apply_overrides(record)
        if not record.area:
            record.area = infer_area(record.name, self.areas)
        self._ids_by_key[found.key] = device_id
        self._devices[device_id] = record
        if current is None or current.model_dump(exclude={"state"}) != record.model_dump(exclude={"state"}):
            self._persist([record])
            self._emit("added" if current is None else "updated", record)
        return record

    def _new_id(self, device: Device) -> str:
        taken = set(self._ids_by_key.values()) | set(self._devices)
        base = slugify(device.name)
        area = device.area or infer_area(device.name, self.areas)
        candidates = [base] + ([f"{slugify(area)}_{base}"] if area and not base.startswith(slugify(area)) else [])
        for candidate in candidates:
            if candidate not in taken:
                return candidate
        number = 2
        while f"{candidates[-1]}_{number}" in taken:
            number += 1
        return f"{candidates[-1]}_{number}"

    def _apply_overrides(self, device: Device) -> None:
        entry = self.overrides.get(device.id)
        if entry is not None and entry.is_override:
            for field in OVERRIDABLE:
                if field in entry.model_fields_set:
                    setattr(device, field, getattr(entry, field))

    def remove(self, key: str) -> None:
        device = self.by_key(key)
        if device is None:
            return
        del self._devices[device.id]
        self._persist([device], removed=True)
        self._emit("removed", device)

    def set_online(self, key: str, online: bool) -> None:
        device = self.by_key(key)
        if device is None or device.online == online:
            return
        device.online = online
        self._persist([device])
        self._emit("online" if online else "offline", device)

    def update_state(self, key: str, changes: dict[str, Any]) -> None:
        device = self.by_key(key)
        if device is None or all(device.state.get(name) == value for name, value in changes.items()):
            return
        device.state = {**device.state, **changes}
        self._dirty.add(device.id)
        self._schedule_flush()
        self._emit("state", device)

    def _schedule_flush(self) -> None:
        if self._flusher is None and self.store is not None:
            try:
                self._flusher = asyncio.get_running_loop().call_later(STATE_FLUSH_S, self.flush)
            except RuntimeError:  # no event loop (a script or a test): write at once
                self.flush()

    def _emit(self, event_type: EventType, device: Device) -> None:
        event = DeviceEvent(event_type, device)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken subscriber must not stop discovery
                log.exception("device event listener failed")

    # devices from the config
    def add_static(self, entries: list[DeviceEntry], source: str) -> list[str]:
        """Add devices declared in the config; returns one problem line per unusable entry."""
        problems = []
        for index, entry in enumerate(entries):
            if entry.is_override:
                continue
            where = f"{source}: devices[{index}]"
            doc = self.docs.get(entry.kind or "")
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
            key = f"static:{entry.id or slugify(entry.name or '')}"
            if entry.id:
                holder = next((other for other, device_id in self._ids_by_key.items() if device_id == entry.id), None)
                if holder not in (None, key):
                    problems.append(f"{where}.id: {entry.id!r} already belongs to another device ({holder})")
                    continue
                self._ids_by_key[key] = entry.id
            topics = entry.topics or (doc.owned_topics(entry.base_topic) if entry.base_topic else [])
            self.upsert(Device(
                key=key, name=entry.name or "", kind=doc.kind, transport=doc.transport, area=entry.area,
                aliases=entry.aliases, host=entry.host, port=entry.port or doc.default_port,
                base_topic=entry.base_topic, topics=topics, serial_port=entry.serial_port,
                baudrate=entry.baudrate if "baudrate" in entry.model_fields_set else doc.baudrate,
                exposed=entry.exposed, source="static"))
        return problems
