"""Waiting for the person a task came from: one mechanism for a dangerous call's yes or no (confirmations.py)
and for a question ("which one: the ceiling light or the reading lamp?"), asked through the task's own channel.

A request waits in `pending` under an unguessable id, the only handle on it from outside, until its asker (the
terminal) or an answer by id from the task's own channel (the API, MQTT) settles it, or its time runs out.
Listeners hear "asked" and "resolved", so the channels can put the request out.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, NoReturn, Protocol, TypeVar

from gateway.errors import GatewayError
from gateway.listeners import Listeners

# Which channel may answer for a task of each origin; others are answered by their own asker only (the terminal),
# and an automation has nobody to ask. A "cli" task in the daemon came from `pyuse ask` through the API, which asks
# at its terminal and answers through the API; one in the CLI's own gateway asks directly.
ANSWER_CHANNELS = {"api": "api", "cli": "api", "voice": "api", "web": "api", "mqtt": "mqtt",
                   "homeassistant": "homeassistant"}


class Request(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def origin(self) -> str: ...


RequestT = TypeVar("RequestT", bound=Request)
AnswerT = TypeVar("AnswerT")


async def answered_elsewhere(request: object) -> NoReturn:
    """The asker of a task from the API, the web page or MQTT: the request goes out as an event, and the answer
    arrives by id (the API, the MQTT reply topic); until then, this waits."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Waiting(Generic[RequestT, AnswerT]):
    """Requests waiting for a person: asked through the task's own channel, answerable by id through it only."""

    def __init__(self, timeout_s: float, name: str) -> None:
        self.timeout_s = timeout_s
        self.pending: dict[str, tuple[RequestT, asyncio.Future[AnswerT]]] = {}
        # ("asked"|"resolved", request, answer); a broken channel must not decide the request
        self.listeners: Listeners[str, RequestT, AnswerT | None] = Listeners(name)

    async def wait(self, request: RequestT, asker: Callable[[RequestT], Awaitable[AnswerT]]) -> AnswerT:
        """The answer; raises TimeoutError when none came in time."""
        answer: asyncio.Future[AnswerT] = asyncio.get_running_loop().create_future()
        self.pending[request.id] = (request, answer)
        self.listeners("asked", request, None)
        asking = asyncio.ensure_future(asker(request))
        asking.add_done_callback(lambda done: self.settle(request.id, done.result())
                                 if not done.cancelled() and done.exception() is None else None)
        settled: AnswerT | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                result = settled = await asyncio.shield(answer)
            return result
        finally:
            self.pending.pop(request.id, None)
            asking.cancel()
            self.listeners("resolved", request, settled)

    def settle(self, request_id: str, answer: AnswerT, channel: str | None = None) -> bool:
        """Answer a pending request. A `channel` ("api", "mqtt") may only answer tasks that came through it."""
        entry = self.pending.get(request_id)
        if entry is None or entry[1].done():
            return False
        if channel is not None and ANSWER_CHANNELS.get(entry[0].origin) != channel:
            return False
        entry[1].set_result(answer)
        return True


@dataclass
class Question:
    id: str
    task_id: str
    origin: str
    question: str
    choices: list[str] = field(default_factory=list)  # empty: any answer
    expires_at: float = 0.0

    def pick(self, answer: str) -> str | None:
        """The answer as given, or the choice it names (its text in any case, or its number); None when it
        names none of them."""
        answer = answer.strip()
        if not self.choices:
            return answer or None
        named = next((choice for choice in self.choices if choice.casefold() == answer.casefold()), None)
        if named is None and answer.isdigit() and 1 <= int(answer) <= len(self.choices):
            return self.choices[int(answer) - 1]
        return named


Asker = Callable[[Question], Awaitable[str]]
QuestionListener = Callable[[str, Question, str | None], None]  # ("asked"|"resolved", question, answer)


class NoAnswer(GatewayError):
    """Nobody can be asked, or nobody answered in time: the task ends needing input, the question its answer."""

    def __init__(self, question: str, why: str) -> None:
        super().__init__(question)
        self.question = question
        self.why = why


class Questions(Waiting[Question, str]):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s, "question")

    async def ask(self, task_id: str, origin: str, question: str, choices: list[str] | None,
                  asker: Asker | None) -> str:
        """The person's answer (one of `choices` when there are any); raises NoAnswer."""
        if asker is None:
            raise NoAnswer(question, "nobody can be asked from where this task came from")
        request = Question(secrets.token_urlsafe(16), task_id, origin, question, list(choices or []),
                           time.time() + self.timeout_s)
        try:
            answer = await self.wait(request, asker)
        except TimeoutError:
            raise NoAnswer(question, f"no answer within {self.timeout_s:g} s") from None
        picked = request.pick(answer)
        if picked is None:
            raise NoAnswer(question, f"the answer {answer!r} is none of the choices" if answer.strip()
                           else "no answer was given")
        return picked

    def answer(self, question_id: str, answer: str, channel: str | None = None) -> str | None:
        """The answer taken (the choice it names), or None when no question of that id waits for `channel`;
        raises ValueError for an answer that is none of its choices."""
        entry = self.pending.get(question_id)
        if entry is None or (channel is not None and ANSWER_CHANNELS.get(entry[0].origin) != channel):
            return None
        picked = entry[0].pick(answer)
        if picked is None:
            raise ValueError(f"answer one of: {', '.join(entry[0].choices)}" if entry[0].choices
                             else "the answer is empty")
        return picked if self.settle(question_id, picked, channel) else None
