"""The gateway's client of the zygote: starts it (again whenever it has died), asks it to fork jobs and
to kill them, and hears which of them exited.

The zygote itself (jobside/zygote.py) runs as a separate, stdlib-only process; this side speaks its control
protocol over a SEQPACKET socket, JSON with file descriptors attached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

# Run by path: under `python -I -S` nothing of the gateway is importable, and the job side needs none of it.
ZYGOTE_MAIN = Path(__file__).with_name("jobside") / "__main__.py"

ExitStatus = tuple[int | None, int | None]  # (exit code, signal), as the zygote reports a job's end


class SandboxError(GatewayError):
    """The sandbox itself failed (the zygote could not start or answer)."""


class ZygoteProcess:
    """Starts the zygote on first use and again whenever it has died."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._process: asyncio.subprocess.Process | None = None
        self._ctrl: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._spawns: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[ExitStatus]] = {}
        self._next_request = 0
        self._start_lock = asyncio.Lock()
        self._closing = False
        self.jobs: set[int] = set()  # spawned and not yet reported exited

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None and self._reader is not None \
            and not self._reader.done()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        async with self._start_lock:
            if self.running:
                return
            ctrl, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._process = await asyncio.create_subprocess_exec(
                    self.python, "-I", "-S", str(ZYGOTE_MAIN), str(child_end.fileno()),
                    pass_fds=(child_end.fileno(),), env={}, cwd="/", stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True)
            finally:
                child_end.close()
            ctrl.setblocking(False)
            self._ctrl = ctrl
            self._reader = asyncio.create_task(self._read(ctrl), name="zygote-reader")
            asyncio.create_task(self._forward_stderr(self._process), name="zygote-stderr")

    async def _forward_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            log.warning("zygote: %s", line.decode(errors="replace").rstrip())

    async def _read(self, ctrl: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(ctrl, 1 << 16):
                message = json.loads(data)
                if message["op"] == "spawned":
                    spawned = self._spawns.pop(message["req"], None)
                    if spawned and not spawned.done():
                        spawned.set_result(message["pid"])
                elif message["op"] == "exited":
                    self.jobs.discard(message["pid"])
                    exited = self._exit_future(message["pid"])
                    if not exited.done():
                        exited.set_result((message["code"], message["signal"]))
        except (OSError, ValueError, KeyError) as exc:
            log.error("zygote channel failed: %s", exc)
        finally:
            ctrl.close()
            if not self._closing:
                log.warning("zygote stopped; it will be restarted for the next job")
            for spawning in self._spawns.values():
                if not spawning.done():
                    spawning.set_exception(SandboxError("the zygote stopped while starting a job"))
            self._spawns.clear()
            # Jobs die with their zygote (PR_SET_PDEATHSIG); kill their process groups anyway rather than trust it.
            for pid in self.jobs:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                ended = self._exit_future(pid)
                if not ended.done():
                    ended.set_result((None, signal.SIGKILL))
            self.jobs.clear()

    def _exit_future(self, pid: int) -> asyncio.Future[ExitStatus]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    async def spawn(self, config: dict[str, Any], fds: list[int]) -> int:
        await self.start()
        assert self._ctrl is not None
        self._next_request += 1
        request = self._next_request
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._spawns[request] = future
        payload = json.dumps({"op": "spawn", "req": request, "job": config}).encode()
        await self._send(payload, fds)
        try:
            async with asyncio.timeout(10):
                pid = await future
        except TimeoutError:
            raise SandboxError("the zygote did not start a job within 10 s") from None
        self.jobs.add(pid)
        return pid

    async def wait_exit(self, pid: int, timeout: float) -> ExitStatus | None:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._exit_future(pid))
        except TimeoutError:
            return None

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)

    async def kill(self, pid: int) -> None:
        if self.running:
            await self._send(json.dumps({"op": "kill", "pid": pid}).encode(), [])

    async def _send(self, payload: bytes, fds: list[int]) -> None:
        assert self._ctrl is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(self._ctrl, [payload], fds)
                return
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self._ctrl, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self._ctrl)
            except OSError as exc:
                raise SandboxError(f"cannot reach the zygote: {exc}") from exc

    async def close(self) -> None:
        self._closing = True
        if self._process and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)
