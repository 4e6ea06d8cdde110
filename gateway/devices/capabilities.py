"""A device kind's capabilities, as its doc declares them: the methods the model calls on a handle (with
parameter specs such as "float 0..100"), the properties it reads, and the fast path's intent templates written
against them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.devices.actions import known_action

PARAM_SPEC = re.compile(r"^(?P<type>int|float|bool|str)(?:\s+(?:(?P<low>-?[\d.]+)?\.\.(?P<high>-?[\d.]+)?"
                        r"|(?P<choices>[\w-]+(?:\|[\w-]+)+)))?(?:\s*=\s*(?P<default>\S+))?$")
IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# What every handle already has (gateway/sandbox/jobside/handles.py): a capability may not hide it.
HANDLE_ATTRIBUTES = {"id", "name", "area", "kind", "aliases", "online", "state", "api", "base_topic", "topics", "get",
                     "post", "put", "rpc", "publish", "request", "wait", "query", "write", "transport"}
ValueType = Literal["int", "float", "bool", "str", "dict", "list"]


class Param(BaseModel):
    """One parameter of a capability method, from a spec such as "float 0..100", "int 1..3 = 1", "str off|heat"."""

    name: str
    type: Literal["int", "float", "bool", "str"]
    low: float | None = None
    high: float | None = None
    choices: list[str] = []
    default: Any = None
    required: bool = True

    @classmethod
    def parse(cls, name: str, spec: str) -> Param:
        found = PARAM_SPEC.match(spec.strip())
        if not found or not re.match(IDENTIFIER, name):
            raise ValueError(f"parameter {name!r}: expected a spec such as \"float 0..100\", \"int 1..3 = 1\" or "
                             f"\"str off|auto|heat\", got {spec!r}")
        kind = found["type"]
        param = cls(name=name, type=kind, low=_bound(found["low"]), high=_bound(found["high"]),
                    choices=found["choices"].split("|") if found["choices"] else [])
        if (param.low is not None or param.high is not None) and kind not in ("int", "float"):
            raise ValueError(f"parameter {name!r}: a range needs int or float")
        if found["default"] is not None:
            param.required = False
            param.default = _default(kind, found["default"], name)
        return param

    def render(self) -> str:
        """As the prompt shows it: `percent: 0..100`, `channel=1`, `mode: off|auto|heat`."""
        if self.choices:
            shown = f"{self.name}: {'|'.join(self.choices)}"
        elif self.low is not None and self.high is not None:
            shown = f"{self.name}: {_number(self.low)}..{_number(self.high)}"
        else:
            shown = f"{self.name}: {self.type}"
        return shown if self.required else f"{self.name}={self.default!r}"


def _bound(text: str | None) -> float | None:
    return None if text is None else float(text)


def _number(value: float | None) -> str:
    return "" if value is None else (str(int(value)) if value.is_integer() else str(value))


DEFAULT_READERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str,
                                                    "bool": lambda word: {"true": True, "false": False}[word]}


def _default(kind: str, text: str, name: str) -> Any:
    try:
        return DEFAULT_READERS[kind](text)
    except (KeyError, ValueError):
        raise ValueError(f"parameter {name!r}: default {text!r} is not a {kind}") from None


class Method(BaseModel):
    """A capability the model calls as `handle.<name>(...)`: its code is the body of a method in the device's
    native protocol (`self` is the handle, the parameters are checked and converted before it runs)."""

    model_config = ConfigDict(extra="forbid")

    doc: str = Field(min_length=1, max_length=300)
    params: dict[str, str] = Field({}, description="name -> spec, in call order")
    returns: ValueType | None = None
    code: str = Field(min_length=1)
    does: list[str] = Field([], description="the actions its native calls perform (reads and channel selection "
                                            "aside), for people and tests: the broker reads the native calls "
                                            "themselves")

    @field_validator("does")
    @classmethod
    def _actions(cls, does: list[str]) -> list[str]:
        return [known_action(name) for name in does]

    @field_validator("params")
    @classmethod
    def _specs(cls, params: dict[str, str]) -> dict[str, str]:
        for name, spec in params.items():
            Param.parse(name, spec)
        return params

    @property
    def parameters(self) -> list[Param]:
        return [Param.parse(name, spec) for name, spec in self.params.items()]

    def signature(self, name: str, returns: bool = True) -> str:
        """`set_color(red, green, blue: 0..255)`: parameters with the same spec share it. The prompt leaves out
        what a method returns (`measure_voltage()` says it), help() shows it."""
        params = self.parameters
        shown = []
        for param, following in zip(params, [*params[1:], None]):
            spec = param.render()[len(param.name):]
            same = following is not None and following.render()[len(following.name):] == spec
            shown.append(param.name if same else param.name + spec)
        text = f"{name}({', '.join(shown)})"
        return f"{text} -> {self.returns}" if self.returns and returns else text


class Property(BaseModel):
    """A reading the model gets as `handle.<name>`: an expression (it may call the device) that gives the value."""

    model_config = ConfigDict(extra="forbid")

    doc: str = Field(min_length=1, max_length=300)
    type: ValueType
    unit: str = Field("", max_length=10)
    code: str = Field(min_length=1)

    def signature(self, name: str, compact: bool = False) -> str:
        """`temperature: float (°C)`; compact, for the prompt, a unit or a yes/no name says the type:
        `temperature (°C)`, `is_on`."""
        if compact and (self.unit or self.type == "bool"):
            return name + (f" ({self.unit})" if self.unit else "")
        return f"{name}: {self.type}" + (f" ({self.unit})" if self.unit else "")


# The fast path's actions. Statements, except `read*` (expressions whose value answers the question); `dev` is the
# handle, $level (0-100 %), $temperature (°C) and $position (0-100 %) are filled in. Unset ones come from the
# capabilities of the same name, so the fast path and the model run the same code.
DEFAULT_INTENTS = {"turn_on": ("on",), "turn_off": ("off",), "set_level": ("set_brightness",),
                   "set_temperature": ("set_temperature",), "set_position": ("set_position",), "lock": ("lock",),
                   "unlock": ("unlock",), "open": ("open",), "close": ("close",),
                   "increase": ("brighter", "warmer"), "decrease": ("dimmer", "cooler"),
                   "read_temperature": ("temperature",)}
INTENT_ARGUMENTS = {"set_level": "$level", "set_temperature": "$temperature", "set_position": "$position"}


class IntentTemplates(BaseModel):
    """Code for the local fast path (no model), written against the doc's capabilities. `increase`/`decrease` are
    what "brighter", "warmer", "turn up" mean for this kind (by default its brighter()/warmer() and
    dimmer()/cooler() methods); without them the fast path leaves such commands to the model."""

    model_config = ConfigDict(extra="forbid")

    domain: Literal["light", "switch", "fan", "climate", "lock", "cover", "sensor", "binary_sensor"] | None = None
    turn_on: str | None = None
    turn_off: str | None = None
    set_level: str | None = None
    set_temperature: str | None = None
    set_position: str | None = None
    lock: str | None = None
    unlock: str | None = None
    open: str | None = None
    close: str | None = None
    increase: str | None = None
    decrease: str | None = None
    read: str | None = None
    read_temperature: str | None = None

    @model_validator(mode="after")
    def _python(self) -> IntentTemplates:
        for name in type(self).model_fields:
            template = getattr(self, name)
            if name != "domain" and template is not None:
                code = template.replace("$level", "1").replace("$temperature", "1").replace("$position", "1")
                try:
                    compile(code, f"intents.{name}", "eval" if name.startswith("read") else "exec")
                except SyntaxError as error:
                    raise ValueError(f"intents.{name} is not valid Python: {error.msg}") from None
        return self

    def with_defaults(self, methods: dict[str, Method], properties: dict[str, Property]) -> IntentTemplates:
        filled = {}
        for action, members in DEFAULT_INTENTS.items():
            if getattr(self, action) is not None:
                continue
            for member in members:
                if member in methods:
                    filled[action] = f"dev.{member}({INTENT_ARGUMENTS.get(action, '')})"
                    break
                if member in properties and action.startswith("read"):
                    filled[action] = f"dev.{member}"
                    break
        return self.model_copy(update=filled)
