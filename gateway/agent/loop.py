"""task -> prompt -> model turn -> code -> sandbox -> observation -> ... -> answer.

Bounded by max turns and a token budget here; the task timeout and cancellation are applied by the caller
around `run`, and `progress` stays accurate whenever the run is interrupted. A model that runs the same code
again is told so; the same code failing a third time ends the task with its error, instead of burning turns.
Each observation event carries the device calls the code made, so a trace shows what an answer stands on.
What the code printed carries device replies: the model reads it inside an <observation> block, as data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.agent.llm import Completion, LLMClient
from gateway.agent.parse import parse_reply
from gateway.agent.prompt import Prompt, fence
from gateway.agent.retrieval import language_of, vocabulary
from gateway.agent.tokens import estimate_tokens
from gateway.config import AgentSection
from gateway.sandbox.session import Execution, SandboxSession
from gateway.store import StepRecord, Store
from gateway.tasks import EventSink, Progress, TaskEvent

STOP = ["Observation:"]
EMPTY_REPLY = ("Your reply held no code and no answer. Write a thought and one ```python block, or FINAL ANSWER: "
               "followed by the answer.")
REPEATED_FAILURE = ("You ran this same code before and it failed the same way. Do not run it again: change it, "
                    "or call final_answer to say why it cannot be done.")
REPEATED_SUCCESS = "You ran this same code before. If the task is done, call final_answer(...) with the answer."
NO_OUTPUT = "(no output: print what you want to see)"
# Small models answer "The light is on." without doing anything: an answer must stand on a device read or call.
NOTHING_RAN = ("No device was read or called yet, so this answer stands on nothing. Write the ```python block "
               "that does the task with the device methods, and call final_answer in it. If no device can do it, "
               "say so with final_answer.")
FAILURES_TO_GIVE_UP = 3


def new_calls(store: Store, task_id: str, seen: int) -> list[dict[str, Any]]:
    """The device calls of a task after the first `seen`, as a trace shows them."""
    return [{"device": row.device_id, "method": row.method, "target": row.target, "outcome": row.outcome}
            for row in store.audit_rows(task_id)[seen:]]


@dataclass
class Judgement:
    """What the loop remembers across a task's turns to judge the next reply: runs and failures of each piece of
    code, whether any device was read or called, and what the broker refused."""

    task: str
    pushed_back: bool  # an answer was already sent back once (or there is no device to stand on)
    touched: bool = False
    calls_seen: int = 0
    refused: dict[str, None] = field(default_factory=dict)  # devices, in order
    runs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def unfounded(self) -> bool:
        """True once for an answer that stands on no device read or call: it is sent back."""
        if self.touched or self.pushed_back:
            return False
        self.pushed_back = True
        return True

    def note_calls(self, calls: list[dict[str, Any]]) -> None:
        self.calls_seen += len(calls)
        self.refused.update(dict.fromkeys(call["device"] for call in calls if call["outcome"] == "denied"))

    def note_run(self, code: str, failed: bool) -> tuple[int, int]:
        """Count a run of this code; (times it ran, times it failed)."""
        key = "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())
        self.runs[key] = self.runs.get(key, 0) + 1
        self.failures[key] = self.failures.get(key, 0) + failed
        return self.runs[key], self.failures[key]

    def answer(self, text: str) -> str:
        """The answer, with a note naming the devices the broker refused a call to: however the model words its
        answer, the person learns that the gateway said no."""
        if not self.refused:
            return text
        note = vocabulary()["answers"][language_of(self.task)]["refused"].format(devices=", ".join(self.refused))
        return f"{text}\n{note}"


def observation_message(output: str, note: str) -> str:
    """The turn the model reads after its code ran: the output fenced as data, then the gateway's own note."""
    return "\n".join(["Observation:", *([fence(output)] if output else []), *([note] if note else [])])


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
        # With no device in scope there is nothing an answer could stand on: it is taken as it comes.
        judge = Judgement(task, pushed_back=not prompt.listed and not prompt.omitted)
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
                    task_id, "retry", {"turn": turn, "attempt": attempt, "of": self.llm.settings.max_retries,
                                       "delay_s": round(delay, 1), "error": why})))
            progress.turns = turn
            progress.prompt_tokens += completion.prompt_tokens
            progress.completion_tokens += completion.completion_tokens
            reply = parse_reply(completion.text)
            step = StepRecord(task_id=task_id, turn=turn, thought=reply.thought, code=reply.code,
                              llm_ms=completion.duration_ms, prompt_tokens=completion.prompt_tokens,
                              completion_tokens=completion.completion_tokens, prompt_estimate=estimate)
            if reply.code is None:
                if reply.answer and not judge.unfounded():
                    self.store.add_step(step)
                    self._finish(task_id, progress, judge.answer(reply.answer), emit)
                    return
                pushback = NOTHING_RAN if reply.answer else EMPTY_REPLY
                self._observed(step, pushback, "no code", [], emit)
                estimate = self._grown(estimate, completion, self._append(messages, completion.text,
                                                                          f"Observation: {pushback}"))
                continue
            self.store.add_step(step)  # before running: a crash mid-execution still shows what was running
            emit(TaskEvent(task_id, "code", {"turn": turn, "thought": reply.thought, "code": reply.code}))
            started = time.perf_counter()
            execution = await session.execute(reply.code)
            step.exec_ms = round((time.perf_counter() - started) * 1000, 1)
            calls = new_calls(self.store, task_id, judge.calls_seen)
            judge.note_calls(calls)
            progress.calls += sum(call["outcome"] == "ok" for call in calls)
            judge.touched = judge.touched or execution.touched
            answered = execution.status == "final" and not judge.unfounded()
            output, note = self._observation(execution, reply.code, answered, judge, progress)
            self._observed(step, "\n".join(part for part in (output, note) if part), execution.status, calls, emit)
            if progress.status == "failed":
                return
            if answered:
                self._finish(task_id, progress, judge.answer(execution.answer or ""), emit)
                return
            estimate = self._grown(estimate, completion, self._append(messages, reply.kept,
                                                                      observation_message(output, note)))
        progress.status = "failed"
        progress.error = (f"no final answer after {self.settings.max_turns} turns ([agent] max_turns); "
                          "see the trace with `pyuse tasks ID`")

    def _observation(self, execution: Execution, code: str, answered: bool, judge: Judgement,
                     progress: Progress) -> tuple[str, str]:
        """What the model is told of an execution: what the job printed (device text among it) and the gateway's
        note on it; a third failure of the same code ends the task instead."""
        if execution.status == "final" and not answered:
            return "", NOTHING_RAN
        output = truncate(execution.output.strip(), self.settings.observation_limit_chars)
        note = "" if output or answered else NO_OUTPUT
        failed = execution.status not in ("ok", "final")
        runs, failures = judge.note_run(code, failed)
        if failures >= FAILURES_TO_GIVE_UP:
            last = (output.splitlines() or ["it failed"])[-1]
            progress.status = "failed"
            progress.error = (f"could not {judge.task.strip().rstrip('.')!r}: the same code failed {failures} "
                              f"times: {last}")
        elif runs > 1 and not answered:
            note = "\n".join(part for part in (note, REPEATED_FAILURE if failed else REPEATED_SUCCESS) if part)
        return output, note

    def _observed(self, step: StepRecord, observation: str, status: str, calls: list[dict[str, Any]],
                  emit: EventSink) -> None:
        step.observation = observation
        self.store.add_step(step)
        emit(TaskEvent(step.task_id, "observation", {"turn": step.turn, "status": status,
                                                     "observation": observation, "calls": calls}))

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
