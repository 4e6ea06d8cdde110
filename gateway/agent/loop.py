"""task -> prompt -> model turn -> code -> sandbox -> observation -> ... -> answer.

Bounded by max turns and a token budget here; the task timeout and cancellation are applied by the caller
around `run`, and `progress` stays accurate whenever the run is interrupted. A model that runs the same code
again is told so; the same code failing a third time ends the task with its error, instead of burning turns.
Each observation event carries the device calls the code made, so a trace shows what an answer stands on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.agent.llm import Completion, LLMClient
from gateway.agent.parse import parse_reply
from gateway.agent.prompt import Prompt
from gateway.agent.retrieval import language_of, vocabulary
from gateway.agent.tokens import estimate_tokens
from gateway.config import AgentSection
from gateway.sandbox.session import SandboxSession
from gateway.store import StepRecord, Store

STOP = ["Observation:"]
EMPTY_REPLY = ("Your reply was empty. Write a thought and one ```python block, or FINAL ANSWER: followed by "
               "the answer.")
REPEATED_FAILURE = ("You ran this same code before and it failed the same way. Do not run it again: change it, "
                    "or call final_answer to say why it cannot be done.")
REPEATED_SUCCESS = "You ran this same code before. If the task is done, call final_answer(...) with the answer."
# Small models answer "The light is on." without doing anything: an answer must stand on a device read or call.
NOTHING_RAN = ("No device was read or called yet, so this answer stands on nothing. Write the ```python block "
               "that does the task with the device methods, and call final_answer in it. If no device can do it, "
               "say so with final_answer.")
FAILURES_TO_GIVE_UP = 3


@dataclass
class TaskEvent:
    task_id: str
    kind: str  # delta | retry | code | observation | answer
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[TaskEvent], None]


@dataclass
class Progress:
    """What a task has done so far; kept current so an interrupted run can still be recorded."""

    turns: int = 0
    calls: int = 0  # device calls that succeeded
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer: str | None = None
    status: str = "running"
    error: str | None = None
    processed_locally: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def new_calls(store: Store, task_id: str, seen: int) -> list[dict[str, Any]]:
    """The device calls of a task after the first `seen`, as a trace shows them."""
    return [{"device": row.device_id, "method": row.method, "target": row.target, "outcome": row.outcome}
            for row in store.audit_rows(task_id)[seen:]]


def with_refusals(answer: str, task: str, refused: dict[str, None]) -> str:
    """The answer, with a note naming the devices the broker refused a call to: however the model words its
    answer, the person learns that the gateway said no."""
    if not refused:
        return answer
    note = vocabulary()["answers"][language_of(task)]["refused"].format(devices=", ".join(refused))
    return f"{answer}\n{note}"


def same_code(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    tail = limit - head
    return f"{text[:head]}\n...[{len(text) - limit} characters truncated]...\n{text[-tail:]}"


class AgentLoop:
    def __init__(self, llm: LLMClient, store: Store, settings: AgentSection) -> None:
        self.llm = llm
        self.store = store
        self.settings = settings

    async def run(self, task_id: str, task: str, prompt: Prompt, session: SandboxSession, progress: Progress,
                  emit: EventSink) -> None:
        messages = list(prompt.messages)
        estimate = prompt.estimate  # kept up to date as messages are added, not recounted every turn
        runs: dict[str, int] = {}  # how often each code block ran, and failures of each
        failures: dict[str, int] = {}
        calls_seen = 0
        pushed_back = not prompt.listed and not prompt.omitted  # with no device to read, an answer is all there is
        touched = False  # some execution read or called a device
        refused: dict[str, None] = {}  # devices the broker refused a call to, in order
        for turn in range(1, self.settings.max_turns + 1):
            if progress.tokens + estimate > self.settings.max_tokens_per_task:
                progress.status = "failed"
                progress.error = (f"token budget exhausted: {progress.tokens} used, the next turn needs about "
                                  f"{estimate} and the budget is {self.settings.max_tokens_per_task} "
                                  "([agent] max_tokens_per_task)")
                return
            completion = await self.llm.complete(
                messages, stop=STOP,
                on_delta=lambda text: emit(TaskEvent(task_id, "delta", {"turn": turn, "text": text})),
                on_retry=lambda attempt, delay, why: emit(TaskEvent(
                    task_id, "retry", {"turn": turn, "attempt": attempt, "delay_s": round(delay, 1), "error": why})))
            progress.turns = turn
            progress.prompt_tokens += completion.prompt_tokens
            progress.completion_tokens += completion.completion_tokens
            reply = parse_reply(completion.text)
            step = StepRecord(task_id=task_id, turn=turn, thought=reply.thought, code=reply.code,
                              llm_ms=completion.duration_ms, prompt_tokens=completion.prompt_tokens,
                              completion_tokens=completion.completion_tokens, prompt_estimate=estimate)
            if reply.code is None:
                pushback = EMPTY_REPLY if not reply.answer else NOTHING_RAN if not touched and not pushed_back else None
                if pushback:
                    pushed_back = pushed_back or pushback is NOTHING_RAN
                    step.observation = pushback
                    self.store.add_step(step)
                    emit(TaskEvent(task_id, "observation", {"turn": turn, "status": "no code",
                                                            "observation": pushback, "calls": []}))
                    estimate = self._grown(estimate, completion, self._append(messages, completion.text,
                                                                              f"Observation: {pushback}"))
                    continue
                self.store.add_step(step)
                self._finish(task_id, progress, with_refusals(reply.answer, task, refused), emit)
                return
            self.store.add_step(step)  # before running: a crash mid-execution still shows what was running
            emit(TaskEvent(task_id, "code", {"turn": turn, "thought": reply.thought, "code": reply.code}))
            started = time.perf_counter()
            execution = await session.execute(reply.code)
            step.exec_ms = round((time.perf_counter() - started) * 1000, 1)
            calls = new_calls(self.store, task_id, calls_seen)
            calls_seen += len(calls)
            progress.calls += sum(call["outcome"] == "ok" for call in calls)
            refused.update(dict.fromkeys(call["device"] for call in calls if call["outcome"] == "denied"))
            touched = touched or execution.touched
            unfounded = execution.status == "final" and not touched and not pushed_back
            pushed_back = pushed_back or unfounded
            output = NOTHING_RAN if unfounded else execution.output.strip()
            if not output and execution.status != "final":
                output = "(no output: print what you want to see)"
            observation = truncate(output, self.settings.observation_limit_chars)
            key = same_code(reply.code)
            runs[key] = runs.get(key, 0) + 1
            failed = execution.status not in ("ok", "final")
            if failed:
                failures[key] = failures.get(key, 0) + 1
            if failed and failures[key] >= FAILURES_TO_GIVE_UP:
                last = (observation.splitlines() or ["it failed"])[-1]
                progress.status = "failed"
                progress.error = (f"could not {task.strip().rstrip('.')!r}: the same code failed {failures[key]} "
                                  f"times: {last}")
            elif runs[key] > 1 and execution.status != "final" and not unfounded:
                observation += "\n" + (REPEATED_FAILURE if failed else REPEATED_SUCCESS)
            step.observation = observation
            self.store.add_step(step)
            emit(TaskEvent(task_id, "observation", {"turn": turn, "status": execution.status,
                                                    "observation": observation, "calls": calls}))
            if progress.status == "failed":
                return
            if execution.status == "final" and not unfounded:
                self._finish(task_id, progress, with_refusals(execution.answer or "", task, refused), emit)
                return
            estimate = self._grown(estimate, completion, self._append(messages, reply.kept,
                                                                      f"Observation:\n{observation}"))
        progress.status = "failed"
        progress.error = (f"no final answer after {self.settings.max_turns} turns ([agent] max_turns); "
                          "see the trace with `pyuse tasks ID`")

    @staticmethod
    def _grown(estimate: int, completion: Completion, appended: int) -> int:
        """The next turn's prompt size: the server's own count of what it just read beats our estimate."""
        if completion.prompt_tokens:
            return completion.prompt_tokens + completion.completion_tokens + appended
        return estimate + appended

    @staticmethod
    def _append(messages: list[dict[str, str]], reply: str, observation: str) -> int:
        """Add a turn to the conversation; returns its token estimate."""
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
        return estimate_tokens(reply) + estimate_tokens(observation) + 8

    @staticmethod
    def _finish(task_id: str, progress: Progress, answer: str, emit: EventSink) -> None:
        progress.status = "done"
        progress.answer = answer
        emit(TaskEvent(task_id, "answer", {"answer": answer}))
