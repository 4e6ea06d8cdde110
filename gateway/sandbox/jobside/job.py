"""The body of a sandbox job: lock down, then run the task's code turn by turn in one namespace.

Stdlib only (runs in a process forked from the zygote, under `python -I -S`). Output goes to fd 1, a pipe
the gateway reads and caps; the channel carries only control messages and handle calls.
"""

from __future__ import annotations

import ast
import io
import json
import linecache
import os
import signal
import socket
import sys
import time
import traceback
from types import FrameType
from typing import Any

from .capabilities import KindClasses
from .channel import ACTIVITY, Channel, DeviceError, NoAnswer
from .handles import DOMAIN_CLASSES, Device, Devices, describe
from .isolation import LayerFailed, lockdown

HERE = os.path.dirname(os.path.abspath(__file__))


class FinalAnswer(BaseException):
    """Raised by final_answer(); a BaseException so that `except Exception` in model code cannot swallow it."""

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value


class ExecutionTimeout(BaseException):
    """The execution ran past its wall-clock limit."""


class CPUTimeExceeded(BaseException):
    """The job used up its CPU-seconds budget."""


# Tracebacks show these by bare name, like built-in exceptions.
FinalAnswer.__module__ = ExecutionTimeout.__module__ = CPUTimeExceeded.__module__ = "builtins"


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise ExecutionTimeout("this execution ran past its wall-clock limit; do less per turn, or wait less")


def _on_xcpu(signum: int, frame: FrameType | None) -> None:
    raise CPUTimeExceeded("the job used up its CPU-time budget for this task")


def read_inventory(fd: int) -> dict[str, Any]:
    """{"devices": [...], "kinds": {kind: handle class spec}, "skills": [{"name", "source"}]}: from the memfd the
    gateway rewrites between turns."""
    size = os.fstat(fd).st_size
    data = b""
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), len(data))
        if not chunk:
            break
        data += chunk
    inventory: dict[str, Any] = json.loads(data or b"{}")
    return inventory


