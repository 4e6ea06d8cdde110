"""The devices the gateway knows: stable ids, areas, aliases, online state, last state; persisted and observable.

A device is identified by its key, given by whoever found it ("z2m:0x00158d...", "tasmota:AABBCC112233",
"mdns:shellyplusplugs-...", "static:desk_plug"). Its id is a slug of its name, prefixed by its area when that
is taken, and stays tied to the key for good: a restart, a rediscovery or a rename never moves or reuses it.
Overrides from the config (name, area, aliases, exposed) win over what discovery reports. Every change is
announced to subscribers (the API, automations).

The registry also decides who holds what. A device's handle may use only its own topics, HTTP address and serial
port, so what one device holds no other may hold: a topic has exactly one owner, exactly or by overlap (a filter of
one matching a topic of the other), and the danger rules of that owner are the ones that apply to it. A claim on
something another device holds, or on a reserved topic (the gateway's own, the broker's `$` topics, the discovery
prefixes), is refused: the first owner keeps it. Devices declared in the config are trusted over discovered ones
(and may share with each other).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config import DeviceEntry
from gateway.devices.docs import DocLibrary
from gateway.devices.holdings import Holdings, TopicTree, claims
from gateway.devices.model import Device
from gateway.listeners import Listeners
from gateway.store import Store

log = logging.getLogger(__name__)

EventType = Literal["added", "updated", "removed", "online", "offline", "state"]
OVERRIDABLE = ("name", "area", "aliases", "exposed")
STATE_FLUSH_S = 10.0
# How many discovered devices the registry takes ([discovery] max_devices once the config has it): enough for the
# simulators' 1000-device home twice over, and a bound on what a flood of forged discovery messages can add.
MAX_DISCOVERED_DEVICES = 2000
# A handle here could start tasks or answer confirmations. The discovery sources reserve their own prefixes.
GATEWAY_TOPICS = "pyuse/#"


class ClaimRefused(ValueError):
    """A device names a topic, address or serial port that is reserved or another device's."""


class DeviceLimit(ValueError):
    """The registry holds as many discovered devices as it takes."""


