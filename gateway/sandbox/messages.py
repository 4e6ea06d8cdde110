"""Messages a job may send to the gateway. Everything from a job is untrusted: it is size-checked and
validated here, and anything else ends the job (never the gateway).

The gateway's side only: these models need pydantic, which a job cannot import, so the job writes the same
messages as plain JSON (jobside/channel.py and job.py) and holds its own copy of MAX_MESSAGE."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MAX_MESSAGE = 1 << 20


class CallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["call"]
    id: int = Field(ge=0)
    device: str = Field(max_length=200)
    method: str = Field(max_length=40)
    args: dict[str, Any]


class AskRequest(BaseModel):
    """The model's ask(): a question for the person the task came from, answered like a call."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["ask"]
    id: int = Field(ge=0)
    question: str = Field(min_length=1, max_length=2000)
    choices: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=20)


JobRequest = CallRequest | AskRequest  # what a job waits on an answer for


class DoneMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["done"]
    status: Literal["ok", "error", "final"]
    answer: str | None = Field(None, max_length=100_000)
    touched: bool = Field(False, description="the code read or called a device (the job's own word: only a hint)")


class ProbeReport(BaseModel):
    """Sent once by a probe job: each layer -> None when it took effect, else why not."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["probe"]
    layers: dict[str, str | None]


class JobFailed(BaseModel):
    """Sent by a job that could not apply a layer it was told to; it exits right after."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["failed"]
    reason: str = Field(max_length=2000)


JobMessage = CallRequest | AskRequest | DoneMessage | ProbeReport | JobFailed
_JOB_MESSAGE: TypeAdapter[JobMessage] = TypeAdapter(Annotated[JobMessage, Field(discriminator="op")])


def parse_job_message(data: bytes) -> JobMessage:
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of more than {MAX_MESSAGE} bytes")
    return _JOB_MESSAGE.validate_json(data)
