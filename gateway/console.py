"""The terminal: showing a task as it runs, and reading lines (commands, answers to confirmations) without
blocking the event loop, so devices, brokers and jobs keep running while we wait for a person."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import TextIO

from gateway.agent.prompt import Prompt
from gateway.policy import ConfirmationRequest
from gateway.questions import Question
from gateway.tasks import TaskEvent, TaskResult


class TracePrinter:
    """Shows a task as it happens: each turn's thought and code, then its observation, then the answer."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.streamed = 0

    def __call__(self, event: TaskEvent) -> None:
        data = event.data
        if event.kind == "delta":
            self.streamed += len(data["text"])
            if self.live:
                self.out.write(f"\r  model writing turn {data['turn']}... {self.streamed} chars")
                self.out.flush()
            return
        if self.live and self.streamed:
            self.out.write("\r\033[K")
        self.streamed = 0
        if event.kind == "retry":
            self.out.write(f"  model call failed ({data['error']}); retry {data['attempt']}"
                           f"{' of ' + str(data['of']) if 'of' in data else ''} in {data['delay_s']} s\n")
        elif event.kind == "code":
            self.out.write(f"── turn {data['turn']} ──\n")
            if data["thought"]:
                self.out.write(f"{data['thought']}\n")
            self.out.write("".join(f"  │ {line}\n" for line in data["code"].splitlines()))
        elif event.kind == "observation":
            for call in data.get("calls", []):  # what the answer will stand on
                self.out.write(f"  ⇢ {call['device']}.{call['method']} {call['target'] or ''}: {call['outcome']}\n")
            self.out.write("".join(f"  → {line}\n" for line in data["observation"].splitlines()))
        self.out.flush()


def print_prompt(prompt: Prompt, budget: int, out: TextIO) -> None:
    """The messages a command would send to the model, and their size."""
    for message in prompt.messages:
        out.write(f"===== {message['role']} =====\n{message['content']}\n\n")
    out.write(f"===== about {prompt.estimate} tokens (budget {budget}); {len(prompt.listed)} device(s) listed, "
              f"{prompt.omitted} more searchable with devices.find() =====\n")


def print_result(result: TaskResult, out: TextIO) -> None:
    if result.status == "done":
        out.write(f"\n{result.answer}\n")
    elif result.status == "needs_input":  # the question is the answer: said again with what it lacks, it finishes
        out.write(f"\n{result.answer}\n(not done: {result.error})\n")
    elif result.answer:  # a task that ends with an answer though not done ("Not done: you declined ...")
        out.write(f"\n{result.answer}\n")
    else:
        out.write(f"\ntask {result.status}: {result.error}\n")
    how = (f"skill {result.skill}" if result.skill and result.processed_locally
           else "processed locally, no model" if result.processed_locally
           else f"{result.turns} turn(s) · {result.tokens} tokens")
    saved = f" · saved as skill {result.skill}" if result.skill and not result.processed_locally else ""
    out.write(f"[task {result.task_id} · {result.status} · {how}{saved} · {result.calls} device call(s) · "
              f"{result.duration_ms / 1000:.1f} s]\n")


class Console:
    """Line input from stdin through the event loop."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._reader: asyncio.StreamReader | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        mode = os.fstat(sys.stdin.fileno()).st_mode
        # Only a terminal, a pipe or a socket can be watched; a file or /dev/null (epoll refuses it, and the end
        # of input would never come) is read in a thread instead.
        if not (sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            self._reader = None
            return
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            self._reader = reader
        except (ValueError, OSError):
            self._reader = None

    async def readline(self, prompt: str) -> str | None:
        """The next line without its newline, or None at end of input."""
        self.out.write(prompt)
        self.out.flush()
        if self._reader is None:
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        else:
            line = (await self._reader.readline()).decode(errors="replace")
        return line.rstrip("\n") if line else None

    async def confirm(self, request: ConfirmationRequest) -> bool:
        answer = await self.readline(f"\n⚠ {request.prompt()} [y/N] ")
        approved = (answer or "").strip().casefold() in ("y", "yes")
        self.out.write("  allowed\n" if approved else "  refused\n")
        return approved

    async def ask(self, question: Question) -> str:
        """A task's question, its choices numbered; the line typed (a choice's number or name), "" at end of input.
        One line only: what follows on a piped stdin is the next command, not another try."""
        choices = "".join(f"\n  {number}. {choice}" for number, choice in enumerate(question.choices, 1))
        line = await self.readline(f"\n? {question.question}{choices}\n> ")
        return question.pick(line or "") or (line or "")