@dataclass(frozen=True)
class DeviceEvent:
    type: EventType
    device: Device


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
    def __init__(self, docs: DocLibrary, store: Store | None = None, overrides: Sequence[DeviceEntry] = (),
                 areas: Sequence[str] = ()) -> None:
        self.docs = docs
        self.store = store
        self.overrides = {entry.id: entry for entry in overrides if entry.id}
        self.areas = list(areas)
        self._devices: dict[str, Device] = {}
        self._ids_by_key: dict[str, str] = {}  # every key ever seen, removed devices included
        self._listeners: Listeners[DeviceEvent] = Listeners("device event")  # one broken one must not stop discovery
        self._dirty: set[str] = set()
        self._flusher: asyncio.TimerHandle | None = None
        self._held = Holdings()
        self._reserved = TopicTree()  # holders are reasons
        self._reserved_for: dict[str, tuple[str, ...]] = {}  # reason -> prefixes of the keys that may hold it anyway
        self.reserve(GATEWAY_TOPICS, "the gateway's own tasks and confirmations")
        self.max_discovered = MAX_DISCOVERED_DEVICES
        self._limit_logged = False
        self._before_outage: dict[str, bool] = {}  # MQTT device key -> online, while the broker is unreachable
        self._reporting: set[str] = set()  # keys of devices whose availability their protocol reports

    # reading
    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def by_key(self, key: str) -> Device | None:
        device_id = self._ids_by_key.get(key)
        return self._devices.get(device_id) if device_id else None

    def all(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda device: device.id)

    def subscribe(self, listener: Callable[[DeviceEvent], None]) -> Callable[[], None]:
        """Be told of every change; returns what stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

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
                device = Device.model_validate_json(record)
            except ValueError as exc:
                log.warning("stored device %s is unreadable and was dropped: %s", device_id, exc)
                continue
            reason = self.conflict(device)
            if reason:  # stored before its claim was checked, or beside a claim that came first
                log.warning("stored device %s was dropped: %s", device_id, reason)
                continue
            self._devices[device_id] = device
            self._held.hold(device)
        return len(self._devices)

    def _persist(self, devices: list[Device], removed: bool = False) -> None:
        if self.store is not None:
            self.store.save_devices([(device.id, device.key, removed, self._record(device)) for device in devices])

    def _record(self, device: Device) -> str:
        """A device as stored: during a broker outage, with what it was before it (see mqtt_lost)."""
        if device.key in self._before_outage:
            device = device.model_copy(update={"online": self._before_outage[device.key]})
        return device.model_dump_json()

    def flush(self) -> None:
        """Write states changed since the last write (states are saved lazily: they change often)."""
        if self._flusher:
            self._flusher.cancel()
            self._flusher = None
        dirty = [self._devices[device_id] for device_id in self._dirty if device_id in self._devices]
        self._dirty.clear()
        self._persist(dirty)

    # who holds what
    def reserve(self, topic_filter: str, reason: str, keys: tuple[str, ...] = ()) -> None:
        """Keep a topic filter from every device but those whose key starts with one of `keys` (a discovery
        prefix; a bridge's base topic, for its own devices). A discovered device that holds part of it (restored
        from the store) is dropped."""
        self._reserved.add(topic_filter, reason)
        self._reserved_for[reason] = keys
        for key, held in list(self._held.topics.overlapping(topic_filter)):
            device = self.by_key(key)
            if device is not None and device.source != "static" and not key.startswith(keys):
                log.warning("device %s was dropped: its topic %r is reserved for %s", device.id, held, reason)
                self.remove(key)

    def conflict(self, device: Device, replacing: Collection[str] = ()) -> str | None:
        """Why the device may not hold what it names, or None. Devices in `replacing` are being replaced along with
        it (a bridge's whole list), so what they hold now does not count. Devices declared in the config may share
        with each other (one physical device declared twice, say exposed and hidden): the config is trusted."""
        ignored = {device.key, *replacing}
        if device.source == "static":
            ignored |= {other.key for other in self._devices.values() if other.source == "static"}
        clash = self._held.clash(device, ignored)
        if clash is not None:
            what, holder, held = clash
            return f"{what} belongs to device {self._ids_by_key.get(holder, holder)!r} ({held})"
        for topic_filter in claims(device):
            if topic_filter.startswith("$"):
                return f"topic {topic_filter!r} is reserved for the MQTT broker"
            for reason, _ in self._reserved.overlapping(topic_filter):
                if not device.key.startswith(self._reserved_for[reason]):
                    return f"topic {topic_filter!r} is reserved for {reason}"
        return None

    # changes
    def upsert(self, found: Device, replacing: Collection[str] = ()) -> Device:
        """Add or refresh a device by its key; returns the registry's record. Raises ClaimRefused when it names
        what is reserved or another device's (see `conflict`), DeviceLimit for a new discovered device past the
        limit."""
        if not found.key:
            raise ValueError("a device needs a key")
        reason = self.conflict(found, replacing)
        if reason:
            raise ClaimRefused(reason)
        current = self.by_key(found.key)
        if current is None and found.source != "static":
            self._check_limit()
        device_id = self._ids_by_key.get(found.key) or self._new_id(found)
        record = found.model_copy(update={"id": device_id})
        if current is not None:
            record.state = {**current.state, **found.state}
        self._apply_overrides(record)
        if not record.area:
            record.area = infer_area(record.name, self.areas)
        self._ids_by_key[found.key] = device_id
        self._devices[device_id] = record
        if current is not None:
            self._held.release(current)
        self._held.hold(record)
        if current is None or current.model_dump(exclude={"state"}) != record.model_dump(exclude={"state"}):
            self._persist([record])
            self._emit("added" if current is None else "updated", record)
        return record

    def upsert_all(self, found: list[Device]) -> dict[str, str]:
        """Add or refresh devices that arrive together (a bridge's whole list), where one may take what another
        held until now (two devices that swap names). Each is checked against the devices outside the list and
        those checked before it: first those that keep what they hold, so that a newcomer listed under a taken
        name cannot push its owner out, then the others in list order. One that is refused loses its current
        record too, which holds what its source no longer gives it. Returns why each refused key was refused."""
        keys = {device.key for device in found}
        listed = Holdings()
        accepted: list[Device] = []
        refused: dict[str, str] = {}
        for device in sorted(found, key=lambda device: not self._keeps_claims(device)):
            reason = self.conflict(device, keys) or self._listed_conflict(listed, device)
            if reason:
                refused[device.key] = reason
                continue
            listed.hold(device)
            accepted.append(device)
        for key in refused:
            self.remove(key)
        for device in accepted:
            try:
                self.upsert(device, keys)
            except DeviceLimit:
                continue  # logged once by the registry; the devices it has already are still refreshed
        return refused

    def _keeps_claims(self, device: Device) -> bool:
        current = self.by_key(device.key)
        return current is not None and claims(current) == claims(device)

    def _listed_conflict(self, listed: Holdings, device: Device) -> str | None:
        clash = listed.clash(device, {device.key})
        if clash is None:
            return None
        what, holder, held = clash
        return f"{what} belongs to {holder}, earlier in the same list ({held})"

    def _check_limit(self) -> None:
        if sum(device.source != "static" for device in self._devices.values()) < self.max_discovered:
            return
        if not self._limit_logged:
            self._limit_logged = True
            log.warning("discovered devices reached the limit of %d: new ones are ignored while the registry is full "
                        "(logged once)", self.max_discovered)
        raise DeviceLimit(f"the registry holds {self.max_discovered} discovered devices, its limit")

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
        self._held.release(device)
        self._reporting.discard(key)
        self._persist([device], removed=True)
        self._emit("removed", device)

    def set_online(self, key: str, online: bool, why: str = "") -> None:
        """What the device (or its protocol) says: it outranks a guess kept from before a broker outage. A change
        is logged, so that a device's comings and goings can be read back."""
        self._before_outage.pop(key, None)
        self._reporting.add(key)
        device = self.by_key(key)
        if device is not None and device.online != online:
            log.info("%s is %s%s", device.id, "online" if online else "offline", f" ({why})" if why else "")
        self._set_online(key, online, persist=True)

    def _set_online(self, key: str, online: bool, persist: bool) -> None:
        device = self.by_key(key)
        if device is None or device.online == online:
            return
        device.online = online
        if persist:
            self._persist([device])
        self._emit("online" if online else "offline", device)

    def mqtt_lost(self) -> None:
        """The MQTT broker is unreachable: no MQTT device can be reached or heard, so each is offline. Not stored:
        after a restart they are what they said they were, until the broker says otherwise."""
        for device in self.all():
            if device.transport == "mqtt":
                self._before_outage.setdefault(device.key, device.online)
                self._set_online(device.key, False, persist=False)

    def mqtt_back(self) -> None:
        """The broker is back and retained availability messages have come again. A device that reports its
        availability and has not again stays offline (a broker without persistence lost its retained "online",
        and a live device says it anew when it reconnects); one that never reports it is again what it was."""
        before, self._before_outage = self._before_outage, {}
        for key, online in before.items():
            if key not in self._reporting:
                self._set_online(key, online, persist=False)

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
        self._listeners(DeviceEvent(event_type, device))

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
            device = Device(
                key=key, name=entry.name or "", kind=doc.kind, transport=doc.transport, area=entry.area,
                aliases=entry.aliases, host=entry.host, port=entry.port or doc.default_port,
                base_topic=entry.base_topic, topics=topics, serial_port=entry.serial_port,
                baudrate=entry.baudrate if "baudrate" in entry.model_fields_set else doc.baudrate,
                exposed=entry.exposed, source="static")
            self._make_room(device)
            reason = self.conflict(device)
            if reason:
                problems.append(f"{where}: {reason}")
                continue
            self.upsert(device)
        return problems

    def _make_room(self, declared: Device) -> None:
        """A device declared in the config takes what a discovered device (restored from the store) holds: the
        config is trusted, discovery is not."""
        while (clash := self._held.clash(declared, {declared.key})) is not None:
            what, holder, _ = clash
            taken = self.by_key(holder)
            if taken is None or taken.source == "static":
                return
            log.warning("device %s was dropped: the config declares %s for %s", taken.id, what, declared.name)
            self.remove(holder)
