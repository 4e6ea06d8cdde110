"""Capabilities: the methods and readings a device doc declares (on(), set_brightness(percent),
temperature...), compiled from the doc's code into each kind's handle class, with their arguments checked.

Stdlib only (runs in the job). A capability only calls the handle's native calls, so the broker sees and
judges native calls whichever way the model phrases an action.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Callable
from typing import Any

from .channel import ACTIVITY, DeviceError
from .handles import DOMAIN_CLASSES, HANDLE_CLASSES, Device, summary

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


class KindClasses:
    """Each kind's handle class, built again only when the kind's doc changed: handles keep their class, and so
    their identity, across inventories."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[dict[str, Any], type[Device]]] = {}  # kind -> (its spec, its class)

    def update(self, kinds: dict[str, dict[str, Any]]) -> dict[str, type[Device]]:
        built = {}
        for kind, spec in kinds.items():
            known = self._built.get(kind)
            built[kind] = known if known is not None and known[0] == spec else (spec, capability_class(kind, spec))
        self._built = built
        return {kind: cls for kind, (_, cls) in built.items()}


def _compile(kind: str, name: str, params: list[str], body: str) -> Callable[..., Any]:
    source = f"def {name}(self{''.join(', ' + param for param in params)}):\n" + textwrap.indent(body.strip(), "    ")
    scope: dict[str, Any] = {}
    exec(compile(source, f"<capability {kind}.{name}>", "exec"), dict(CAPABILITY_GLOBALS), scope)
    function: Callable[..., Any] = scope[name]
    return function


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
    converted: Any  # bool, str, int or float, as the parameter's type says
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
