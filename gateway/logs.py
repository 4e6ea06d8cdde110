"""Structured logs: one line per event, the task id on every line (from a context variable set per task)."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

current_task: ContextVar[str] = ContextVar("current_task", default="-")


class OneLine(logging.Formatter):
    """`time level logger task=<id>: message`, or one JSON object per line; newlines never split a record."""

    def __init__(self, as_json: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s task=%(task)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        record.task = current_task.get()
        if self.as_json:
            entry = {"time": self.formatTime(record, self.datefmt), "level": record.levelname,
                     "logger": record.name, "task": record.task, "message": record.getMessage()}
            if record.exc_info:
                entry["error"] = self.formatException(record.exc_info)
            return json.dumps(entry, ensure_ascii=False)
        return super().format(record).replace("\n", "\\n")


def setup_logging(level: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("amqtt", "transitions", "aiohttp.access", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
