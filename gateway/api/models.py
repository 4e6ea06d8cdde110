"""The HTTP API's request and response bodies: validated on the way in, documented in the OpenAPI spec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskRequest(Strict):
    text: str = Field(min_length=1, max_length=2000, description="the command, as a person would say it")
    devices: list[str] | None = Field(None, max_length=200, description="limit the task to these device ids")


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
    steps: list[Step] | None = None


class TaskPage(Strict):
    tasks: list[Task]
    offset: int
    limit: int


class Device(Strict):
    id: str
    name: str
    kind: str
    transport: str
    area: str
    aliases: list[str]
    online: bool
    exposed: bool
    source: str
    state: dict[str, Any]
    state_keys: list[str] = Field(description="the state fields worth showing first, from the device's doc")


class Confirmation(Strict):
    id: str
    task_id: str
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


class Cancelled(Strict):
    id: str
    cancelled: bool


class Health(Strict):
    status: str
    gateway: str
    sandbox_layers: list[str]
    sandbox_refusal: str | None
    mqtt_connected: bool
    model_configured: bool
    devices: int
    tasks_running: int
    tasks_queued: int


class ApiError(Strict):
    code: str
    message: str


class ErrorBody(Strict):
    error: ApiError
