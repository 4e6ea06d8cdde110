"""The HTTP API's request and response bodies: validated on the way in, documented in the OpenAPI spec."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # No inf or nan: 1e400 parses as inf (and NaN, Infinity are read too), and no number here means forever.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PromptRequest(Strict):
    text: str = Field(min_length=1, max_length=2000, description="the command, as a person would say it")
    devices: list[str] | None = Field(None, max_length=200, description="limit the task to these device ids")


class HelpText(Strict):
    text: str = Field(description="what works without a model on this home, as the demo's `help` prints it")
    examples: list[str] = Field(description="commands that work on the devices present, each taken without a model")


class PromptPreview(Strict):
    messages: list[dict[str, str]] = Field(description="what the model would be sent: role and content")
    estimate: int = Field(description="their size, in tokens (estimated)")
    listed: list[str] = Field(description="ids of the devices the prompt lists")
    omitted: int = Field(description="devices left out of the prompt, which the model can still search for")


class TaskRequest(PromptRequest):
    origin: Literal["api", "cli"] = Field("api", description="'cli' for `pyuse ask` sent through the daemon; "
                                                            "either way its confirmations are answered here")


class TaskCreated(Strict):
    id: str
    status: str
    events: str = Field(description="URL of the task's Server-Sent Events stream")


class Step(Strict):
    turn: int
    thought: str
    code: str | None
    observation: str | None
    llm_ms: float | None
    exec_ms: float | None
    prompt_tokens: int
    completion_tokens: int


class Call(Strict):
    device: str | None
    method: str
    target: str | None = Field(description="the path, topic or command it named")
    outcome: str = Field(description="ok | denied | invalid | error | cancelled")


class Task(Strict):
    id: str
    text: str
    origin: str
    status: str
    answer: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    turns: int
    tokens: int
    duration_ms: float | None
    sandbox_layers: list[str]
    processed_locally: bool = Field(description="done without a model: the fast path or a saved skill")
    steps: list[Step] | None = None
    calls: list[Call] | None = Field(None, description="the device calls the task made, in order: what its answer "
                                                       "stands on")


class TaskQuery(BaseModel):
    """The query of GET /api/tasks. Out of range is refused, not clamped: the client learns its mistake."""

    limit: int = Field(20, ge=1, le=200, description="how many tasks, newest first")
    offset: int = Field(0, ge=0, le=1_000_000_000, description="how many of the newest to skip")


class TaskPage(Strict):
    tasks: list[Task]
    offset: int
    limit: int


class Reading(Strict):
    label: str
    value: str


class DeviceControls(Strict):
    """What a tap on the device may do, as commands through the fast path ("turn off the …")."""

    switch: bool = Field(description="it can be turned on and off")
    is_on: bool | None = Field(description="whether it is on now; null when unknown")
    dimmable: bool = Field(description="its level can be set, 0..100 %")
    level: int | None = Field(description="its level now, in %; null when unknown")


class Device(Strict):
    id: str
    name: str
    kind: str
    transport: str
    area: str
    aliases: list[str]
    online: bool = Field(description="false when the device says so or stops answering, and for every MQTT device "
                                     "while the broker is unreachable")
    exposed: bool
    source: str
    state: dict[str, Any]
    state_keys: list[str] = Field(description="the state fields worth showing first, from the device's doc")
    display: list[Reading] = Field(description="those fields as people read them: power on, brightness 40 %")
    controls: DeviceControls


class Confirmation(Strict):
    id: str
    task_id: str
    origin: str = Field(description="where the task came from: api, web, voice, cli")
    device_id: str
    device_name: str
    action: str
    reason: str
    expires_at: float


class ConfirmationAnswer(Strict):
    approve: bool


class Answered(Strict):
    id: str
    approved: bool


class Question(Strict):
    id: str
    task_id: str
    origin: str = Field(description="where the task came from: api, web, voice, cli")
    question: str
    choices: list[str] = Field(description="the answers to pick from; empty: any answer")
    expires_at: float


class QuestionAnswer(Strict):
    answer: str = Field(min_length=1, max_length=2000, description="one of the choices (or its number, from 1)")


class QuestionAnswered(Strict):
    id: str
    answer: str = Field(description="the choice taken")


class Cancelled(Strict):
    id: str
    cancelled: bool


class Health(Strict):
    status: str
    gateway: str
    sandbox_layers: list[str]
    sandbox_refusal: str | None
    mqtt_broker: str | None = Field(description="host:port of the MQTT broker; null when the gateway uses none")
    mqtt_connected: bool
    mqtt_down_since: float | None = Field(description="when the broker became unreachable (Unix time); while "
                                                      "it is, every MQTT device is offline")
    model_configured: bool
    devices: int
    tasks_running: int
    tasks_queued: int


class Skill(Strict):
    name: str
    doc: str
    params: dict[str, str] = Field(description="parameter name -> int | float | str | bool")
    triggers: list[str] = Field(description="commands that run it without a model; {param} stands for a value")
    runs: int
    failures: int
    task_id: str | None = Field(description="the task it was saved from")
    last_error: str | None
    source: str | None = Field(None, description="the file (only for one skill)")


class SkillList(Strict):
    skills: list[Skill]
    errors: list[str] = Field(description="files in the skills folder that do not check out, and why")


class SkillSave(Strict):
    task_id: str = Field(min_length=1, max_length=64, description="a task the model solved")


class SkillRun(Strict):
    args: dict[str, str | int | float | bool] = {}


class Deleted(Strict):
    name: str
    deleted: bool


class Automation(Strict):
    name: str
    source: str = Field(description="config (the file) or api")
    enabled: bool
    stopped: str | None = Field(description="why it was stopped (resume it to run again); null while it runs")
    trigger: dict[str, str]
    describe: str
    action: str
    skill: str | None = Field(description="the skill it runs, given or compiled from its words")
    args: dict[str, str | int | float | bool]
    runs: int
    dropped: int = Field(description="triggers ignored: debounce, concurrency limit, or a full queue")
    running: int
    last_task: str | None
    last_status: str | None
    last_error: str | None


class AutomationList(Strict):
    automations: list[Automation]


class Fired(Strict):
    name: str
    started: bool


class SessionStart(Strict):
    token: str = Field(min_length=1, max_length=200, description="the API token (`pyuse token` prints it)")


class ApiError(Strict):
    code: str
    message: str


class ErrorBody(Strict):
    error: ApiError
