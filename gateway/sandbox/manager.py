"""The sandbox as the gateway sees it: choose the jobs' interpreter, start the zygote, probe which layers hold
on this machine, refuse to run model code in a weak sandbox, and hand out one session per task."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import SandboxSection
from gateway.errors import GatewayError
from gateway.sandbox.job_process import CallHandler, Inventory, JobLimits, JobProcess
from gateway.sandbox.session import SandboxSession, remove_tree
from gateway.sandbox.zygote_client import ZygoteProcess

log = logging.getLogger(__name__)

NETWORK_LAYERS = ("netns", "seccomp")
CHECK_IMPORTS = "import sys, json, ctypes, socket, selectors, encodings.idna; assert sys.version_info >= (3, 11)"


@dataclass
class ProbeResult:
    python: str
    layers: dict[str, str | None] = field(default_factory=dict)  # layer -> None when active, else why not
    notes: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[str]:
        return [name for name, reason in self.layers.items() if reason is None]


class SandboxUnavailable(GatewayError):
    """Model code must not run here; the message says why and what would fix it."""


class Sandbox:
    def __init__(self, settings: SandboxSection, data_dir: Path, clock_speed: float = 1.0) -> None:
        self.settings = settings
        self.clock_speed = clock_speed
        self.scratch_root = data_dir / "scratch"
        self.probe = ProbeResult(python=settings.python or sys.executable)
        self.zygote = ZygoteProcess(self.probe.python)
        self.refusal: str | None = None

    @property
    def layers(self) -> list[str]:
        return self.probe.active

    async def start(self) -> ProbeResult:
        if not sys.platform.startswith("linux"):
            self.refusal = f"model code runs only on Linux; this is {sys.platform}"
            return self.probe
        root = os.geteuid() == 0
        uid_note = None
        if root and not self.settings.python:
            self.probe.python, uid_note = await self._interpreter_for_job_uid()
            self.zygote = ZygoteProcess(self.probe.python)
        elif root and not await self._runs_as_job_user(self.settings.python):
            uid_note = f"{self.settings.python} (sandbox.python) cannot be run by uid {self.settings.job_uid}"
        await self.zygote.start()
        self.probe.layers = await self._probe(drop_uid=root and uid_note is None)
        if uid_note and root:
            self.probe.layers["uid"] = uid_note
        if not any(self.probe.layers.get(name) is None for name in NETWORK_LAYERS):
            weakness = ("neither a network namespace nor seccomp is available here ("
                        + "; ".join(f"{name}: {self.probe.layers.get(name)}" for name in NETWORK_LAYERS) + ")")
            if self.settings.allow_weak:
                self.probe.notes.append(f"WARNING: {weakness}; running anyway because sandbox.allow_weak = true")
            else:
                self.refusal = weakness + "; refusing to run model code (set sandbox.allow_weak = true to override)"
        for name, reason in self.probe.layers.items():
            if reason is not None and reason != "not requested":
                log.warning("sandbox layer %s is off: %s", name, reason)
        log.info("sandbox layers active: %s", ", ".join(self.probe.active))
        return self.probe

    async def _interpreter_for_job_uid(self) -> tuple[str, str | None]:
        """This interpreter when the job uid can run it, else a system Python it can (pyenv under /root cannot)."""
        if await self._runs_as_job_user(sys.executable):
            return sys.executable, None
        minor = f"python3.{sys.version_info.minor}"
        for candidate in (f"/usr/bin/{minor}", f"/usr/local/bin/{minor}", "/usr/bin/python3", "/usr/local/bin/python3"):
            if os.path.exists(candidate) and await self._runs_as_job_user(candidate):
                self.probe.notes.append(f"{sys.executable} is not readable by uid {self.settings.job_uid}; "
                                        f"jobs use {candidate}")
                return candidate, None
        return sys.executable, (f"no Python 3.11+ that uid {self.settings.job_uid} can read (install one "
                                "world-readable, e.g. Debian's python3, or set sandbox.python)")

    async def _runs_as_job_user(self, python: str) -> bool:
        try:
            process = await asyncio.create_subprocess_exec(
                python, "-I", "-S", "-c", CHECK_IMPORTS, user=self.settings.job_uid, group=self.settings.job_gid,
                extra_groups=[], env={}, cwd="/", stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            async with asyncio.timeout(20):
                return await process.wait() == 0
        except (OSError, TimeoutError):
            return False

    async def _probe(self, drop_uid: bool) -> dict[str, str | None]:
        scratch = Path(tempfile.mkdtemp(prefix="probe-", dir=self._scratch_dir()))
        config = {"probe": True, "scratch_dir": str(scratch), "scratch_mb": self.settings.scratch_mb,
                  "memory_mb": self.settings.memory_mb,
                  "cpu_s": self.settings.cpu_s, "job_uid": self.settings.job_uid if drop_uid else None,
                  "job_gid": self.settings.job_gid if drop_uid else None}
        inventory = Inventory(dict)
        job = await JobProcess.start(self.zygote, config, self._limits(), _no_calls, inventory)
        try:
            assert job.probe_report is not None
            async with asyncio.timeout(10):
                report = await job.probe_report
            return report.layers
        finally:
            await job.stop()
            inventory.close()
            await remove_tree(scratch)

    async def remove_leftovers(self) -> None:
        """Delete the scratch dirs that jobs of an earlier run left (a gateway killed with its jobs never removed
        theirs). Only for the gateway that holds the data dir's lock: no job of another may be using them."""
        leftovers = list(self.scratch_root.iterdir()) if self.scratch_root.is_dir() else []
        for path in leftovers:
            await remove_tree(path)
        if leftovers:
            log.info("removed %d scratch dir(s) left by jobs of an earlier run", len(leftovers))

    def _scratch_dir(self) -> Path:
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        return self.scratch_root

    def _limits(self, exec_timeout_s: float | None = None) -> JobLimits:
        settings = self.settings
        return JobLimits(exec_timeout_s or settings.exec_timeout_s, settings.memory_mb, settings.cpu_s,
                         settings.output_limit_bytes)

    def session(self, task_id: str, inventory: Callable[[], dict[str, Any]], on_call: CallHandler,
                exec_timeout_s: float | None = None) -> SandboxSession:
        """A task's sandbox; `inventory` gives {"devices", "kinds", "skills"} for its job, read again before
        each execution. `exec_timeout_s` replaces [sandbox] exec_timeout_s (automations wait longer)."""
        if self.refusal:
            raise SandboxUnavailable(self.refusal)
        scratch = self._scratch_dir() / task_id
        config = {"scratch_dir": str(scratch), "scratch_mb": self.settings.scratch_mb,
                  "memory_mb": self.settings.memory_mb,
                  "cpu_s": self.settings.cpu_s, "layers": self.layers,
                  "job_uid": self.settings.job_uid, "job_gid": self.settings.job_gid,
                  "clock_speed": self.clock_speed}
        return SandboxSession(self.zygote, config, self._limits(exec_timeout_s), scratch, on_call, inventory)

    async def close(self) -> None:
        await self.zygote.close()


async def _no_calls(request: Any) -> dict[str, Any]:
    return {"id": request.id, "ok": False, "error": {"type": "PermissionError", "message": "probe"}}
