"""What the store remembers of tasks, as the task pages (the API, `pyuse tasks`) show it: the recent ones, one
task by its id or a unique prefix, and its trace (the steps and the device calls). For the daemon's runner, also
a task queued before it runs, and an end that no run recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.store import AuditRecord, StepRecord, Store, TaskRecord
from gateway.tasks import Status

__all__ = ["AuditRecord", "StepRecord", "TaskHistory", "TaskRecord", "TaskTrace", "history_at"]


@dataclass
class TaskTrace:
    task: TaskRecord
    steps: list[StepRecord]
    calls: list[AuditRecord]


class TaskHistory:
    def __init__(self, store: Store) -> None:
        self.store = store

    def recent(self, limit: int = 20, offset: int = 0) -> list[TaskRecord]:
        """Newest first."""
        return self.store.list_tasks(limit=limit, offset=offset)

    def get(self, task_id: str) -> TaskRecord | None:
        """By its id or a unique prefix of one; None for none, or a prefix of several."""
        return self.store.get_task(task_id)

    def trace(self, task_id: str) -> TaskTrace | None:
        task = self.get(task_id)
        if task is None:
            return None
        return TaskTrace(task, self.store.steps(task.id), self.store.audit_rows(task.id))

    def queue(self, text: str, origin: str) -> TaskRecord:
        """A task waiting for its turn; Gateway.run_task records the rest when it runs."""
        return self.store.create_task(text, origin)

    def unfinished(self) -> list[str]:
        """The ids of tasks whose end is not recorded: queued or running."""
        return self.store.unfinished_task_ids()

    def end(self, task_id: str, status: Status, error: str) -> None:
        """Record the end of a task that never ran to one: cancelled while queued, or left by its worker."""
        self.store.update_task(task_id, status=status, error=error, finished_at=time.time())


@contextmanager
def history_at(db_path: Path) -> Iterator[TaskHistory | None]:
    """The history kept at `db_path`, for a one-shot command with no gateway of its own; None when there is no
    store there yet."""
    if not db_path.exists():
        yield None
        return
    store = Store(db_path)
    try:
        yield TaskHistory(store)
    finally:
        store.close()
