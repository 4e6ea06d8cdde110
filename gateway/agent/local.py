"""Running work that needs no model: a fast-path plan or a saved skill, as one traced step in the task's sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.agent.loop import new_calls, truncate
from gateway.sandbox.session import SandboxSession
from gateway.store import StepRecord, Store
from gateway.tasks import EventSink, Progress, TaskEvent

OBSERVATION_LIMIT = 4000


async def run_without_model(task_id: str, thought: str, code: str, answer: Callable[[Any], str],
                            session: SandboxSession, store: Store, progress: Progress, emit: EventSink) -> None:
    """Run `code` (which ends with final_answer(value)); `answer(value)` phrases the reply."""
    step = StepRecord(task_id=task_id, turn=1, thought=thought, code=code)
    store.add_step(step)
    emit(TaskEvent(task_id, "code", {"turn": 1, "thought": thought, "code": code, "local": True}))
    started = time.perf_counter()
    execution = await session.execute(code)
    step.exec_ms = round((time.perf_counter() - started) * 1000, 1)
    step.observation = truncate(execution.output.strip(), OBSERVATION_LIMIT)
    store.add_step(step)
    calls = new_calls(store, task_id, 0)
    emit(TaskEvent(task_id, "observation", {"turn": 1, "status": execution.status, "observation": step.observation,
                                            "calls": calls}))
    progress.turns, progress.processed_locally = 1, True
    progress.calls = sum(call["outcome"] == "ok" for call in calls)
    if execution.status == "final":
        progress.status, progress.answer = "done", answer(execution.answer)
        emit(TaskEvent(task_id, "answer", {"answer": progress.answer, "local": True}))
    else:
        last_line = (execution.output.strip().splitlines() or ["it ended without an answer"])[-1]
        progress.status, progress.error = "failed", last_line
