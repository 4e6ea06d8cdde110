"""One task's sandbox session: a job (one Python namespace) kept across the task's turns.

When a job dies (timeout, output flood, CPU or memory limit, a crash), the observation says why and that its
variables are lost; the next execution transparently starts a fresh job. The rest of the gateway speaks to
the sandbox through this module and manager.py: the names it needs are exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.sandbox.job_process import CallHandler, Execution, Inventory, JobLimits, JobProcess
from gateway.sandbox.zygote_client import SandboxError, ZygoteProcess

__all__ = ["Execution", "SandboxError", "SandboxSession", "remove_tree"]

log = logging.getLogger(__name__)


class SandboxSession:
    """One task's sandbox: a persistent namespace, replaced by a fresh one if its job dies."""

    def __init__(self, zygote: ZygoteProcess, config: dict[str, Any], limits: JobLimits, scratch: Path,
                 on_call: CallHandler, inventory: Callable[[], dict[str, Any]]) -> None:
        self._zygote = zygote
        self._config = config
        self._limits = limits
        self._scratch = scratch
        self._on_call = on_call
        self._inventory = Inventory(inventory)
        self._job: JobProcess | None = None
        self._turn = 0

    async def execute(self, code: str) -> Execution:
        note = ""
        if self._job is not None and not self._job.alive:
            # It died between turns (e.g. a thread of the model's crashed it): say so before running more.
            note = f"[sandbox] {self._job.dead_reason} between turns; its variables are lost.\n"
            await self._end_job()
        if self._job is None:
            self._scratch.mkdir(parents=True, exist_ok=True)
            self._job = await JobProcess.start(self._zygote, self._config, self._limits, self._on_call,
                                               self._inventory)
        self._turn += 1
        result = await self._job.execute(code, self._turn, self._inventory.sync())
        result.output = note + result.output
        if result.status == "killed":
            result.output += (f"\n[sandbox] {result.killed_reason}. The job was stopped and its variables are "
                              "lost; your next code runs in a fresh job.")
            await self._end_job()
        return result

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        """For the broker: the execution in flight's time limit stands still while a person is asked."""
        return self._job.hold() if self._job is not None else contextlib.nullcontext()

    async def _end_job(self) -> None:
        """Stop a dead or killed job and delete its scratch dir: its files must neither outlive it nor reach the
        job that replaces it (which makes the dir anew)."""
        assert self._job is not None
        await self._job.stop()
        self._job = None
        await remove_tree(self._scratch)

    async def close(self) -> None:
        if self._job is not None:
            await self._job.stop()
            self._job = None
        self._inventory.close()
        await remove_tree(self._scratch)


async def remove_tree(path: Path) -> None:
    """Delete a scratch dir whatever a job left in it (directories deeper than Python's recursion limit
    included), off the event loop, never raising: cleanup must not turn a finished task into a stuck one."""
    try:
        path.rmdir()  # the usual case: the job wrote into its own tmpfs, so the directory here is empty
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    try:
        process = await asyncio.create_subprocess_exec("rm", "-rf", "--", str(path),
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
        await process.wait()
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
