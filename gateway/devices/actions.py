"""The canonical actions: what a device does, whatever its native call looks like, and what a device doc says
in their terms: danger rules (`when = "set_voltage > 12"`) and, for a kind without a protocol reader, how its
native calls read as actions (`[[calls]]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

# The canonical actions: what a device does, whatever a native call looks like. Each protocol's reader in
# gateway/policy/protocols/ turns a native call into these, and danger rules, [[calls]] and methods name them.
# name -> (what it means, unit of its value).
ACTIONS: dict[str, tuple[str, str]] = {
    "read": ("reads or queries; changes nothing", ""),
    "output_on": ("switches an output on: a relay, a plug, a light, a supply's output", ""),
    "output_off": ("switches an output off", ""),
    "output_toggle": ("flips an output, so a rule on output_on or output_off holds for it", ""),
    "set_voltage": ("sets a supply's voltage", "V"),
    "set_current": ("sets a supply's current limit", "A"),
    "set_ovp": ("sets a supply's over-voltage protection level", "V"),
    "set_ocp": ("sets a supply's over-current protection level", "A"),
    "protection_on": ("arms a protection (value: ovp or ocp)", ""),
    "protection_off": ("disarms a protection (value: ovp or ocp)", ""),
    "select_channel": ("selects the channel later commands apply to", ""),
    "set_brightness": ("sets a light's brightness", "%"),
    "set_color_temp": ("sets a light's white colour temperature", "K"),
    "set_color": ("sets a light's colour", ""),
    "set_temperature": ("sets the temperature to heat or cool to", "°C"),
    "set_mode": ("sets a thermostat's or heater's mode (value: off, heat, auto...)", ""),
    "set_speed": ("sets a fan's speed", "%"),
    "set_position": ("moves a cover to a position, 0 closed and 100 open", "%"),
    "open": ("opens a cover", ""),
    "close": ("closes a cover", ""),
    "stop": ("stops a cover", ""),
    "lock": ("locks a lock", ""),
    "unlock": ("unlocks or unlatches a lock", ""),
    "configure": ("changes a setting of the device (value: which)", ""),
    "firmware_update": ("installs new firmware", ""),
    "reboot": ("restarts the device", ""),
    "factory_reset": ("erases the device's configuration", ""),
    "unknown": ("a native call the gateway could not read; asks on a device with danger rules", ""),
}
# A rule on one of these also holds for the action that may do it.
IMPLIED: dict[str, tuple[str, ...]] = {"output_toggle": ("output_on", "output_off")}
COMPARISON = re.compile(r"^\s*(?P<name>[a-z][a-z0-9_]*)\s*(?:(?P<op>==|!=|>=|<=|>|<)\s*(?P<operand>\S.*?))?\s*$")
ORDERING = {">", ">=", "<", "<="}
# What rules named before: how a call is spelled, which the model could vary at will.
SPELLING_KEYS = ("rpc", "method", "path", "params", "topic", "payload", "json", "command", "above", "below")


def known_action(name: str) -> str:
    if name not in ACTIONS:
        raise ValueError(f"unknown action {name!r}; the actions are {', '.join(ACTIONS)}")
    return name


@dataclass(frozen=True)
class Condition:
    """`set_voltage > 12` parsed: the action's name, and a comparison of its value (none: any value)."""

    action: str
    op: str | None = None
    operand: float | str | None = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        found = COMPARISON.match(text)
        if not found:
            raise ValueError(f"expected an action and an optional comparison, such as \"output_on\", "
                             f"\"set_voltage > 12\" or \"set_mode == heat\", got {text!r}")
        op, operand = found["op"], found["operand"]
        if operand is None:
            return cls(known_action(found["name"]))
        number = _float(operand)
        if op in ORDERING and number is None:
            raise ValueError(f"{text!r}: {op} compares numbers, and {operand!r} is not one")
        return cls(known_action(found["name"]), op, number if number is not None else operand.strip("\"'"))


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class DangerRule(BaseModel):
    """What needs a person's yes (or is refused, or allowed): an action the device would perform, never how the
    call that asks for it is spelled. `when` names a canonical action and may compare its value (`set_voltage > 12`,
    `set_mode == heat`); `channel` narrows it to one output (an action whose channel the command itself does not
    name still counts)."""

    model_config = ConfigDict(extra="forbid")

    when: str = Field(description='an action, optionally compared: "output_on", "set_voltage > 12"')
    channel: int | None = Field(None, ge=0)
    action: Literal["confirm", "deny", "allow"] = "confirm"
    reason: str = Field(min_length=1, max_length=200)
    _condition: Condition = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _no_spellings(cls, data: Any) -> Any:
        spelled = [key for key in SPELLING_KEYS if isinstance(data, dict) and key in data]
        if spelled:
            raise ValueError(f"{spelled[0]}: a rule names what the device does, not how a call is spelled (the "
                             f"model can spell it another way): write when = \"set_voltage > 12\", \"output_on\", "
                             f"\"unlock\"... instead")
        return data

    @field_validator("when")
    @classmethod
    def _parses(cls, when: str) -> str:
        Condition.parse(when)
        return when

    def model_post_init(self, context: Any) -> None:
        self._condition = Condition.parse(self.when)

    @property
    def condition(self) -> Condition:
        return self._condition


