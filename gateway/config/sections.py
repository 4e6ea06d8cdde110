"""The configuration's schema: one pydantic model per `[section]` of the TOML file, and `Config`, all of them.

Each section checks its own keys and says what a key is for in its description; the file is read, the
environment applied and the problems worded in gateway.config.loading.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.clock import parse_interval, parse_time_of_day
from gateway.conditions import Condition
from gateway.devices.actions import DangerRule

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError("expected lowercase letters, digits, '_' or '-', starting with a letter or digit")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pyuse"


class Section(BaseModel):
    # No inf or nan (TOML and JSON can say both): every number is a real timeout, interval or limit.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class GatewaySection(Section):
    id: Slug = Field("pyuse", description="names this gateway in MQTT topics; lowercase letters, digits, _ and -")
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line")
    clock_speed: float = Field(1.0, gt=0, le=100_000, description="time runs this many times faster for job "
                                                                   "sleeps and schedules; only for simulations")

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        value = value.expanduser()
        try:
            existing = next(path for path in (value, *value.absolute().parents) if path.exists())
        except OSError:  # a parent this user may not search: the store says so when it opens
            return value
        if not existing.is_dir():
            raise ValueError(f"{existing} is a file, not a directory; point data_dir at a directory (it is created "
                             "when missing)")
        return value


class LLMSection(Section):
    base_url: str = Field("", description="OpenAI-compatible endpoint; empty means no model is configured")
    model: str = ""
    api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, gt=0, description="cap on one reply")
    stream: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL such as http://127.0.0.1:11434/v1")
        return value.rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class AgentSection(Section):
    max_turns: int = Field(8, ge=1, le=100)
    task_timeout_s: float = Field(180.0, gt=0)
    max_tokens_per_task: int = Field(40_000, gt=0)
    observation_limit_chars: int = Field(4000, ge=200)
    prompt_budget_tokens: int = Field(3000, ge=1000, description="past this, only the devices a command is "
                                                                  "likely about are listed")
    fast_path: bool = Field(True, description="try saved skills and local sentence matching before the model; "
                                              "false sends every command to the model")


# A device call's limit when [sandbox] device_timeout_s is not set: well inside an execution's, so that a device
# that does not answer is reported as such, not as code that ran too long.
DEVICE_TIMEOUT_S = 5.0


class SandboxSection(Section):
    exec_timeout_s: float = Field(10.0, gt=0, description="wall-clock limit for one execution")
    device_timeout_s: float | None = Field(None, gt=0, description="limit on one HTTP device call; shorter than "
                                                                   "exec_timeout_s; unset: 5 s, or half of "
                                                                   "exec_timeout_s if less")
    memory_mb: int = Field(512, ge=32, description="address-space limit of a job")
    cpu_s: int = Field(30, ge=1, description="CPU seconds a job may use over the whole task")
    output_limit_bytes: int = Field(1 << 20, ge=4096, description="a job printing more is killed")
    scratch_mb: int = Field(64, ge=1, le=4096, description="size of a job's scratch space (a tmpfs: it uses memory)")
    allow_weak: bool = Field(False, description="run model code even with neither a network namespace nor "
                                                "seccomp (not recommended)")
    job_uid: int = Field(64123, ge=1, le=2**31 - 2, description="as root, jobs run as this uid; use one nothing "
                                                                 "else uses")
    job_gid: int = Field(64123, ge=1, le=2**31 - 2)
    python: str = Field("", description="interpreter for jobs; empty: this one, or a system Python the job uid "
                                         "can read")

    @model_validator(mode="after")
    def _device_answers_first(self) -> SandboxSection:
        if self.device_timeout_s is not None and self.device_timeout_s >= self.exec_timeout_s:
            raise ValueError(f"device_timeout_s ({self.device_timeout_s:g}) must be shorter than exec_timeout_s "
                             f"({self.exec_timeout_s:g}), or a device that does not answer is blamed on the code; "
                             "lower device_timeout_s or raise exec_timeout_s")
        return self

    @property
    def device_timeout(self) -> float:
        if self.device_timeout_s is not None:
            return self.device_timeout_s
        return min(DEVICE_TIMEOUT_S, self.exec_timeout_s / 2)


class MqttSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    embedded: bool = Field(False, description="start the built-in broker (amqtt) on host:port")


class ApiSection(Section):
    host: str = Field("127.0.0.1", description="off loopback, the web page asks for the token once")
    port: int = Field(8321, ge=0, le=65535)
    names: list[str] = Field([], description="host names the API answers to besides its address and localhost "
                                             "(e.g. gateway.lan); any other Host header is refused")
    max_connections: int = Field(256, ge=8, le=65_536)
    max_event_streams: int = Field(64, ge=1, le=65_536)
    max_concurrent_tasks: int = Field(16, ge=1, le=256)
    max_queued_tasks: int = Field(64, ge=1, le=10_000)
    mqtt_intake: bool = Field(True, description="take tasks on pyuse/<id>/task and confirmations over MQTT")


class SttSection(Section):
    """Speech to text for /api/voice, through an OpenAI-compatible transcription endpoint."""

    base_url: str = Field("", description="empty: voice uploads are refused with a hint")
    model: str = "whisper-1"
    api_key: SecretStr = SecretStr("")
    language: str = Field("", description="ISO 639-1 hint such as en or zh; empty: detect")

    @property
    def configured(self) -> bool:
        return bool(self.base_url)


class PolicyRule(DangerRule):
    """A danger rule from the config, for the devices its selectors pick (all given selectors must match)."""

    device: str | None = None
    area: str | None = None
    kind: str | None = None


class PolicySection(Section):
    expose: list[str] = Field(["*"], description='device ids, "area:<area>", "kind:<kind>", or "*"')
    hide: list[str] = Field([], description="same forms as expose; wins over it")
    confirm_timeout_s: float = Field(30.0, gt=0, description="an unanswered confirmation is a denial; an "
                                     "unanswered question ends its task needing input")
    rate_limit_per_minute: int = Field(60, gt=0, description="calls per minute to one device (a doc may lower it)")
    rules: list[PolicyRule] = Field([], description="danger rules on top of the device docs'; checked first")


class DeviceEntry(Section):
    """A device declared in the config; without `kind`, overrides for a discovered device with this `id`."""

    name: str | None = Field(None, min_length=1, max_length=100)
    kind: str | None = Field(None, min_length=1, description="a device doc kind, e.g. shelly_switch")
    id: Slug | None = None
    area: str = ""
    aliases: list[str] = []
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    base_topic: str | None = None
    topics: list[str] = []
    serial_port: str | None = None
    baudrate: int = Field(9600, gt=0)
    exposed: bool = True

    @model_validator(mode="after")
    def _declared_or_override(self) -> DeviceEntry:
        if self.kind is not None and self.name is None:
            raise ValueError("a declared device needs a name (or leave out kind to override a discovered device)")
        if self.kind is None and self.id is None:
            raise ValueError("give kind and name to declare a device, or id to override a discovered one")
        return self

    @property
    def is_override(self) -> bool:
        return self.kind is None


class DiscoverySection(Section):
    mdns: bool = True
    mdns_interfaces: list[str] = Field(["127.0.0.1"], description="addresses of the interfaces to browse on")
    mdns_names: list[str] = Field(["*"], min_length=1, description="mDNS instance names to adopt, as shell "
                                  "patterns in any case (the demo adopts only its own simulators': '*-<suffix>')")
    mqtt: bool = True
    ha_prefix: str = Field("homeassistant", description="Home Assistant MQTT discovery prefix")
    zigbee2mqtt_topic: str = Field("zigbee2mqtt", description="the first Zigbee2MQTT bridge's base topic (bridges "
                                   "on other base topics are found by their bridge/info)")
    instruments: bool = Field(True, description="find SCPI instruments on the LAN by mDNS (_lxi._tcp, "
                              "_scpi-raw._tcp) and *IDN?")
    serial_ports: list[str] = Field([], description="ports probed with *IDN? (and the Korad form)")
    poll_s: float = Field(30.0, ge=0, description="read HTTP devices' state this often (0: only after calls)")
    areas: list[str] = Field([], description="area names to recognise at the start of device names")


class HomeAssistantSection(Section):
    """The gateway as a Home Assistant device over MQTT (gateway/api/homeassistant.py)."""

    discovery: bool = Field(False, description="announce a text entity for commands, sensors for the latest task "
                                               "and buttons to answer its confirmations by MQTT discovery")
    prefix: str = Field("", description="Home Assistant's discovery prefix; empty: [discovery] ha_prefix")

    @field_validator("prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^/#+]+(/[^/#+]+)*", value):
            raise ValueError("expected topic levels without + or #, and no empty level, such as homeassistant")
        return value


class SkillsSection(Section):
    auto_save: Literal["ask", "always", "never"] = Field(
        "ask", description="after the model solves a task: ask offers `pyuse skills save TASK`, always saves it")


class AutomationTrigger(Section):
    """Exactly one of mqtt, device, every, at; `when` filters mqtt and device triggers."""

    mqtt: str | None = Field(None, description="topic filter (+ and # allowed)")
    device: str | None = Field(None, description="a device id: runs when its state changes")
    every: str | None = Field(None, description="interval such as 30s, 5m, 2h, 1d")
    at: str | None = Field(None, description="daily at HH:MM, local time")
    when: str | None = Field(None, description="condition on the JSON payload or device state, e.g. occupancy == true")

    @model_validator(mode="after")
    def _one_kind(self) -> AutomationTrigger:
        kinds = [kind for kind in ("mqtt", "device", "every", "at") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a trigger has exactly one of mqtt, device, every, at; this one has "
                             f"{', '.join(kinds) or 'none'}")
        if self.when is not None and kinds[0] not in ("mqtt", "device"):
            raise ValueError("when applies to mqtt and device triggers only")
        if self.mqtt is not None and (not self.mqtt or any(
                ("#" in level and (level != "#" or index != len(self.mqtt.split("/")) - 1))
                or ("+" in level and level != "+") for index, level in enumerate(self.mqtt.split("/")))):
            raise ValueError(f"mqtt: {self.mqtt!r} is not a topic filter (+ stands for one level, # for the rest)")
        if self.every is not None:
            parse_interval(self.every)
        if self.at is not None:
            parse_time_of_day(self.at)
        return self

    @field_validator("when")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            Condition(value)
        return value

    def describe(self) -> str:
        kind = next(kind for kind in ("mqtt", "device", "every", "at") if getattr(self, kind) is not None)
        text = f"{kind} {getattr(self, kind)}"
        return text + (f" when {self.when}" if self.when else "")


class AutomationEntry(Section):
    """A trigger and an action: a natural-language task (compiled into a skill on its first run) or a skill."""

    name: Slug = Field(min_length=1, max_length=60)
    trigger: AutomationTrigger
    action: str = Field("", max_length=2000, description="a task in words")
    skill: str = Field("", description="a saved skill's name, run with args")
    args: dict[str, str | int | float | bool] = {}
    debounce_s: float = Field(0.0, ge=0, description="ignore triggers this soon after the last run started")
    max_concurrent: int = Field(1, ge=1, le=64, description="runs at once; triggers beyond are dropped")
    max_runs_per_minute: int = Field(60, ge=0, description="more is a loop: the automation is stopped; 0: no limit")
    timeout_s: float = Field(300.0, gt=0, description="limit on one run, its sleeps included (gateway clock)")
    enabled: bool = True

    @model_validator(mode="after")
    def _one_action(self) -> AutomationEntry:
        if bool(self.action.strip()) == bool(self.skill):
            raise ValueError("give either action (a task in words) or skill (a saved skill's name), not both")
        if self.args and not self.skill:
            raise ValueError("args go with skill; write them into the action's words instead")
        return self


class Config(Section):
    gateway: GatewaySection = GatewaySection()
    llm: LLMSection = LLMSection()
    agent: AgentSection = AgentSection()
    sandbox: SandboxSection = SandboxSection()
    mqtt: MqttSection = MqttSection()
    policy: PolicySection = PolicySection()
    discovery: DiscoverySection = DiscoverySection()
    homeassistant: HomeAssistantSection = HomeAssistantSection()
    api: ApiSection = ApiSection()
    stt: SttSection = SttSection()
    skills: SkillsSection = SkillsSection()
    devices: list[DeviceEntry] = []
    automations: list[AutomationEntry] = []
    # Problems worth a log line that do not stop the gateway (e.g. a config file others may read), for start-up.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self._warnings

    @model_validator(mode="after")
    def _unique_automations(self) -> Config:
        names = [entry.name for entry in self.automations]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"automation names must be unique; used twice: {', '.join(twice)}")
        return self

    @property
    def db_path(self) -> Path:
        return self.gateway.data_dir / "pyuse.db"
