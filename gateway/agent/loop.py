"""task -> prompt -> model turn -> code -> sandbox -> observation -> ... -> answer.

Bounded by max turns and a token budget here; the task timeout and cancellation are applied by the caller
around `run`, and `progress` stays accurate whenever the run is interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.agent.llm import LLMClient
from gateway.agent.parse import parse_reply
from gateway.agent.prompt import Prompt
from gateway.agent.tokens import estimate_tokens
from gateway.config import AgentSection
from gateway.sandbox.session import SandboxSession
from gateway.store import StepRecord, Store

STOP = ["Observation:"]
EMPTY_REPLY = ("Your reply was empty. Write a thought and one ```python block, or FINAL ANSWER: followed by "
               "the answer.")


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
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer: str | None = None
    status: str = "running"
    error: str | None = None
    processed_locally: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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

    async def run(self, task_id: str, prompt: Prompt, session: SandboxSession, progress: Progress,
                  emit: EventSink) -> None:
        messages = list(prompt.messages)
        estimate = prompt.estimate  # kept up to date as messages are added, not recounted every turn
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
                if not reply.answer:
                    step.observation = EMPTY_REPLY
                    self.store.add_step(step)
                    estimate += self._append(messages, completion.text, f"Observation: {EMPTY_REPLY}")
                    continue
                self.store.add_step(step)
                self._finish(task_id, progress, reply.answer, emit)
                return
            self.store.add_step(step)  # before running: a crash mid-execution still shows what was running
            emit(TaskEvent(task_id, "code", {"turn": turn, "thought": reply.thought, "code": reply.code}))
            started = time.perf_counter()
            execution = await session.execute(reply.code)
            step.exec_ms = round((time.perf_counter() - started) * 1000, 1)
            output = execution.output.strip()
            if not output and execution.status != "final":
                output = "(no output: print what you want to see)"
            observation = truncate(output, self.settings.observation_limit_chars)
            step.observation = observation
            self.store.add_step(step)
            emit(TaskEvent(task_id, "observation", {"turn": turn, "status": execution.status,
                                                    "observation": observation}))
            if execution.status == "final":
                self._finish(task_id, progress, execution.answer or "", emit)
                return
            estimate += self._append(messages, reply.kept, f"Observation:\n{observation}")
        progress.status = "failed"
        progress.error = (f"no final answer after {self.settings.max_turns} turns ([agent] max_turns); "
                          "see the trace with `pyuse tasks ID`")

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
