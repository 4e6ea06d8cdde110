"""The red team's harness: run model code through a real gateway, then prove the gateway is still healthy.

Every attack goes through `Gateway.run_code` (the real zygote, sandbox, broker, policy and audit). After it,
`Attacker.run` checks the three things every security test needs besides its own containment check:
the gateway's event loop kept answering, no job process was left behind, and a trivial next job works.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest

from gateway.app import Gateway
from gateway.policy import Confirmer

LIMITS = {"exec_timeout_s": 1.0, "memory_mb": 128, "cpu_s": 2, "output_limit_bytes": 200_000}
SECRET = "sk-redteam-0123456789abcdef"  # a fake API key: found anywhere in an observation means a leak
MAX_LOOP_LAG_S = 0.5  # the gateway's event loop must never stall longer than this during an attack
DENIED = "PermissionError: [Errno 13] Permission denied"  # Landlock: a path outside the job's allowlist
NOT_PERMITTED = "[Errno 1] Operation not permitted"  # seccomp: a denied system call
# A gateway shared by a module's tests (the `attacker` in conftest, a bench) lives on the module's event loop, so
# the tests that use it run there too; a test that starts a gateway of its own runs on a loop of its own, like the
# function-scoped fixtures it uses.
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
OWN_LOOP = pytest.mark.asyncio(loop_scope="function")


@dataclass
class Outcome:
    task_id: str
    status: str  # ok | error | final | killed
    output: str


def world_open_dir(prefix: str) -> Path:
    """A directory every uid may enter: whatever keeps the job out of it is the sandbox, not file modes."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _parent_of(pid: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)[1])


def job_processes(zygote_pid: int | None, scratch_root: Path) -> list[int]:
    """Processes of this gateway's jobs: children of its zygote, or anything whose cwd is in its scratch.

    Other gateways on the machine use the same job uid, so the uid alone cannot tell ours apart.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == zygote_pid:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if (zygote_pid is not None and _parent_of(entry) == zygote_pid) or cwd.startswith(str(scratch_root)):
            found.append(int(entry))
    return found


class Heartbeat:
    """Measures how late a 10 ms timer fires on the gateway's event loop while an attack runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - start - 0.01)

    def __enter__(self) -> Self:
        self._task = asyncio.create_task(self._beat())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


class Attacker:
    """A gateway under attack, with the checks that must hold after every attack."""

    def __init__(self, gateway: Gateway, base: Path) -> None:
        self.gateway = gateway
        self.base = base

    @property
    def data_dir(self) -> Path:
        return self.gateway.config.gateway.data_dir

    @property
    def zygote_pid(self) -> int | None:
        return self.gateway.sandbox.zygote.pid

    async def run(self, code: str, device_ids: list[str] | None = None, confirm: Confirmer | None = None) -> Outcome:
        """Run the attack as model code, then check the gateway is healthy; returns what the model saw."""
        with Heartbeat() as heartbeat:
            task_id, execution = await self.gateway.run_code(code, "red team", device_ids, confirm)
        stall = heartbeat.worst
        assert stall < MAX_LOOP_LAG_S, f"the gateway's event loop stalled for {stall:.2f} s"
        await self.assert_healthy()
        return Outcome(task_id, execution.status, execution.output)

    async def assert_healthy(self) -> None:
        leftovers = await self.wait_for_no_jobs()
        assert not leftovers, f"job processes left behind: {leftovers}"
        _, follow_up = await self.gateway.run_code("print(6 * 7)", "follow-up")
        assert (follow_up.status, follow_up.output) == ("ok", "42\n"), follow_up.output

    async def wait_for_no_jobs(self, timeout: float = 2.0) -> list[int]:
        scratch = self.data_dir / "scratch"
        for _ in range(int(timeout / 0.05)):
            leftovers = job_processes(self.zygote_pid, scratch)
            if not leftovers:
                return []
            await asyncio.sleep(0.05)
        return job_processes(self.zygote_pid, scratch)

    async def running_job(self) -> int:
        """The pid of the one job now running (for attacks on another task's job)."""
        for _ in range(200):
            jobs = job_processes(self.zygote_pid, self.data_dir / "scratch")
            if len(jobs) == 1:
                return jobs[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no single running job found")

    def audit(self, task_id: str) -> list[tuple[str | None, str, str]]:
        assert self.gateway.store is not None
        return [(row.device_id, row.method, row.outcome) for row in self.gateway.store.audit_rows(task_id)]


def spy(obj: Any, method: str) -> list[Any]:
    """Record the first argument of every call to obj.method (what a simulated device actually received)."""
    seen: list[Any] = []
    original: Callable[..., Any] = getattr(obj, method)

    def recording(first: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(first)
        return original(first, *args, **kwargs)

    setattr(obj, method, recording)
    return seen


class Listener:
    """A loopback TCP server that counts the connections it accepts: any at all means the sandbox leaked."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def start(self, host: str = "127.0.0.1") -> Listener:
        self._server = await asyncio.start_server(self._accept, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()


StartAttacker = Callable[..., Awaitable[Attacker]]
