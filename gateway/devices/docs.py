"""Device docs: one Markdown file per device kind, with TOML front matter between `+++` lines.

The front matter is for the gateway (transport, owned topics, ...); the body is what the model reads.
Shipped docs live in the top-level device_docs/ folder (gateway/device_docs links to it, so a wheel carries
them as package data); users add or override kinds in `<data_dir>/device_docs/`.
A doc with an error is reported by file and line, and the others still load.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.devices.model import Transport

FRONT_MATTER = re.compile(r"\A\+\+\+[ \t]*\n(.*?)\n\+\+\+[ \t]*\n?(.*)\Z", re.DOTALL)


class DeviceDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    title: str
    transport: Transport
    default_port: int | None = Field(None, ge=1, le=65535, description="http: used when a device names no port")
    rpc_path: str = Field("/rpc", description="http: where .rpc() posts its JSON-RPC frames")
    topics: list[str] = Field([], description="mqtt: owned topic filters; {base_topic} is substituted")
    line_terminator: str = Field("\n", description="serial: ends each command and reply")
    baudrate: int = 9600
    body: str = ""
    source: str = ""

    def owned_topics(self, base_topic: str) -> list[str]:
        return [pattern.replace("{base_topic}", base_topic) for pattern in self.topics]


@dataclass
class DocLibrary:
    docs: dict[str, DeviceDoc] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

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
                    library._add(path.read_text(encoding="utf-8"), str(path))
        return library

    def _add(self, text: str, source: str) -> None:
        try:
            doc = parse_doc(text, source)
        except DocError as exc:
            self.errors.append(str(exc))
            return
        self.docs[doc.kind] = doc

    def get(self, kind: str) -> DeviceDoc | None:
        return self.docs.get(kind)

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
            problems.append(f"{source}:{_key_line(front, key)}: {key}: {error['msg'].lower()}")
        raise DocError("; ".join(problems)) from None


def _line_of(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _key_line(front: str, key: str) -> int:
    """Line of `key` in the file (front matter starts on line 2), or the first line if absent."""
    top = key.split(".")[0]
    for number, line in enumerate(front.splitlines(), start=2):
        if re.match(rf"\s*{re.escape(top)}\s*=", line):
            return number
    return 1
