"""Device handles as the model's code sees them inside a job: the runtime side of the prompt's stubs
(gateway/agent/prompts/handles.pyi, whose names `__all__` lists).

Stdlib only (runs under `python -I -S`). A handle's native calls (get, publish, query...) go over the job's
channel (channel.py); each kind's handle class adds, on top of its transport's class here, the capabilities its
device doc declares (capabilities.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .channel import ACTIVITY, Channel, DeviceError

__all__ = ["Device", "DeviceError", "Devices", "HttpDevice", "MqttDevice", "SerialDevice"]


def _slug(text: str) -> str:
    return "_".join("".join(char if char.isalnum() else " " for char in text.casefold()).split())


class Device:
    """A device the task may use. `state` is a snapshot taken when the turn started."""

    transport = ""

    def __init__(self, channel: Channel, info: dict[str, Any]) -> None:
        self._channel = channel
        self.id: str = info["id"]
        self.name: str = info["name"]
        self.area: str = info.get("area", "")
        self.kind: str = info["kind"]
        self.state: dict[str, Any] = info.get("state", {})
        self.api: dict[str, Any] = info.get("api", {})
        self.aliases: list[str] = info.get("aliases", [])
        self.online: bool = info.get("online", True)

    def _call(self, method: str, **args: Any) -> Any:
        return self._channel.call(self.id, method, args)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} {self.name!r} area={self.area!r} kind={self.kind!r}>"

    def __getattr__(self, name: str) -> Any:
        """Only reached for a name the handle lacks: say which names it has instead."""
        if name.startswith("_"):
            raise AttributeError(name)
        close = difflib.get_close_matches(name, members(type(self)), n=1)
        # "radiator.off()" where off is a value of set_mode(mode: off|auto|heat): name that call.
        spec = getattr(type(self), "_spec", None) or {"methods": []}
        calls = [f"{method['name']}({name!r})" for method in spec["methods"] for param in method["params"]
                 if name in param["choices"]]
        hint = f" Did you mean {calls[0] if calls else close[0]}?" if calls or close else ""
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('id')!r} has no {name!r}.{hint} "
                             f"{summary(type(self))}")


NATIVE = {"http": "get(path), post(path, json), put(path, json), rpc(method, **params)",
          "mqtt": "publish(topic, payload), request(topic, payload, reply_topic), wait(topic)",
          "serial": "query(cmd), write(cmd)"}


def members(cls: type) -> list[str]:
    return [name for name in dir(cls) if not name.startswith("_")]


def summary(cls: type) -> str:
    """One line naming what a handle class offers: its capabilities, then its native calls."""
    spec = getattr(cls, "_spec", None)
    parts = []
    if spec:
        if spec["methods"]:
            parts.append("Methods: " + ", ".join(method["signature"] for method in spec["methods"]) + ".")
        if spec["properties"]:
            parts.append("Properties: " + ", ".join(prop["signature"] for prop in spec["properties"]) + ".")
    native = NATIVE.get(getattr(cls, "transport", ""), "")
    if native:
        parts.append(f"Native calls: {native}.")
    return " ".join(parts)


def describe(cls: type) -> str:
    """help() for a handle class: every capability with its docstring, then the native calls."""
    spec = getattr(cls, "_spec", None) or {"class": cls.__name__, "title": "", "methods": [], "properties": []}
    lines = [f"class {spec['class']}: {spec['title']}".rstrip(": ")]
    lines += [f"    {method['signature']}\n        {method['doc']}" for method in spec["methods"]]
    lines += [f"    {prop['signature']}\n        {prop['doc']}" for prop in spec["properties"]]
    native = NATIVE.get(getattr(cls, "transport", ""), "")
    if native:
        lines.append(f"    native calls: {native}; doc({spec.get('kind', '')!r}) shows the device's own API")
    lines.append("    attributes: id, name, area, kind, online and state (as of this turn)")
    return "\n".join(lines)


class HttpDevice(Device):
    transport = "http"

    def get(self, path: str, **params: Any) -> Any:
        return self._call("get", path=path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self._call("post", path=path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        return self._call("put", path=path, json=json)

    def rpc(self, method: str, **params: Any) -> Any:
        return self._call("rpc", rpc_method=method, params=params)


class MqttDevice(Device):
    transport = "mqtt"

    def __init__(self, channel: Channel, info: dict[str, Any]) -> None:
        super().__init__(channel, info)
        self.base_topic: str | None = info.get("base_topic")
        self.topics: list[str] = info.get("topics", [])

    def publish(self, topic: str, payload: Any = "", qos: int = 0, retain: bool = False) -> None:
        self._call("publish", topic=topic, payload=payload, qos=qos, retain=retain)

    def request(self, topic: str, payload: Any, reply_topic: str, timeout: float = 5) -> Any:
        return self._call("request", topic=topic, payload=payload, reply_topic=reply_topic, timeout=timeout)

    def wait(self, topic: str, timeout: float = 5) -> Any:
        return self._call("wait", topic=topic, timeout=timeout)


class SerialDevice(Device):
    transport = "serial"

    def query(self, cmd: str, timeout: float = 2) -> str:
        reply: str = self._call("query", cmd=cmd, timeout=timeout)
        return reply

    def write(self, cmd: str) -> None:
        self._call("write", cmd=cmd)


HANDLE_CLASSES: dict[str, type[Device]] = {"http": HttpDevice, "mqtt": MqttDevice, "serial": SerialDevice}
# What a kind is (its doc's intents.domain), as a base class of its handle class: `isinstance(handle, Light)`.
DOMAIN_CLASSES: dict[str, type[Device]] = {
    domain: type(name, (Device,), {"__doc__": f"Every {domain.replace('_', ' ')} device's handle.",
                                   "__module__": "devices"})
    for domain, name in (("light", "Light"), ("switch", "Switch"), ("fan", "Fan"), ("climate", "Climate"),
                         ("lock", "Lock"), ("cover", "Cover"), ("sensor", "Sensor"), ("binary_sensor", "BinarySensor"))}


class Devices(Mapping[str, Device]):
    """The devices exposed to this task, by id."""

    def __init__(self, handles: list[Device]) -> None:
        self._by_id = {handle.id: handle for handle in handles}

    def __getitem__(self, device_id: str) -> Device:
        ACTIVITY.touched += 1  # a lookup that fails is news from the devices too ("no such device")
        handle = self._by_id.get(device_id)
        if handle is not None:
            return handle
        # Small models write a device's name or alias ("Kitchen Ceiling Light", "front door"), its id without the
        # room ("bench_supply"), or the room and the kind of thing with a made-up word between ("garage_reading_light"
        # for garage_ceiling_light): when exactly one device answers to those words, that is the one.
        words = _slug(str(device_id)).split("_")
        tests: tuple[Callable[[Device], bool], ...] = (
            lambda handle: "_".join(words) in (_slug(handle.name), *map(_slug, handle.aliases)),
            lambda handle: set(words) <= set(handle.id.split("_")),
            lambda handle: len(words) > 1 and {words[0], words[-1]} <= set(handle.id.split("_")))
        for fits in tests:
            found = [handle for handle in self._by_id.values() if fits(handle)]
            if len(found) == 1:
                return found[0]
        close = difflib.get_close_matches(str(device_id), list(self._by_id), n=3, cutoff=0.75)
        known = (f"ids like it: {', '.join(close)}" if close
                 else f"the ids are {', '.join(sorted(self._by_id)) or 'none'}" if len(self._by_id) <= 40
                 else "devices.find(text, area, kind) searches them")
        raise KeyError(f"no device has the id {device_id!r}; {known}. If none of them is the device the task "
                       "means, it is not here: say so.")

    def get(self, device_id: str, default: Any = None) -> Any:
        return self._by_id.get(device_id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, text: str | None = None, area: str | None = None, kind: str | None = None) -> list[Device]:
        """Devices whose id or name contains `text` (any case), in `area`, of `kind`; all given filters apply."""
        ACTIVITY.touched += 1
        needle = (text or "").casefold()
        return [handle for handle in self._by_id.values()
                if (not needle or needle in handle.id.casefold() or needle in handle.name.casefold())
                and (area is None or handle.area.casefold() == area.casefold())
                and (kind is None or handle.kind == kind)]

    def refresh(self, channel: Channel, infos: list[dict[str, Any]], classes: Mapping[str, type[Device]]) -> None:
        """Take a new inventory, with each kind's handle class: known handles keep their identity and get the new
        state; one whose kind's class changed is made anew."""
        current = {}
        for info in infos:
            cls = classes[info["kind"]] if info["kind"] in classes else HANDLE_CLASSES[info["transport"]]
            handle = self._by_id.get(info["id"])
            if handle is None or handle.kind != info["kind"] or type(handle) is not cls:
                handle = cls(channel, info)
            handle.state = info.get("state", {})
            handle.api = info.get("api", {})
            handle.online = info.get("online", True)
            current[info["id"]] = handle
        self._by_id = current

    def __repr__(self) -> str:
        return f"devices({', '.join(sorted(self._by_id))})"
