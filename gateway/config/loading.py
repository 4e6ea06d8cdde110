"""Reading the configuration: finding the file, applying the environment, and wording every problem as one line
naming the key, where it came from and what is expected.

Precedence, lowest to highest: built-in defaults, the TOML file, OPENAI_API_KEY / OPENAI_BASE_URL, PYUSE_*.
`PYUSE_<SECTION>_<KEY>` sets `[section] key` (e.g. PYUSE_LLM_MODEL, PYUSE_SANDBOX_EXEC_TIMEOUT_S).
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.sections import Config
from gateway.errors import GatewayError
from gateway.textfile import UnreadableFile, read_text


class ConfigError(GatewayError):
    """The configuration is unusable; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


SECTIONS = {name for name in Config.model_fields if name not in ("devices", "automations")}
SECRET_KEYS = (("llm", "api_key"), ("mqtt", "password"), ("stt", "api_key"))


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read `path` (or only defaults when None), apply the environment, validate everything at once."""
    env = dict(os.environ) if env is None else env
    source = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    warnings: list[str] = []
    if path is not None:
        try:
            data = tomllib.loads(read_text(path))
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found (pass -c with an existing file, or omit it)"]) from None
        except UnreadableFile as exc:
            raise ConfigError([f"{path}: {exc}"]) from None
        except RecursionError:
            raise ConfigError([f"{path}: not valid TOML: arrays or tables nest too deeply"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        warnings = _exposed_secrets(path, data)
    origins: dict[tuple[str, ...], str] = {}
    problems = _apply_env(data, env, origins)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, data, source, origins) for error in exc.errors()]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    config.warnings.extend(warnings)
    return config


def _exposed_secrets(path: Path, data: dict[str, Any]) -> list[str]:
    """A warning when the file holds a secret (before the environment adds any) and other users may read it."""
    held = [f"{section}.{key}" for section, key in SECRET_KEYS
            if isinstance(data.get(section), dict) and data[section].get(key)]
    mode = stat.S_IMODE(path.stat().st_mode)
    if not held or not mode & 0o044:
        return []
    return [(f"{path} holds {' and '.join(held)} and other users can read it (mode {mode:03o}); "
             f"run `chmod 600 {path}`")]


def _apply_env(data: dict[str, Any], env: dict[str, str], origins: dict[tuple[str, ...], str]) -> list[str]:
    problems: list[str] = []

    def put(section: str, key: str, value: str, origin: str) -> None:
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            problems.append(f"{origin}: cannot set {section}.{key}: [{section}] in the file is not a table")
            return
        data[section][key] = value
        origins[(section, key)] = origin

    if env.get("OPENAI_API_KEY"):
        put("llm", "api_key", env["OPENAI_API_KEY"], "OPENAI_API_KEY (environment)")
    if env.get("OPENAI_BASE_URL"):
        put("llm", "base_url", env["OPENAI_BASE_URL"], "OPENAI_BASE_URL (environment)")
    for name, value in sorted(env.items()):
        if not name.startswith("PYUSE_") or name == "PYUSE_CONFIG":
            continue
        section, _, key = name[len("PYUSE_"):].lower().partition("_")
        if section not in SECTIONS or not key:
            hint = _did_you_mean(section, SECTIONS)
            problems.append(f"{name} (environment): no such setting; expected PYUSE_<SECTION>_<KEY> "
                            f"with a section among {', '.join(sorted(SECTIONS))}{hint}")
            continue
        put(section, key, value, f"{name} (environment)")
    return problems


def _describe(error: ErrorDetails, data: dict[str, Any], source: str, origins: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    key = _dotted(loc)
    origin = origins.get(loc, source)
    name = _automation_name(loc, data)
    if name:
        origin = f"{origin}: automation {name!r}"
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = _did_you_mean(loc[-1], set(model.model_fields)) if model else ""
        return f"{origin}: {key}: unknown key{hint}"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or got is None or "api_key" in key or "password" in key else f", got {got!r}"
    shown = shown if len(shown) <= 90 else shown[:89] + "…"  # one line, however long the value
    return f"{origin}: {key}: {_sentence(error['msg'])}{shown}"


def _automation_name(loc: tuple[str, ...], data: dict[str, Any]) -> str | None:
    """The name of the [[automations]] entry a problem is in, when it has one: an index alone is hard to find."""
    if len(loc) < 3 or loc[0] != "automations" or not loc[1].isdigit() or loc[2] == "name":
        return None
    entries = data.get("automations")
    entry = entries[int(loc[1])] if isinstance(entries, list) and int(loc[1]) < len(entries) else None
    return entry.get("name") if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None


def _sentence(message: str) -> str:
    """pydantic's message as the middle of our line: no 'Value error,' prefix, no leading capital."""
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _dotted(loc: tuple[str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _did_you_mean(word: str, choices: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


SYSTEM_CONFIG = Path("/etc/pyuse/pyuse.toml")


def find_config_file(explicit: Path | None, env: dict[str, str] | None = None) -> Path | None:
    """-c wins, then $PYUSE_CONFIG, then the first of ./pyuse.toml, the user's file
    ($XDG_CONFIG_HOME/pyuse/pyuse.toml, else ~/.config/pyuse/pyuse.toml) and the system's (/etc/pyuse/pyuse.toml)
    that exists; None means defaults."""
    env = dict(os.environ) if env is None else env
    if explicit is not None:
        return explicit
    if env.get("PYUSE_CONFIG"):
        return Path(env["PYUSE_CONFIG"])
    for candidate in (Path("pyuse.toml"), _user_config_dir(env) / "pyuse" / "pyuse.toml", SYSTEM_CONFIG):
        if os.path.isfile(candidate):  # False, not an error, for a home this user may not look into
            return candidate
    return None


def _user_config_dir(env: dict[str, str]) -> Path:
    """$XDG_CONFIG_HOME when it is an absolute path (the XDG spec says to ignore a relative one), else ~/.config."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg)
    return (Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".config"
