"""The gateway's side of the sandbox: the zygote process, running jobs, and one session per task.

A session keeps one job (one Python namespace) across the task's turns. When a job dies (timeout, output
flood, CPU or memory limit, a crash), the observation says why and that its variables are lost; the next
execution transparently starts a fresh job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.sandbox.messages import MAX_MESSAGE, CallRequest, DoneMessage, JobFailed, ProbeReport, parse_job_message

log = logging.getLogger(__name__)

ZYGOTE_PATH = Path(__file__).with_name("zygote.py")
KILL_GRACE_S = 1.0
OUTPUT_HEAD = 16 * 1024
OUTPUT_TAIL = 4 * 1024
MAX_EXEC_BYTES = 192 * 1024  # one exec message: under the ~208 KiB a SEQPACKET socket takes by default
CALLS_IN_FLIGHT = 8  # a job past this waits (blocked on its own send) instead of flooding the gateway
MAX_REFUSED_CALLS = 200  # a job that keeps making refused calls is stopped

CallHandler = Callable[[CallRequest], Awaitable[dict[str, Any]]]


class SandboxError(Exception):
    """The sandbox itself failed (the zygote could not start or answer)."""


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


class ZygoteProcess:
    """Starts the zygote on first use and again whenever it has died."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._process: asyncio.subprocess.Process | None = None
        self._ctrl: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._spawns: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[tuple[int | None, int | None]]] = {}
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
                    self.python, "-I", "-S", str(ZYGOTE_PATH), str(child_end.fileno()),
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
                    future = self._spawns.pop(message["req"], None)
                    if future and not future.done():
                        future.set_result(message["pid"])
                elif message["op"] == "exited":
                    self.jobs.discard(message["pid"])
                    future = self._exit_future(message["pid"])
                    if not future.done():
                        future.set_result((message["code"], message["signal"]))
        except (OSError, ValueError, KeyError) as exc:
            log.error("zygote channel failed: %s", exc)
        finally:
            ctrl.close()
            if not self._closing:
                log.warning("zygote stopped; it will be restarted for the next job")
            for future in self._spawns.values():
                if not future.done():
                    future.set_exception(SandboxError("the zygote stopped while starting a job"))
            self._spawns.clear()
            # Jobs die with their zygote (PR_SET_PDEATHSIG); kill their process groups anyway rather than trust it.
            for pid in self.jobs:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                future = self._exit_future(pid)
                if not future.done():
                    future.set_result((None, signal.SIGKILL))
            self.jobs.clear()

    def _exit_future(self, pid: int) -> asyncio.Future[tuple[int | None, int | None]]:
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

    async def wait_exit(self, pid: int, timeout: float) -> tuple[int | None, int | None] | None:
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
    exit_status: tuple[int | None, int | None] | None = None
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
        if limit is not None and self._holds == 0 and limit.when() is not None:  # the first of concurrent asks
            self._limit_left = max(0.0, limit.when() - loop.time())  # type: ignore[operator]
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

    async def _answer(self, request: CallRequest) -> None:
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


def describe_exit(status: tuple[int | None, int | None] | None) -> str:
    if status is None or status == (None, None):
        return "the job stopped answering"
    code, sig = status
    if sig == signal.SIGKILL:
        return "the job was killed (SIGKILL: its CPU-time or memory limit, or the zygote went away)"
    if sig is not None:
        return f"the job crashed ({signal.Signals(sig).name})"
    return f"the job exited with code {code} (os._exit or an uncaught error outside the turn)"


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
