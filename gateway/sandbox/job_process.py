"""One sandbox job as the gateway sees it: forked by the zygote, fed code turn by turn, its output capped,
its handle calls answered, and killed when it overruns; plus the inventory memfd it reads its devices from.

Everything a job sends is untrusted: its messages are validated (messages.py), its calls throttled and
counted, and any misbehaviour ends the job, never the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.sandbox.messages import (
    MAX_MESSAGE,
    DoneMessage,
    JobFailed,
    JobRequest,
    ProbeReport,
    parse_job_message,
)
from gateway.sandbox.zygote_client import ExitStatus, SandboxError, ZygoteProcess

KILL_GRACE_S = 1.0
OUTPUT_HEAD = 16 * 1024
OUTPUT_TAIL = 4 * 1024
MAX_EXEC_BYTES = 192 * 1024  # one exec message: under the ~208 KiB a SEQPACKET socket takes by default
CALLS_IN_FLIGHT = 8  # a job past this waits (blocked on its own send) instead of flooding the gateway
MAX_REFUSED_CALLS = 200  # a job that keeps making refused calls is stopped

CallHandler = Callable[[JobRequest], Awaitable[dict[str, Any]]]


@dataclass
class JobLimits:
    exec_timeout_s: float
    memory_mb: int
    cpu_s: int
    output_limit_bytes: int


@dataclass
class Execution:
    status: str  # ok | error | final | killed
    output: str
    answer: str | None = None
    duration_ms: float = 0.0
    killed_reason: str | None = None
    touched: bool = False  # it read or called a device


class OutputBuffer:
    """Keeps the head and the tail of a stream, counting what is dropped in between."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = OUTPUT_HEAD - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            del self.tail[:-OUTPUT_TAIL]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n...[{dropped} bytes of output truncated]...\n" if dropped > 0 else ""
        return (bytes(self.head).decode("utf-8", "replace") + middle
                + bytes(self.tail).decode("utf-8", "replace"))


