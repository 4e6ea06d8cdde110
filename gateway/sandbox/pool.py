"""Warm sandbox jobs, kept between the runs of tasks from one origin (an automation's skill runs): their code and
devices do not change from one run to the next, and a fork with its namespaces costs more than most runs.

Each run gives the job a fresh JobContext (its task, the person to ask), so nothing of one run's context leaks
into the next. A run takes an idle job. When every job is out on a run, one more is started at once, and then no other for a
moment: runs that trigger meanwhile wait for whichever job comes back first. A burst of triggers that each
forked a job of its own would spend the CPU on forks and network namespaces instead of runs, and slow every
run down; a pool that grows by at most one job per START_EVERY_S still serves long-running actions side by
side. A job serves a limited time and number of runs (so its CPU-time limit is never reached and devices are
read afresh), then is closed in the background.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.sandbox.broker import JobContext
from gateway.sandbox.session import SandboxSession

WarmStart = Callable[[], "WarmJob"]

REUSE_S = 60.0  # a job serves runs for this long (real seconds) ...
REUSE_RUNS = 500  # ... or this many runs
START_EVERY_S = 0.05  # while jobs are busy, start no more than one new job this often


@dataclass
class WarmJob:
    session: SandboxSession
    context: JobContext | None = None  # the current run's; its calls are checked and audited under it
    started: float = field(default_factory=time.monotonic)
    runs: int = 0

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.started < REUSE_S and self.runs < REUSE_RUNS


class WarmJobs:
    def __init__(self) -> None:
        self._idle: list[WarmJob] = []
        self._waiting: deque[asyncio.Future[WarmJob]] = deque()
        self._busy = 0
        self._last_start = float("-inf")
        self._closing: set[asyncio.Task[None]] = set()

    async def take(self, start: WarmStart) -> WarmJob:
        """An idle job, else one given back by a run, else a new one from `start` (at most one every
        START_EVERY_S while other jobs are busy: those usually come back sooner than a new job is ready)."""
        while True:
            while self._idle:
                job = self._idle.pop()
                if job.fresh:
                    self._busy += 1
                    return job
                self._retire(job)
            wait = self._last_start + START_EVERY_S - time.monotonic()
            if not self._busy or wait <= 0:
                self._last_start = time.monotonic()
                self._busy += 1
                return start()
            handed = await self._wait_for_one(wait)
            if handed is not None:
                return handed  # from one run to the next: still busy

    async def _wait_for_one(self, timeout: float) -> WarmJob | None:
        waiter: asyncio.Future[WarmJob] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait([waiter], timeout=timeout)
        except asyncio.CancelledError:
            if waiter.done():
                self.give_back(waiter.result(), ran=False)  # handed over just as this run was cancelled
            else:
                waiter.cancel()
                self._waiting.remove(waiter)
            raise
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        self._waiting.remove(waiter)
        return None

    def give_back(self, job: WarmJob, ran: bool = True) -> None:
        """After a run: to the run waiting longest, else idle; retired when it has served long enough."""
        job.runs += ran
        if not job.fresh:
            self.discard(job)
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(job)
                return
        self._busy -= 1
        self._idle.append(job)

    def discard(self, job: WarmJob) -> None:
        """A job not to be used again (its run failed or was cancelled, or it served long enough)."""
        self._busy -= 1
        self._retire(job)

    async def close(self) -> None:
        while self._idle:
            self._retire(self._idle.pop())
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _retire(self, job: WarmJob) -> None:
        closing = asyncio.create_task(job.session.close(), name="warm-job-close")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)


class SandboxPool:
    """Warm jobs by key (a task's origin): each key's jobs serve only its runs."""

    def __init__(self) -> None:
        self._jobs: dict[str, WarmJobs] = {}

    async def take(self, key: str, start: WarmStart) -> WarmJob:
        return await self._jobs.setdefault(key, WarmJobs()).take(start)

    def give_back(self, key: str, job: WarmJob) -> None:
        self._jobs[key].give_back(job)

    def discard(self, key: str, job: WarmJob) -> None:
        self._jobs[key].discard(job)

    async def close(self, key: str | None = None) -> None:
        """Close one key's idle jobs (those out on a run close when given back), or every key's."""
        pools = list(self._jobs.values()) if key is None else [self._jobs[key]] if key in self._jobs else []
        await asyncio.gather(*(jobs.close() for jobs in pools))
