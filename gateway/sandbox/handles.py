"""Device handles as the model's code sees them inside a job.

Stdlib only (runs under `python -I -S`). A handle holds no connection: every native call (get, publish, query...)
sends one request over the job's channel to the broker in the gateway, which decides, performs the call and
audits it. On top of the native calls, each kind's handle class has the capabilities its device doc declares
(on(), set_brightness(percent), temperature...): methods generated here from the doc's code, with their
parameters checked, so the broker sees and judges only native calls whichever way the model phrases an action.
The prompt stubs in gateway/agent/prompts/handles.pyi describe the native side of these classes.
"""

from __future__ import annotations

import difflib
import inspect
import json
import signal
import socket
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE = 1 << 20


class DeviceError(Exception):
    """The device or its transport answered with an error (HTTP status, RPC error, serial timeout...)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer in time: caught by `except DeviceError` and by `except TimeoutError`."""


ERRORS: dict[str, type[Exception]] = {
    "PermissionError": PermissionError,
    "TimeoutError": DeviceTimeout,
    "ValueError": ValueError,
    "ConnectionError": ConnectionError,
    "DeviceError": DeviceError,
}


class Channel:
    """Request/response over the job's SEQPACKET socket; replies to interrupted calls are skipped by id."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._last_id = 0
        self.held_s = 0.0  # how long this execution waited for a person: not counted against its time limit

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=_unencodable).encode()
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"request too large ({len(data)} bytes; the limit is {MAX_MESSAGE})")
        self._sock.send(data)

    def receive(self) -> dict[str, Any]:
        data = self._sock.recv(MAX_MESSAGE + 1)
        if not data:
            raise SystemExit(0)
        return json.loads(data)

    def call(self, device: str, method: str, args: dict[str, Any]) -> Any:
        ACTIVITY.touched += 1
        self._last_id += 1
        call_id = self._last_id
        self.send({"op": "call", "id": call_id, "device": device, "method": method, "args": args})
        held: tuple[float, float] | None = None  # (time limit left, since): the gateway is asking a person
        while True:
            reply = self.receive()
            if reply.get("op") == "hold" and held is None:
                held = (signal.setitimer(signal.ITIMER_REAL, 0)[0], time.monotonic())
            elif reply.get("id") == call_id:
                break
        if held is not None:
            left, since = held
            self.held_s += time.monotonic() - since
            if left > 0:
                signal.setitimer(signal.ITIMER_REAL, left)
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ERRORS.get(error.get("type", ""), DeviceError)(error.get("message", "the broker refused the call"))


def _slug(text: str) -> str:
    return "_".join("".join(char if char.isalnum() else " " for char in text.casefold()).split())


def _unencodable(value: object) -> Any:
    raise TypeError(f"cannot send a {type(value).__name__} to a device; use str, int, float, bool, list or dict")


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
        return self._call("query", cmd=cmd, timeout=timeout)

    def write(self, cmd: str) -> None:
        self._call("write", cmd=cmd)


HANDLE_CLASSES: dict[str, type[Device]] = {"http": HttpDevice, "mqtt": MqttDevice, "serial": SerialDevice}
# What a kind is (its doc's intents.domain), as a base class of its handle class: `isinstance(handle, Light)`.
DOMAIN_CLASSES: dict[str, type[Device]] = {
    domain: type(name, (Device,), {"__doc__": f"Every {domain.replace('_', ' ')} device's handle.",
                                   "__module__": "devices"})
    for domain, name in (("light", "Light"), ("switch", "Switch"), ("fan", "Fan"), ("climate", "Climate"),
                         ("lock", "Lock"), ("cover", "Cover"), ("sensor", "Sensor"), ("binary_sensor", "BinarySensor"))}


@dataclass
class Activity:
    """What the model's code did with the devices in the current execution; the job resets it before each."""

    # Lookups, calls and readings: an answer that used none stands on nothing the devices said, and is sent back.
    touched: int = 0
    # The capability calls that returned, as the model wrote them: when a later line fails, the model is told these
    # were done, so it answers instead of doing them again.
    done: list[str] = field(default_factory=list)
    depth: int = 0  # brighter() calls set_brightness(): only the outermost call is reported

    def reset(self) -> None:
        self.touched, self.done, self.depth = 0, [], 0


ACTIVITY = Activity()
# What a capability's code sees besides `self` and its parameters.
CAPABILITY_GLOBALS = {"DeviceError": DeviceError, "json": json}


def capability_class(kind: str, spec: dict[str, Any]) -> type[Device]:
    """The handle class of one device kind: its transport's native calls plus the doc's capabilities."""
    namespace: dict[str, Any] = {"__doc__": spec["title"], "_spec": {**spec, "kind": kind}, "__module__": "devices"}
    for method in spec["methods"]:
        namespace[method["name"]] = _method(kind, method)
    for prop in spec["properties"]:
        namespace[prop["name"]] = _property(kind, prop)
    domain = DOMAIN_CLASSES.get(spec.get("domain") or "")
    return type(spec["class"], (HANDLE_CLASSES[spec["transport"]], *([domain] if domain else [])), namespace)


def _compile(kind: str, name: str, params: list[str], body: str) -> Callable[..., Any]:
    source = f"def {name}(self{''.join(', ' + param for param in params)}):\n" + textwrap.indent(body.strip(), "    ")
    scope: dict[str, Any] = {}
    exec(compile(source, f"<capability {kind}.{name}>", "exec"), dict(CAPABILITY_GLOBALS), scope)
    return scope[name]