class Inventory:
    """The devices a task's job may use, with their states, in a memfd shared with the job.

    A file descriptor scales to thousands of devices where a control message would not, and it is rewritten
    only when something changed; each exec message names the version to read.
    """

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.fd = os.memfd_create("pyuse-inventory", os.MFD_CLOEXEC)
        self.version = 0
        self._snapshot = snapshot
        self._written: bytes | None = None

    def sync(self) -> int:
        data = json.dumps(self._snapshot(), separators=(",", ":"), default=str).encode()
        if data != self._written:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            self._written = data
            self.version += 1
        return self.version

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class JobProcess:
    """One forked job: its control channel, its output pipe and the execution in flight."""

    zygote: ZygoteProcess
    pid: int
    channel: socket.socket
    output_fd: int
    limits: JobLimits
    on_call: CallHandler
    dead_reason: str | None = None
    exit_status: ExitStatus | None = None
    _executed: bool = False  # model code has been sent: from now on the job's word counts for nothing
    _refused: int = 0
    _output: OutputBuffer = field(default_factory=OutputBuffer)
    _done: asyncio.Future[DoneMessage] | None = None
    probe_report: asyncio.Future[ProbeReport] | None = None
    _reader: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _time_limit: asyncio.Timeout | None = None  # the execution in flight's, on the gateway's side
    _holds: int = 0
    _limit_left: float = 0.0

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """While a person is asked about one of its calls, the execution's time limit stands still, here and in
        the job (which the call's reply sets going again): a person takes longer to read than code to run."""
        loop = asyncio.get_running_loop()
        limit = self._time_limit
        deadline = limit.when() if limit is not None else None
        if limit is not None and self._holds == 0 and deadline is not None:  # the first of concurrent asks
            self._limit_left = max(0.0, deadline - loop.time())
            limit.reschedule(None)
            with contextlib.suppress(OSError):
                await loop.sock_sendall(self.channel, b'{"op": "hold"}')
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if limit is not None and self._holds == 0 and limit is self._time_limit:
                limit.reschedule(loop.time() + self._limit_left)

    @classmethod
    async def start(cls, zygote: ZygoteProcess, config: dict[str, Any], limits: JobLimits,
                    on_call: CallHandler, inventory: Inventory) -> JobProcess:
        """Fork a job; with config["probe"] it only reports its layers (await `probe_report`) and exits."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        try:
            pid = await zygote.spawn(config, [child_end.fileno(), out_w, inventory.fd])
        except BaseException:
            parent_end.close()
            os.close(out_r)
            raise
        finally:
            child_end.close()
            os.close(out_w)
        parent_end.setblocking(False)
        os.set_blocking(out_r, False)
        job = cls(zygote=zygote, pid=pid, channel=parent_end, output_fd=out_r, limits=limits, on_call=on_call,
                  probe_report=asyncio.get_running_loop().create_future() if config.get("probe") else None)
        asyncio.get_running_loop().add_reader(out_r, job._read_output)
        job._reader = asyncio.create_task(job._read_channel(), name=f"job-{pid}")
        return job

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    async def execute(self, code: str, turn: int, inventory_version: int) -> Execution:
        if not self.alive:
            raise SandboxError("execute() on a dead job")
        loop = asyncio.get_running_loop()
        self._output = OutputBuffer()
        self._done = loop.create_future()
        started = time.perf_counter()
        message = json.dumps({"op": "exec", "code": code, "turn": turn, "timeout": self.limits.exec_timeout_s,
                              "inventory": inventory_version}).encode()
        if len(message) > MAX_EXEC_BYTES:
            return Execution("error", f"[sandbox] this code takes {len(message)} bytes to send; one turn may send "
                                      f"at most {MAX_EXEC_BYTES}. Write less code per turn.")
        self._executed = True
        try:
            await loop.sock_sendall(self.channel, message)
            async with asyncio.timeout(self.limits.exec_timeout_s + KILL_GRACE_S) as self._time_limit:
                done = await asyncio.shield(self._done)
        except TimeoutError:
            await self.kill(f"still running {self.limits.exec_timeout_s + KILL_GRACE_S:.1f} s after it started "
                            "(it did not stop at the soft time limit)")
            done = None
        except (JobDied, OSError):
            done = None
        finally:
            self._time_limit = None  # a call still asking after this no longer holds an execution
        self._drain_output()
        duration = (time.perf_counter() - started) * 1000
        if done is None or not self.alive:
            await self.kill("the job stopped answering")  # a no-op with its reason kept if it is already dead
            await self._settle()
            return Execution("killed", self._output.text(), duration_ms=duration, killed_reason=self.dead_reason)
        return Execution(done.status, self._output.text(), done.answer, duration_ms=duration, touched=done.touched)

    def _read_output(self) -> None:
        try:
            data = os.read(self.output_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.output_fd)
            return
        self._output.feed(data)
        if self._output.total > self.limits.output_limit_bytes and self.alive:
            task = asyncio.create_task(self.kill(f"output limit exceeded (more than "
                                                 f"{self.limits.output_limit_bytes} bytes printed)"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _drain_output(self) -> None:
        while True:
            try:
                data = os.read(self.output_fd, 1 << 16)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._output.feed(data)

    async def _read_channel(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray(MAX_MESSAGE + 1)
        try:
            while True:
                if len(self._tasks) >= CALLS_IN_FLIGHT:
                    await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                try:
                    size = await loop.sock_recv_into(self.channel, buffer)
                except OSError:
                    size = 0
                if not size:
                    break
                data = bytes(buffer[:size])
                await asyncio.sleep(0)  # a job sending as fast as it can must not keep the loop to itself
                try:
                    message = parse_job_message(data)
                except (ValidationError, ValueError) as exc:
                    await self.kill(f"the job sent a malformed message ({str(exc).splitlines()[0]})")
                    break
                if isinstance(message, DoneMessage):
                    if self._done and not self._done.done():
                        self._done.set_result(message)
                elif isinstance(message, ProbeReport) and self.probe_report and not self._executed:
                    if not self.probe_report.done():
                        self.probe_report.set_result(message)
                elif isinstance(message, JobFailed) and not self._executed:
                    self.dead_reason = f"the sandbox could not be set up: {message.reason}"
                elif isinstance(message, (JobFailed, ProbeReport)):
                    await self.kill(f"the job sent a {message.op!r} message, which only its start-up may send")
                    break
                else:
                    task = asyncio.create_task(self._answer(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            await self._on_channel_closed()

    async def _answer(self, request: JobRequest) -> None:
        reply = await self.on_call(request)
        if not reply.get("ok"):
            self._refused += 1
            if self._refused > MAX_REFUSED_CALLS:
                await self.kill(f"the job made more than {MAX_REFUSED_CALLS} calls that were refused")
                return
        data = json.dumps(reply, default=str).encode()
        if len(data) > MAX_MESSAGE:
            data = json.dumps({"id": request.id, "ok": False, "error": {
                "type": "DeviceError", "message": f"the reply is too large ({len(data)} bytes); ask for less"}}
            ).encode()
        try:
            await asyncio.get_running_loop().sock_sendall(self.channel, data)
        except OSError:
            pass  # the job died meanwhile; its death is reported by the channel reader

    async def _on_channel_closed(self) -> None:
        status = await self.zygote.wait_exit(self.pid, 2.0)
        if status is not None:
            self.exit_status = status
        if self.dead_reason is None:
            self.dead_reason = describe_exit(status)
        for future in (self._done, self.probe_report):
            if future and not future.done():
                future.set_exception(JobDied(self.dead_reason))

    async def kill(self, reason: str) -> None:
        """Make sure the job is gone; the first reason given is the one reported."""
        if self.dead_reason is None:
            self.dead_reason = reason
        if self.exit_status is not None:
            return
        await self.zygote.kill(self.pid)
        self.exit_status = await self.zygote.wait_exit(self.pid, 3.0)
        if self.exit_status is None:
            # Backstop when the zygote is gone or stuck: a job leads its own process group.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.exit_status = (None, signal.SIGKILL)

    async def _settle(self) -> None:
        """After a death: stop reading and release everything the job held."""
        if self._reader and not self._reader.done():
            self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(t for t in [self._reader, *self._tasks] if t), return_exceptions=True)
        self._close_fds()

    def _close_fds(self) -> None:
        if self.output_fd >= 0:
            asyncio.get_running_loop().remove_reader(self.output_fd)
            os.close(self.output_fd)
            self.output_fd = -1
        self.channel.close()
        self.zygote.forget(self.pid)

    async def stop(self) -> None:
        await self.kill("the task ended")
        await self._settle()


class JobDied(Exception):
    pass


def describe_exit(status: ExitStatus | None) -> str:
    if status is None or status == (None, None):
        return "the job stopped answering"
    code, sig = status
    if sig == signal.SIGKILL:
        return "the job was killed (SIGKILL: its CPU-time or memory limit, or the zygote went away)"
    if sig is not None:
        return f"the job crashed ({signal.Signals(sig).name})"
    return f"the job exited with code {code} (os._exit or an uncaught error outside the turn)"
