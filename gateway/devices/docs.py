"""Device docs: one Markdown file per device kind, with TOML front matter between `+++` lines.

The front matter is for the gateway (transport, owned topics, ...); the body is what the model reads.
Shipped docs live in the top-level device_docs/ folder (gateway/device_docs links to it, so a wheel carries
them as package data); users add or override kinds in `<data_dir>/device_docs/`.
A doc with an error is reported by file and line, and the others still load.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from gateway.devices.model import Transport
from gateway.textfile import UnreadableFile, read_text

FRONT_MATTER = re.compile(r"\A\+\+\+[ \t]*\n(.*?)\n\+\+\+[ \t]*\n?(.*)\Z", re.DOTALL)


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


Protocol = Literal["scpi_psu", "scpi_dmm", "korad", "zigbee2mqtt", "homeassistant", "shelly", "tasmota"]
Source = Literal["mdns", "zigbee2mqtt", "tasmota", "homeassistant", "serial"]


class MatchRule(BaseModel):
    """How discovery recognises this kind. Every given field must hold; the most specific matching rule wins.

    mdns: `type` (service type), `name` (glob on the instance name), `txt` (globs on TXT values), then `probe`:
    a GET of that path must answer JSON holding `probe_fields` (its `probe_name` key names the device). zigbee2mqtt: `exposes` (expose types or
    properties that must all be present). tasmota: `fields` (values in the discovery config; a list means any of
    them). homeassistant: `component` (the main entity's platform). serial: `idn` (regex on the *IDN? reply).
    """

    model_config = ConfigDict(extra="forbid")

    source: Source
    type: str | None = None
    name: str | None = None
    txt: dict[str, str] = {}
    probe: str | None = None
    probe_fields: dict[str, Any] = {}
    probe_name: str | None = Field(None, description="key of the device's own name in the probe's JSON")
    exposes: list[str] = []
    fields: dict[str, Any] = {}
    component: str | None = None
    idn: str | None = None

    @property
    def specificity(self) -> int:
        return (sum(value is not None for value in (self.type, self.name, self.probe, self.component, self.idn))
                + len(self.txt) + len(self.probe_fields) + len(self.exposes) + len(self.fields))

    def matches(self, facts: dict[str, Any]) -> bool:
        """`facts` describe what was found: type, name, txt, exposes, fields, component, idn."""
        if self.type is not None and self.type != facts.get("type"):
            return False
        if self.name is not None and not fnmatch.fnmatch(str(facts.get("name", "")).casefold(), self.name.casefold()):
            return False
        txt = facts.get("txt", {})
        if any(key not in txt or not fnmatch.fnmatch(str(txt[key]).casefold(), pattern.casefold())
               for key, pattern in self.txt.items()):
            return False
        if not set(self.exposes) <= set(facts.get("exposes", ())):
            return False
        fields = facts.get("fields", {})
        for key, wanted in self.fields.items():
            options = wanted if isinstance(wanted, list) else [wanted]
            if key not in fields or fields[key] not in options:
                return False
        if self.component is not None and self.component != facts.get("component"):
            return False
        if self.idn is not None and not re.search(self.idn, str(facts.get("idn", "")), re.IGNORECASE):
            return False
        return True


PARAM_SPEC = re.compile(r"^(?P<type>int|float|bool|str)(?:\s+(?:(?P<low>-?[\d.]+)?\.\.(?P<high>-?[\d.]+)?"
                        r"|(?P<choices>[\w-]+(?:\|[\w-]+)+)))?(?:\s*=\s*(?P<default>\S+))?$")
IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# What every handle already has (gateway/sandbox/handles.py): a capability may not hide it.
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


def _default(kind: str, text: str, name: str) -> Any:
    try:
        return {"int": int, "float": float, "str": str, "bool": lambda word: {"true": True, "false": False}[word]}[
            kind](text)
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


class DeviceDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    title: str
    transport: Transport
    keywords: list[str] = Field([], description="words people use for this kind of device, any language")
    state_keys: list[str] = Field([], description="state fields worth showing the model, most telling first")
    default_port: int | None = Field(None, ge=1, le=65535, description="http: used when a device names no port")
    rpc_path: str = Field("/rpc", description="http: where .rpc() posts its JSON-RPC frames")
    state_path: str | None = Field(None, pattern=r"^/", description="http: GET here for the device's state, after "
                                                                     "a call that may change it and on each poll")
    state_pointer: str = Field("", pattern=r"^(/[^/]*)*$", description="http: JSON pointer to the state object "
                                                                        "in that reply, e.g. /lights/0")
    topics: list[str] = Field([], description="mqtt: owned topic filters; {base_topic} is substituted")
    protocol: Protocol | None = Field(None, description="how the policy reads its native calls; without one, "
                                                        "by the doc's [[calls]]")
    calls: list[CallReading] = Field([], description="what native calls do, for a kind without a protocol")
    line_terminator: str = Field("\n", description="serial: ends each command and reply")
    baudrate: int = 9600
    match: list[MatchRule] = Field([], description="how discovery recognises this kind")
    methods: dict[str, Method] = Field({}, description="capabilities the model calls: on(), set_brightness(...)")
    properties: dict[str, Property] = Field({}, description="readings the model gets: is_on, temperature")
    intents: IntentTemplates = IntentTemplates()
    danger: list[DangerRule] = Field([], description="actions that need a person's yes, or are refused")
    rate_limit_per_minute: int | None = Field(None, gt=0, description="commands per minute to one device")
    body: str = ""
    source: str = ""

    @model_validator(mode="after")
    def _capabilities(self) -> DeviceDoc:
        for name, member in [*self.methods.items(), *self.properties.items()]:
            where = f"{'methods' if name in self.methods else 'properties'}.{name}"
            if not re.match(IDENTIFIER, name) or name in HANDLE_ATTRIBUTES:
                raise ValueError(f"{where}: a capability needs a lowercase name that no handle already has "
                                 f"({', '.join(sorted(HANDLE_ATTRIBUTES))})")
            try:
                if isinstance(member, Method):
                    compile(f"def {name}(self):\n" + textwrap.indent(member.code.strip(), "    "), where, "exec")
                else:
                    compile(member.code.strip(), where, "eval")
            except SyntaxError as error:
                raise ValueError(f"{where}.code: not valid Python: {error.msg}") from None
        both = set(self.methods) & set(self.properties)
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: both a method and a property")
        self.intents = self.intents.with_defaults(self.methods, self.properties)
        return self

    @model_validator(mode="after")
    def _calls_fit(self) -> DeviceDoc:
        if self.calls and self.protocol:
            raise ValueError(f"calls: the {self.protocol} reader already knows what this kind's calls do; [[calls]] "
                             f"are for a kind without a protocol")
        field = {"http": "path", "mqtt": "topic", "serial": "command"}[self.transport]
        for index, call in enumerate(self.calls):
            if getattr(call, field) is None:
                raise ValueError(f"calls.{index}: a {self.transport} device's calls are named by {field}")
        return self

    @property
    def class_name(self) -> str:
        """The handle's class as the model sees it: zigbee_bulb -> ZigbeeBulb."""
        return "".join(part.capitalize() for part in self.kind.split("_"))

    def job_spec(self) -> dict[str, Any]:
        """What a sandbox job needs to build this kind's handle class (see gateway/sandbox/handles.py)."""
        return {"class": self.class_name, "title": self.title, "body": self.body, "domain": self.intents.domain,
                "transport": self.transport,
                "methods": [{"name": name, "doc": method.doc, "returns": method.returns, "code": method.code,
                             "signature": method.signature(name),
                             "params": [param.model_dump() for param in method.parameters]}
                            for name, method in self.methods.items()],
                "properties": [{"name": name, "doc": prop.doc, "code": prop.code, "signature": prop.signature(name)}
                               for name, prop in self.properties.items()]}

    def owned_topics(self, base_topic: str) -> list[str]:
        return [pattern.replace("{base_topic}", base_topic) for pattern in self.topics]


@dataclass
class DocLibrary:
    docs: dict[str, DeviceDoc] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _job_specs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, extra_dirs: list[Path] = ()) -> DocLibrary:
        library = cls()
        shipped = importlib.resources.files("gateway.device_docs")
        for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".md"):
                library._add(entry.read_text(encoding="utf-8"), f"device_docs/{entry.name}")
        for directory in extra_dirs:
            if directory.is_dir():
                for path in sorted(directory.glob("*.md")):
                    try:
                        text = read_text(path)
                    except (FileNotFoundError, UnreadableFile) as exc:  # gone while listing, binary, Latin-1, a dir
                        library.errors.append(f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}")
                        continue
                    library._add(text, str(path))
        return library

    def _add(self, text: str, source: str) -> None:
        try:
            doc = parse_doc(text, source)
        except DocError as exc:
            self.errors.append(str(exc))
            return
        except RecursionError:  # TOML or code nested past Python's stack
            self.errors.append(f"{source}: nests too deeply to read (arrays, tables or code)")
            return
        self.docs[doc.kind] = doc

    def get(self, kind: str) -> DeviceDoc | None:
        return self.docs.get(kind)

    def job_specs(self, kinds: set[str]) -> dict[str, dict[str, Any]]:
        """The handle class specs of these kinds, for a sandbox job's inventory."""
        for kind in kinds - self._job_specs.keys():
            if kind in self.docs:
                self._job_specs[kind] = self.docs[kind].job_spec()
        return {kind: self._job_specs[kind] for kind in sorted(kinds) if kind in self._job_specs}

    def match(self, source: str, facts: dict[str, Any]) -> tuple[DeviceDoc, MatchRule] | None:
        """The doc whose most specific rule for this source holds for `facts`."""
        best: tuple[int, DeviceDoc, MatchRule] | None = None
        for doc in self.docs.values():
            for rule in doc.match:
                if rule.source == source and rule.matches(facts) and (best is None or rule.specificity > best[0]):
                    best = (rule.specificity, doc, rule)
        return (best[1], best[2]) if best else None

    def kinds(self) -> list[str]:
        return sorted(self.docs)


