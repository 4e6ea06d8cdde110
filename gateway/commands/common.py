"""What the `pyuse` commands share: loading the config, following a task in the daemon, asking at the terminal,
and making sure a command that needs a gateway of its own gets the data dir."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from gateway.config import Config, find_config_file, load_config
from gateway.console import Console
from gateway.lock import DataDirBusy, holder
from gateway.logs import setup_logging
from gateway.policy import Confirmer
from gateway.questions import Asker
from gateway.remote import DaemonClient
from gateway.tasks import EventSink, TaskResult


def load(args: argparse.Namespace, level: str | None = None) -> tuple[Config, str]:
    """The config, and logging set up: warnings only for one-shot commands unless -v."""
    path = find_config_file(args.config)
    config = load_config(path)
    setup_logging("debug" if args.verbose else level or "warning", config.gateway.log_format == "json")
    return config, str(path) if path else "defaults"


async def follow(client: DaemonClient, task_id: str, on_event: EventSink, confirm: Confirmer | None,
                 ask: Asker | None = None) -> TaskResult:
    """Follow a task in the daemon; Ctrl-C here cancels it there, as it would a local one."""
    try:
        return await client.follow_task(task_id, on_event, confirm, ask)
    except asyncio.CancelledError:
        await client.call("POST", f"/api/tasks/{task_id}/cancel")
        raise


def own_gateway(config: Config, command: str) -> None:
    """For commands with no API route: they need a gateway of their own, so no other process may hold the data
    dir (checked here to say so; Gateway.start holds it)."""
    owner = holder(config.gateway.data_dir)
    if owner is not None:
        raise DataDirBusy(config.gateway.data_dir, owner, f"`pyuse {command}` runs a gateway of its own, and only "
                          "one may use a data dir: stop the other first")


async def terminal(out: TextIO) -> Console | None:
    """The person at the terminal, when there is one; otherwise nobody can be asked: dangerous calls are denied,
    and a task with a question ends needing input."""
    if not sys.stdin.isatty():
        return None
    console = Console(out)
    await console.start()
    return console


async def terminal_confirmer(out: TextIO) -> Confirmer | None:
    """Ask at the terminal when there is one; otherwise nobody can confirm, and dangerous calls are denied."""
    console = await terminal(out)
    return console.confirm if console else None


def key_values(items: list[str], what: str) -> dict[str, str]:
    """NAME=VALUE arguments as a dict; raises ValueError naming `what` for one without its =."""
    values = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    return values
