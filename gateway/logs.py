"""Structured logs: one line per event, the task id on every line (from a context variable set per task).

Messages carry text from tasks, devices and models: control characters are written as escapes, so a line can
neither be split, rewritten on a terminal (CR, ESC) nor cut (NUL), and a traceback is capped.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from types import TracebackType

current_task: ContextVar[str] = ContextVar("current_task", default="-")

# C0 and C1 control characters as escapes; a newline as the two characters \n. JSON escapes C0 itself.
CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {ord("\n"): "\\n"}
JSON_CONTROLS = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}
TRACEBACK_HEAD, TRACEBACK_TAIL = 1000, 3000  # characters kept: where it started, and where it failed

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class OneLine(logging.Formatter):
    """`time level logger task=<id>: message`, or one JSON object per line; newlines never split a record."""

    def __init__(self, as_json: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s task=%(task)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        task = current_task.get()
        record.__dict__["task"] = task  # for %(task)s; the way logging itself adds `extra` fields
        if self.as_json:
            entry = {"time": self.formatTime(record, self.datefmt), "level": record.levelname,
                     "logger": record.name, "task": task, "message": record.getMessage()}
            if record.exc_info:
                entry["error"] = self.formatException(record.exc_info)
            return json.dumps(entry, ensure_ascii=False).translate(JSON_CONTROLS)
        return super().format(record).translate(CONTROLS)

    def formatException(self, exc_info: ExcInfo) -> str:
        text = super().formatException(exc_info)
        if len(text) <= TRACEBACK_HEAD + TRACEBACK_TAIL:
            return text
        cut = len(text) - TRACEBACK_HEAD - TRACEBACK_TAIL
        return f"{text[:TRACEBACK_HEAD]}\n... [{cut} characters of traceback left out] ...\n{text[-TRACEBACK_TAIL:]}"


def setup_logging(level: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("amqtt", "transitions", "aiohttp.access", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