class CallReading(BaseModel):
    """How a native call reads as an action, for a kind without a protocol reader of its own (`[[calls]]`).

    http: `method` (any but GET when left out) and `path` (a glob); mqtt: `topic` ({base_topic} filled in) and
    `payload` (the text, in any case); serial: `command` (a regular expression the whole line must match; a group
    `value` is the action's value). http and mqtt: `json` holds values the JSON body or payload must have (by JSON
    pointer, e.g. "/lights/0/on"), `value` points at the action's value (the call must carry it), times `scale` (or
    `per` divided by it).
    A call that no entry reads is `unknown`; an http GET no entry names is `read`.
    """

    model_config = ConfigDict(extra="forbid")

    does: str
    channel: int | None = Field(None, ge=0)
    method: str | None = None
    path: str | None = Field(None, pattern=r"^/")
    topic: str | None = None
    payload: str | None = None
    command: str | None = None
    json_values: dict[str, Any] = Field({}, alias="json")
    value: str | None = None
    scale: float = 1.0
    per: float | None = Field(None, description="the value is per / what the call carries (mireds to kelvin: "
                                                 "per = 1000000)")

    @field_validator("does")
    @classmethod
    def _known(cls, does: str) -> str:
        return known_action(does)

    @field_validator("command")
    @classmethod
    def _regex(cls, command: str | None) -> str | None:
        try:
            re.compile(command or "")
        except re.error as error:
            raise ValueError(f"bad regular expression {command!r}: {error}") from None
        return command

    @field_validator("json_values")
    @classmethod
    def _pointers(cls, values: dict[str, Any]) -> dict[str, Any]:
        for pointer in values:
            if not pointer.startswith("/"):
                raise ValueError(f"{pointer!r}: a JSON pointer starts with '/', e.g. \"/lights/0/on\"")
        return values

    @model_validator(mode="after")
    def _one_transport(self) -> CallReading:
        named = [key for key in ("path", "topic", "command") if getattr(self, key) is not None]
        if len(named) != 1:
            raise ValueError("a [[calls]] entry names one of path (http), topic (mqtt) or command (serial)")
        if self.value is not None and self.command is not None:
            raise ValueError("value: a serial command's value is the regular expression's group `value`")
        if self.value not in (None, "") and not self.value.startswith("/"):
            raise ValueError(f"value {self.value!r}: a JSON pointer starts with '/', e.g. \"/target_c\" (\"\" is "
                             f"the whole payload)")
        return self
