"""Running a fast-path plan: the doc's template as code in the task's sandbox, no model call, one traced step."""

from __future__ import annotations

import time

from gateway.agent.intents import LocalPlan
from gateway.agent.loop import EventSink, Progress, TaskEvent, truncate
from gateway.sandbox.session import SandboxSession
from gateway.store import StepRecord, Store

OBSERVATION_LIMIT = 4000


async def run_locally(task_id: str, plan: LocalPlan, session: SandboxSession, store: Store, progress: Progress,
                      emit: EventSink) -> None:
    thought = f"Handled locally, without a model: {plan.action} on {plan.device.id}."
    step = StepRecord(task_id=task_id, turn=1, thought=thought, code=plan.code)
    store.add_step(step)
    emit(TaskEvent(task_id, "code", {"turn": 1, "thought": thought, "code": plan.code, "local": True}))
    started = time.perf_counter()
    execution = await session.execute(plan.code)
    step.exec_ms = round((time.perf_counter() - started) * 1000, 1)
    step.observation = truncate(execution.output.strip(), OBSERVATION_LIMIT)
    store.add_step(step)
    emit(TaskEvent(task_id, "observation", {"turn": 1, "status": execution.status, "observation": step.observation}))
    progress.turns, progress.processed_locally = 1, True
    if execution.status in ("ok", "final"):
        progress.status = "done"
        progress.answer = plan.answer(execution.answer)
        emit(TaskEvent(task_id, "answer", {"answer": progress.answer, "local": True}))
    else:
        last_line = (execution.output.strip().splitlines() or ["the device call failed"])[-1]
        progress.status, progress.error = "failed", f"{plan.device.name}: {last_line}"
