"""The words of a task, shared by the gateway, the agent loop and every intake: where a task came from, what it
is doing, the events it sends while it runs, how it ended, and how to run it beyond its command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NewType

from gateway.errors import GatewayError

ERROR_LIMIT = 500  # characters of an unexpected exception's message kept as a task's error

Intake = Literal["cli", "api", "web", "voice", "mqtt", "homeassistant", "exec", "demo"]
AutomationOrigin = NewType("AutomationOrigin", str)  # "automation:<name>": the runs of one automation
Origin = Intake | AutomationOrigin
AUTOMATION_PREFIX = "automation:"

# queued → running → one of the ends; "interrupted" is given at start-up to tasks a restart cut off;
# "needs_input": a question nobody could answer (its answer is the question).
Status = Literal["queued", "running", "done", "failed", "timeout", "cancelled", "interrupted", "needs_input"]
EventKind = Literal["queued", "started", "delta", "retry", "code", "observation", "answer", "confirmation",
                    "question", "finished"]


def automation_origin(name: str) -> AutomationOrigin:
    return AutomationOrigin(AUTOMATION_PREFIX + name)


@dataclass
class TaskEvent:
    task_id: str
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[TaskEvent], None]


def ignore_events(event: TaskEvent) -> None:
    pass


@dataclass
class Progress:
    """What a task has done so far; kept current so an interrupted run can still be recorded."""

    turns: int = 0
    calls: int = 0  # device calls that succeeded
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer: str | None = None
    status: Status = "running"
    error: str | None = None
    processed_locally: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TaskResult:
    task_id: str
    status: Status
    answer: str | None
    error: str | None
    turns: int
    tokens: int
    duration_ms: float
    processed_locally: bool = False
    skill: str | None = None  # the saved skill that ran, or the one saved from this task
    calls: int = 0  # device calls that succeeded: what the answer stands on

    def summary(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "status": self.status, "answer": self.answer, "turns": self.turns,
                "tokens": self.tokens, "calls": self.calls, "duration_ms": self.duration_ms}


@dataclass
class ModelFree:
    """Work that needs no model: a fast-path match or a saved skill, as code and a way to phrase its result."""

    thought: str
    code: str
    answer: Callable[[Any], str]
    skill: str | None = None


@dataclass
class TaskOptions:
    """How a task runs beyond its command: for skills run by name and for automations."""

    work: ModelFree | None = None  # run this instead of planning
    plan: bool = True  # try saved skills and the fast path before the model
    warm: bool = False  # run in a warm job kept for this origin's tasks, and give it back afterwards
    timeout_s: float | None = None  # replaces [agent] task_timeout_s and [sandbox] exec_timeout_s
    save_skill: bool | None = None  # replaces [skills] auto_save for a task the model solves
    replaces_skill: str | None = None  # the skill a newly saved one supersedes


class SkillArgumentError(GatewayError, ValueError):
    """Arguments that do not fit a skill's parameters; the message names the parameter."""


def unexpected(exc: BaseException) -> str:
    """A one-line reason for an exception nobody planned for: its type and message, capped."""
    message = " ".join(str(exc).split())
    reason = f"unexpected {type(exc).__name__}" + (f": {message}" if message else "")
    return reason if len(reason) <= ERROR_LIMIT else reason[:ERROR_LIMIT - 1] + "…"