def _method(kind: str, spec: dict[str, Any]) -> Callable[..., Any]:
    name, params = spec["name"], spec["params"]
    body = _compile(kind, name, [param["name"] for param in params], spec["code"])
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(param["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=inspect.Parameter.empty if param["required"] else param["default"],
                          annotation=param["type"]) for param in params])

    def method(self: Device, *args: Any, **kwargs: Any) -> Any:
        ACTIVITY.touched += 1
        _require_online(self)
        where = f"{self.id}.{spec['signature']}"
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{where}: {error}") from None
        bound.apply_defaults()
        values = [checked(where, param, bound.arguments[param["name"]]) for param in params]
        ACTIVITY.depth += 1
        try:
            result = body(self, *values)
        finally:
            ACTIVITY.depth -= 1
        if not ACTIVITY.depth:
            ACTIVITY.done.append(f"{self.id}.{name}({', '.join(map(repr, values))})")
        return result

    method.__name__ = method.__qualname__ = name
    method.__doc__ = spec["doc"]
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def _property(kind: str, spec: dict[str, Any]) -> property:
    getter = _compile(kind, spec["name"], [], f"return ({spec['code'].strip()})")

    def get(self: Device) -> Any:
        ACTIVITY.touched += 1
        _require_online(self)
        try:
            return getter(self)
        except AttributeError as error:  # not the model's fault, and must not reach __getattr__ as a missing name
            raise DeviceError(f"{self.id}.{spec['name']}: {error}") from None

    def refuse(self: Device, value: Any) -> None:
        raise AttributeError(f"{self.id}.{spec['name']} is a reading, it cannot be assigned. {summary(type(self))}")

    return property(get, refuse, doc=spec["doc"])


def _require_online(handle: Device) -> None:
    """An MQTT device that said it is offline gets no call (the broker would refuse it), and its last report is not
    passed off as a reading of now."""
    if handle.transport == "mqtt" and not handle.online:
        raise ConnectionError(f"{handle.id} is offline: it cannot be reached or read now")


TRUE_WORDS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


def checked(where: str, param: dict[str, Any], value: Any) -> Any:
    """A capability's argument converted to its declared type and checked against its range or choices."""
    name, kind = param["name"], param["type"]
    if not param["required"] and value is param["default"]:
        return value
    try:
        if kind == "bool":
            converted = value if isinstance(value, bool) else TRUE_WORDS[str(value).strip().casefold()]
        elif kind == "str":
            if not isinstance(value, str):
                raise TypeError
            converted = value
            if param["choices"]:
                converted = {choice.casefold(): choice for choice in param["choices"]}[value.strip().casefold()]
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError
            number = float(value)
            if kind == "int":
                if not number.is_integer():
                    raise ValueError
                converted = int(number)
            else:
                converted = number
    except (KeyError, TypeError, ValueError):
        expected = ("one of " + ", ".join(repr(choice) for choice in param["choices"]) if param["choices"]
                    else {"bool": "True or False", "str": "a string", "int": "a whole number",
                          "float": "a number"}[kind])
        raise ValueError(f"{where}: {name}={value!r} is not {expected}") from None
    low, high = param["low"], param["high"]
    if (low is not None and converted < low) or (high is not None and converted > high):
        raise ValueError(f"{where}: {name}={value!r} is out of range; expected {_bounds(low, high)}")
    return converted


def _bounds(low: float | None, high: float | None) -> str:
    if low is None:
        return f"at most {high:g}"
    if high is None:
        return f"at least {low:g}"
    return f"{low:g} to {high:g}"


class Devices(Mapping[str, Device]):
    """The devices exposed to this task, by id."""

    def __init__(self, handles: list[Device]) -> None:
        self._by_id = {handle.id: handle for handle in handles}
        self._classes: dict[str, tuple[dict[str, Any], type[Device]]] = {}  # kind -> (its spec, its class)

    def __getitem__(self, device_id: str) -> Device:
        ACTIVITY.touched += 1  # a lookup that fails is news from the devices too ("no such device")
        handle = self._by_id.get(device_id)
        if handle is not None:
            return handle
        # Small models write a device's name or alias ("Kitchen Ceiling Light", "front door"), its id without the
        # room ("bench_supply"), or the room and the kind of thing with a made-up word between ("garage_reading_light"
        # for garage_ceiling_light): when exactly one device answers to those words, that is the one.
        words = _slug(str(device_id)).split("_")
        for fits in (lambda handle: "_".join(words) in (_slug(handle.name), *map(_slug, handle.aliases)),
                     lambda handle: set(words) <= set(handle.id.split("_")),
                     lambda handle: len(words) > 1 and {words[0], words[-1]} <= set(handle.id.split("_"))):
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

    def refresh(self, channel: Channel, infos: list[dict[str, Any]], kinds: dict[str, dict[str, Any]]) -> None:
        """Take a new inventory: known handles keep their identity and get the new state; a kind whose doc
        changed gets a new class."""
        classes = {}
        for kind, spec in kinds.items():
            known = self._classes.get(kind)
            classes[kind] = known if known is not None and known[0] == spec else (spec, capability_class(kind, spec))
        current = {}
        for info in infos:
            cls = classes[info["kind"]][1] if info["kind"] in classes else HANDLE_CLASSES[info["transport"]]
            handle = self._by_id.get(info["id"])
            if handle is None or handle.kind != info["kind"] or type(handle) is not cls:
                handle = cls(channel, info)
            handle.state = info.get("state", {})
            handle.api = info.get("api", {})
            handle.online = info.get("online", True)
            current[info["id"]] = handle
        self._classes = classes
        self._by_id = current

    def __repr__(self) -> str:
        return f"devices({', '.join(sorted(self._by_id))})"