class DocError(ValueError):
    pass


def parse_doc(text: str, source: str) -> DeviceDoc:
    match = FRONT_MATTER.match(text)
    if not match:
        raise DocError(f"{source}:1: expected TOML front matter between '+++' lines at the top")
    front, body = match.groups()
    try:
        data = tomllib.loads(front)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_of(str(exc))
        raise DocError(f"{source}:{line + 1 if line else 1}: front matter is not valid TOML: {exc}") from None
    try:
        return DeviceDoc.model_validate({**data, "body": body.strip(), "source": source})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if not key:  # a check of the whole doc names the key itself: "methods.state: ..."
                key, _, message = message.partition(": ")
            problems.append(f"{source}:{_key_line(front, key)}: {key}: {message[:1].lower()}{message[1:]}")
        raise DocError("; ".join(problems)) from None


def _line_of(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _key_line(front: str, key: str) -> int:
    """Line of `key` in the file (front matter starts on line 2): its table (`[methods.on]`, the n-th `[[danger]]`
    for `danger.n`) or its top-level key, or the first line if absent."""
    parts = key.split(".")
    lines = list(enumerate(front.splitlines(), start=2))
    if len(parts) > 1 and parts[1].isdigit():
        tables = [number for number, line in lines if re.match(rf"\s*\[\[\s*{re.escape(parts[0])}\s*\]\]", line)]
        if int(parts[1]) < len(tables):
            return tables[int(parts[1])]
    for depth in range(len(parts), 0, -1):
        table = re.escape(".".join(parts[:depth]))
        for number, line in lines:
            if re.match(rf"\s*\[{{1,2}}\s*{table}\s*\]", line) or (depth == 1 and re.match(rf"\s*{table}\s*=", line)):
                return number
    return 1
