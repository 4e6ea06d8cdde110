"""Device docs: one Markdown file per device kind, with TOML front matter between `+++` lines.

The front matter is for the gateway (transport, owned topics, ...); the body is what the model reads.
Shipped docs live in the top-level device_docs/ folder (gateway/device_docs links to it, so a wheel carries
them as package data); users add or override kinds in `<data_dir>/device_docs/`.
A doc with an error is reported by file and line, and the others still load.
What a doc's tables mean lives beside it: actions, danger rules and [[calls]] in actions.py, methods, properties
and intents in capabilities.py.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import re
import textwrap
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.devices.actions import CallReading, DangerRule
from gateway.devices.capabilities import HANDLE_ATTRIBUTES, IDENTIFIER, IntentTemplates, Method, Property
from gateway.devices.model import Transport
from gateway.textfile import UnreadableFile, read_text

FRONT_MATTER = re.compile(r"\A\+\+\+[ \t]*\n(.*?)\n\+\+\+[ \t]*\n?(.*)\Z", re.DOTALL)


Protocol = Literal["scpi_psu", "scpi_dmm", "korad", "zigbee2mqtt", "homeassistant", "shelly", "tasmota"]
Source = Literal["mdns", "zigbee2mqtt", "tasmota", "homeassistant", "serial"]


class MatchRule(BaseModel):
    """How discovery recognises this kind. Every given field must hold; the most specific matching rule wins.

    mdns: `type` (service type), `name` (glob on the instance name), `txt` (globs on TXT values), then `probe`:
    a GET of that path must answer JSON holding `probe_fields` (its `probe_name` key names the device).
    zigbee2mqtt: `exposes` (expose types or properties that must all be present). tasmota: `fields` (values in the
    discovery config; a list means any of them). homeassistant: `component` (the main entity's platform). serial:
    `idn` (regex on the *IDN? reply).
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
        members: list[tuple[str, Method | Property]] = [*self.methods.items(), *self.properties.items()]
        for name, member in members:
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
        """What a sandbox job needs to build this kind's handle class (sandbox/jobside/capabilities.py)."""
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
    def load(cls, extra_dirs: Iterable[Path] = ()) -> DocLibrary:
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
