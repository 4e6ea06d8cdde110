"""Runs many tasks at once for the daemon: a bounded queue, a concurrency limit, cancellation, and each task's
events kept so that a subscriber who arrives late (a browser opening the trace, an MQTT listener) sees them all.
A watchdog ends, as failed, any of its tasks the store still calls queued or running after its worker is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.app import Gateway
from gateway.devices.model import Device
from gateway.errors import GatewayError
from gateway.listeners import Listeners
from gateway.policy import Confirmer
from gateway.questions import Asker
from gateway.tasks import EventKind, TaskEvent, TaskOptions, TaskResult

log = logging.getLogger(__name__)

FINAL: EventKind = "finished"
KEEP_FINISHED = 500  # finished tasks whose events stay in memory for late subscribers; the store has the rest
WATCHDOG_S = 30.0  # how often the watchdog looks for tasks without a worker
ORPHANED = "its runner stopped without an end"


class Busy(GatewayError):
    """The queue is full; try again later."""


@dataclass
class RunningTask:
    id: str
    text: str
    origin: str
    devices: list[Device] | None  # its scope, resolved when it was submitted; None: every exposed device
    confirm: Confirmer | None
    options: TaskOptions | None = None
    ask: Asker | None = None
    events: list[TaskEvent] = field(default_factory=list)
    result: TaskResult | None = None
    worker: asyncio.Task[TaskResult] | None = None
    _followers: set[asyncio.Queue[TaskEvent]] = field(default_factory=set)

    def emit(self, event: TaskEvent) -> None:
        if event.kind != "delta":  # streamed text matters live only; the steps keep what was said
            self.events.append(event)
        for queue in self._followers:
            queue.put_nowait(event)

    async def follow(self) -> AsyncIterator[TaskEvent]:
        """Every event so far, then each new one, until the task has finished."""
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue()
        backlog = list(self.events)
        self._followers.add(queue)  # no await since the snapshot: nothing can slip between the two
        try:
            for event in backlog:
                yield event
                if event.kind == FINAL:
                    return
            while True:
                event = await queue.get()
                yield event
                if event.kind == FINAL:
                    return
        finally:
            self._followers.discard(queue)




class TaskRunner:
    def __init__(self, gateway: Gateway, max_concurrent: int = 16, max_queued: int = 64) -> None:
        self.gateway = gateway
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_concurrent)
        self.tasks: dict[str, RunningTask] = {}
        self.listeners: Listeners[RunningTask, TaskEvent] = Listeners("task event")
        self._waiting = 0
        self._finished: deque[str] = deque()
        self._watchdog: asyncio.Task[None] | None = None

    def start_watchdog(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name="task-watchdog")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_S)
            try:
                self.end_orphans()
            except Exception:  # a store hiccup: the next round tries again
                log.exception("the task watchdog failed")

    def end_orphans(self) -> list[str]:
        """Mark failed each of this runner's tasks whose worker is gone while the store still calls it queued or
        running: the worker died without recording an end. Tasks run elsewhere are left alone."""
        gone = {task.id for task in self.tasks.values() if task.worker is not None and task.worker.done()}
        orphans = [task_id for task_id in self.gateway.history.unfinished() if task_id in gone]
        for task_id in orphans:
            self.gateway.history.end(task_id, "failed", ORPHANED)
            log.warning("task %s failed: %s", task_id, ORPHANED)
        return orphans

    def submit(self, text: str, origin: str, devices: list[Device] | None = None,
               confirm: Confirmer | None = None, options: TaskOptions | None = None,
               ask: Asker | None = None) -> RunningTask:
        """Queue a command limited to `devices` (resolved by Gateway.scope; None: every exposed device when it
        starts); raises Busy when too many are waiting already."""
        if self._waiting >= self.max_queued:
            raise Busy(f"{self._waiting} tasks are already waiting; try again shortly")
        record = self.gateway.history.queue(text, origin)
        task = RunningTask(record.id, text, origin, devices, confirm, options, ask=ask)
        self.tasks[task.id] = task
        self._waiting += 1
        self.emit(task, TaskEvent(task.id, "queued", {"text": text, "origin": origin}))
        task.worker = asyncio.create_task(self._run(task), name=f"task-{task.id}")
        return task

    async def _run(self, task: RunningTask) -> TaskResult:
        try:
            async with self._slots:
                self._waiting -= 1
                self.emit(task, TaskEvent(task.id, "started", {}))
                task.result = await self.gateway.run_task(
                    task.text, task.origin, on_event=lambda event: self.emit(task, event), confirm=task.confirm,
                    task_id=task.id, options=task.options, devices=task.devices, ask=task.ask)
        except asyncio.CancelledError:
            record = self.gateway.task(task.id)
            task.result = TaskResult(task.id, "cancelled", None, "cancelled", record.turns if record else 0,
                                     record.tokens if record else 0, 0.0)
            if record is not None and record.status == "queued":
                self.gateway.history.end(task.id, "cancelled", "cancelled")
                self._waiting -= 1
        finally:
            self.emit(task, TaskEvent(task.id, FINAL, task.result.summary() | {
                "error": task.result.error, "processed_locally": task.result.processed_locally}
                if task.result else {"status": "failed"}))
            self._forget_old(task.id)
        return task.result

    def _forget_old(self, finished_id: str) -> None:
        """A daemon runs for months: only the latest finished tasks keep their events in memory."""
        self._finished.append(finished_id)
        while len(self._finished) > KEEP_FINISHED:
            self.tasks.pop(self._finished.popleft(), None)

    def emit(self, task: RunningTask, event: TaskEvent) -> None:
        task.emit(event)
        self.listeners(task, event)  # a broken listener is logged: it must not break the task

    def cancel(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None or task.worker is None or task.worker.done():
            return False
        task.worker.cancel()
        return True

    async def wait(self, task_id: str) -> TaskResult:
        task = self.tasks[task_id]
        assert task.worker is not None
        return await asyncio.shield(task.worker)

    async def close(self) -> None:
        """Cancel everything still running or queued; each is marked cancelled in the store."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        workers = [task.worker for task in self.tasks.values() if task.worker and not task.worker.done()]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        running = sum(1 for task in self.tasks.values() if task.worker and not task.worker.done())
        return {"running": running - self._waiting, "queued": self._waiting}