class Job:
    def __init__(self, channel: Channel, inventory_fd: int, clock_speed: float = 1.0) -> None:
        self.channel = channel
        self.inventory_fd = inventory_fd
        self.inventory_version = 0  # the gateway's versions start at 1: the first exec loads it
        self.devices = Devices([])
        self.deadline = 0.0
        self.clock_speed = clock_speed
        self.skills: dict[str, str] = {}
        self.kinds: dict[str, dict[str, Any]] = {}  # kind -> handle class spec, with its doc's body
        self.kind_classes = KindClasses()
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": __builtins__,
            "devices": self.devices,
            "final_answer": self.final_answer,
            "sleep": self.sleep,
            "DeviceError": DeviceError,
            "ask": self.ask,
            "NoAnswer": NoAnswer,
            "help": self.help,
            "doc": self.doc,
            **{cls.__name__: cls for cls in DOMAIN_CLASSES.values()},
        }

    @staticmethod
    def final_answer(value: Any) -> None:
        """End the task with `value` as the answer to the user."""
        raise FinalAnswer(value)

    def ask(self, question: str, choices: list[str] | None = None) -> str:
        """Ask the person the task came from; returns their answer (one of `choices` when given). Raises
        NoAnswer when nobody can be asked or nobody answers in time."""
        ACTIVITY.touched += 1  # an answer may stand on what the person said, or on nobody being there to say it
        answer = self.channel.request({"op": "ask", "question": str(question),
                                       "choices": [str(choice) for choice in choices or []]})
        return str(answer)

    def sleep(self, seconds: float) -> None:
        """Pause, in the gateway's clock (which runs faster for simulations); refuses to sleep past the end of
        this execution."""
        left = (self.deadline + self.channel.held_s - time.monotonic()) * self.clock_speed
        if seconds > left:
            raise ValueError(f"sleep({seconds}) would outlast this execution ({left:.1f} s left); "
                             "sleep less, or finish and check again in a later turn")
        time.sleep(max(0.0, seconds) / self.clock_speed)

    def help(self, thing: Any = None) -> None:
        """What a handle can do (its methods, readings and native calls), or the devices; else Python's help."""
        if thing is None or thing is self.devices:
            for handle in self.devices.values():
                print(f"{handle.id}: {type(handle).__name__} [{handle.area}]")
            print("help(devices[id]) shows what one device can do.")
        elif isinstance(thing, Device) or (isinstance(thing, type) and issubclass(thing, Device)):
            print(describe(thing if isinstance(thing, type) else type(thing)))
        else:
            import pydoc

            print(pydoc.plain(pydoc.render_doc(thing)))

    def doc(self, kind: Any) -> None:
        """Print a device kind's own API (its doc): for what its methods do not cover."""
        name = kind.kind if isinstance(kind, Device) else str(kind)
        spec = self.kinds.get(name)
        print(spec["body"] if spec else f"no doc for kind {name!r}; kinds here: {', '.join(sorted(self.kinds))}")

    def load_skills(self, skills: list[dict[str, str]]) -> None:
        """Saved skills become functions in the namespace (the gateway checked them; they only define).

        Only new or edited ones are run again; deleted ones leave the namespace."""
        current = {skill["name"]: skill["source"] for skill in skills}
        for name in self.skills.keys() - current.keys():
            self.namespace.pop(name, None)
        changed = [skill for skill in skills if self.skills.get(skill["name"]) != skill["source"]]
        self.skills = current
        for skill in changed:
            filename = f"<skill {skill['name']}>"
            linecache.cache[filename] = (len(skill["source"]), None, skill["source"].splitlines(True), filename)
            try:
                exec(compile(skill["source"], filename, "exec"), self.namespace)
            except Exception as error:  # e.g. an import this Python lacks: report it, keep the others
                print(f"[sandbox] skill {skill['name']} could not be loaded: {type(error).__name__}: {error}")

    def serve(self) -> None:
        while True:
            message = self.channel.receive()
            if message.get("op") != "exec":
                continue
            if message.get("inventory", 0) != self.inventory_version:
                inventory = read_inventory(self.inventory_fd)
                self.kinds = inventory.get("kinds", {})
                classes = self.kind_classes.update(self.kinds)
                self.devices.refresh(self.channel, inventory.get("devices", []), classes)
                # The classes the prompt names are there by those names: isinstance(handle, ZigbeeBulb) works.
                self.namespace.update({type(handle).__name__: type(handle) for handle in self.devices.values()})
                self.load_skills(inventory.get("skills", []))
                self.inventory_version = message["inventory"]
            status, answer = self.execute(message["code"], message["turn"], message["timeout"])
            sys.stdout.flush()
            self.channel.send({"op": "done", "status": status, "answer": answer, "touched": ACTIVITY.touched > 0})

    def execute(self, source: str, turn: int, timeout: float) -> tuple[str, str | None]:
        filename = f"<turn {turn}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self.deadline = time.monotonic() + timeout
        self.channel.held_s = 0.0
        ACTIVITY.reset()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            tree = ast.parse(source, filename, "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), self.namespace)
            if isinstance(last, ast.Expr):
                value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    print(repr(value))
            return "ok", None
        except FinalAnswer as final:
            return "final", _as_text(final.value)
        except BaseException as error:  # the model's code may raise anything; report it, keep the job alive
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout.flush()
            if ACTIVITY.done:
                sys.stdout.write(f"Done before the error, no need to repeat: {', '.join(ACTIVITY.done)}\n")
            sys.stdout.write(_format_traceback(error))
            return "error", None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _format_traceback(error: BaseException) -> str:
    """The model's frames only: the job's own machinery is noise to it."""
    summary = traceback.TracebackException.from_exception(error)
    frames = [frame for frame in summary.stack
              if os.path.dirname(os.path.abspath(frame.filename)) != HERE
              and not frame.filename.startswith("<capability ")]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format())


def run(config: dict[str, Any], chan_fd: int, out_fd: int, inventory_fd: int) -> None:
    """Entry point in the forked child; never returns."""
    channel = Channel(socket.socket(fileno=chan_fd))
    try:
        layers = lockdown(config, out_fd, {chan_fd, inventory_fd})
    except LayerFailed as error:
        channel.send({"op": "failed", "reason": str(error)})
        os._exit(71)
    if config.get("probe"):
        channel.send({"op": "probe", "layers": layers})
        os._exit(0)
    sys.stdout = sys.stderr = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                               errors="backslashreplace", write_through=False)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGXCPU, _on_xcpu)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    Job(channel, inventory_fd, float(config.get("clock_speed", 1.0))).serve()
