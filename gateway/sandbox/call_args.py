"""What a job's call may carry, checked before anything is sent: each transport method's arguments (pydantic, no
extra fields, bounded sizes), the one spelling of an HTTP path that is checked and sent, a serial command's one
line of printable ASCII, and the messages that tell the model what was wrong."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.untrusted import escaped, safe_char

Scalar = str | int | float | bool | None


class CallArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpGet(CallArgs):
    path: str = Field(max_length=2000)
    params: dict[str, Scalar | list[Any] | dict[str, Any]] = {}


class HttpPost(CallArgs):
    path: str = Field(max_length=2000)
    json_body: Any = Field(None, alias="json")


class HttpRpc(CallArgs):
    rpc_method: str = Field(max_length=100, pattern=r"^[A-Za-z0-9_.]+$")
    params: dict[str, Any] = {}


class MqttPublish(CallArgs):
    topic: str = Field(min_length=1, max_length=500)
    payload: Any = ""
    qos: Literal[0, 1, 2] = 0
    retain: bool = False


class MqttRequest(CallArgs):
    topic: str = Field(min_length=1, max_length=500)
    payload: Any = ""
    reply_topic: str = Field(min_length=1, max_length=500)
    timeout: float = Field(5, gt=0, le=60)


class MqttWait(CallArgs):
    topic: str = Field(min_length=1, max_length=500)
    timeout: float = Field(5, gt=0, le=60)


class SerialQuery(CallArgs):
    cmd: str = Field(max_length=1000)
    timeout: float = Field(2, gt=0, le=30)


class SerialWrite(CallArgs):
    cmd: str = Field(max_length=1000)


def normalize_http_path(path: str) -> str:
    """The one spelling of a path on the device that is checked, matched by danger rules and sent: the path part
    percent-decoded (so /rpc/Shelly%2EReboot is /rpc/Shelly.Reboot), absolute, without scheme, authority, dot
    segments, fragments, spaces or control characters; the query string is kept as given."""
    bare, mark, query = path.partition("?")
    try:
        decoded = unquote(bare, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"path {escaped(path)}: percent-encoding that is not UTF-8") from None
    if not decoded.startswith("/") or decoded.startswith("//") or "\\" in decoded or "%" in decoded:
        raise ValueError(f"path {escaped(path)}: expected a path on the device such as '/rpc/Shelly.GetStatus'")
    if any(segment in ("..", ".") for segment in decoded.split("/")) or "#" in path:
        raise ValueError(f"path {escaped(path)}: dot segments and fragments are not allowed")
    if any(not safe_char(char) or char == " " for char in decoded + query):
        raise ValueError(f"path {escaped(path)}: control characters and spaces are not allowed (URL-encode them)")
    return decoded + mark + query


def check_serial_command(command: str) -> None:
    if any(char in command for char in "\r\n\x00"):
        raise ValueError("a serial command is one line: no CR, LF or NUL inside")
    if not all(" " <= char <= "~" for char in command):
        raise ValueError(f"serial command {escaped(command)}: only printable ASCII is sent to an instrument")


def call_target(args: dict[str, Any]) -> str | None:
    for key in ("path", "topic", "rpc_method", "cmd"):
        value = args.get(key)
        if isinstance(value, str):
            return value[:500]
    return None


def validation_message(method: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "arguments"
        parts.append(f"{name}: {error['msg'].lower()}")
    return f"{method}(): " + "; ".join(parts)
