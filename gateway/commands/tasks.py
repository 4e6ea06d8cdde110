"""`pyuse ask`, `exec`, `prompt`, `tasks` and `devices`: running a command or code, and looking at what the gateway
did and knows. `ask`, `prompt` and `devices` go through the daemon when one owns the data dir."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from gateway.agent.llm import NOT_CONFIGURED
from gateway.agent.prompt import Prompt
from gateway.app import Gateway
from gateway.commands.common import follow, load, own_gateway, terminal, terminal_confirmer
from gateway.console import TracePrinter, print_prompt, print_result
from gateway.errors import GatewayError
from gateway.remote import DaemonUnavailable, RemoteError, running_daemon
from gateway.task_history import TaskHistory, history_at
from gateway.tasks import TaskResult
from gateway.textfile import UnreadableFile, read_text


def cmd_ask(args: argparse.Namespace) -> int:
    config, source = load(args)
    trace_out = sys.stderr if args.json else sys.stdout

    async def run() -> TaskResult:
        console = await terminal(trace_out)
        confirm, ask = (console.confirm, console.ask) if console else (None, None)
        client = await running_daemon(config)
        if client is not None:  # the daemon owns the data dir: the task runs there, and is shown here
            task = await client.call("POST", "/api/tasks", {"text": args.text, "devices": args.device,
                                                            "origin": "cli"})
            return await follow(client, task["id"], TracePrinter(trace_out), confirm, ask)
        async with Gateway(config, source) as gateway:
            return await gateway.run_task(args.text, origin="cli", device_ids=args.device,
                                          on_event=TracePrinter(trace_out), confirm=confirm, ask=ask)

    try:
        result = asyncio.run(run())
    except (DaemonUnavailable, RemoteError) as exc:
        print(f"pyuse ask: {exc}", file=sys.stderr)
        return 1
    if result.status == "failed" and not config.llm.configured and NOT_CONFIGURED in (result.error or ""):
        print(f"pyuse: {result.error}", file=sys.stderr)
        return 2
    print_result(result, trace_out)
    if (config.skills.auto_save == "ask" and result.status == "done" and not result.processed_locally
            and not result.skill):
        print(f"to run it again without the model: pyuse skills save {result.task_id}", file=trace_out)
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False))
    return 0 if result.status == "done" else 1


def cmd_exec(args: argparse.Namespace) -> int:
    config, source = load(args)
    own_gateway(config, "exec")
    try:
        code = sys.stdin.read() if str(args.file) == "-" else read_text(args.file)
    except (FileNotFoundError, UnreadableFile) as exc:
        print(f"pyuse exec: {args.file}: {'no such file' if isinstance(exc, FileNotFoundError) else exc}",
              file=sys.stderr)
        return 2

    async def run() -> int:
        confirm = await terminal_confirmer(sys.stderr)
        async with Gateway(config, source) as gateway:
            try:
                task_id, execution = await gateway.run_code(code, f"exec {args.file}", args.device, confirm)
            except GatewayError as exc:  # devices it may not have, or no sandbox
                print(f"pyuse exec: {exc}", file=sys.stderr)
                return 2
        sys.stdout.write(execution.output)
        if execution.answer is not None:
            print(f"final answer: {execution.answer}")
        print(f"[task {task_id} · {execution.status} · {execution.duration_ms:.0f} ms · layers: "
              f"{', '.join(gateway.health().sandbox_layers)}]", file=sys.stderr)
        return 0 if execution.status in ("ok", "final") else 1

    return asyncio.run(run())


def cmd_prompt(args: argparse.Namespace) -> int:
    config, source = load(args)

    async def run() -> int:
        client = await running_daemon(config)
        if client is not None:  # what the daemon would send, from its registry
            try:
                prompt = Prompt(**await client.call("POST", "/api/prompt", {"text": args.text,
                                                                             "devices": args.device}))
            except (DaemonUnavailable, RemoteError) as exc:
                print(f"pyuse prompt: {exc}", file=sys.stderr)
                return 2
        else:
            async with Gateway(config, source) as gateway:
                await gateway.settle_discovery()
                try:
                    prompt = gateway.build_prompt(args.text, args.device)
                except GatewayError as exc:  # devices it may not have
                    print(f"pyuse prompt: {exc}", file=sys.stderr)
                    return 2
        print_prompt(prompt, config.agent.prompt_budget_tokens, sys.stdout)
        return 0

    return asyncio.run(run())


def cmd_devices(args: argparse.Namespace) -> int:
    config, source = load(args)

    async def run() -> list[dict[str, Any]]:
        client = await running_daemon(config)
        if client is not None:  # the daemon's registry, as the API gives it
            listing: list[dict[str, Any]] = await client.call("GET", "/api/devices")
            return listing
        async with Gateway(config, source) as gateway:
            await gateway.settle_discovery()
            return [json.loads(device.model_dump_json()) for device in gateway.devices()]

    try:
        devices = asyncio.run(run())
    except (DaemonUnavailable, RemoteError) as exc:
        print(f"pyuse devices: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(devices, ensure_ascii=False))
        return 0
    if not devices:
        print("no devices yet: declare some with [[devices]] in the config, or run a discovery source "
              "(see [discovery] in config.reference.toml)")
        return 0
    rows = [(device["id"], device["name"], device["area"] or "-", device["kind"], device["transport"],
             "online" if device["online"] else "OFFLINE", state_summary(device["state"])) for device in devices]
    header = ("id", "name", "area", "kind", "transport", "online", "state")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def state_summary(state: dict[str, Any]) -> str:
    parts = [f"{key}={value}" for key, value in state.items() if isinstance(value, (str, int, float, bool))]
    text = " ".join(parts)
    return text if len(text) <= 60 else text[:59] + "…"


def cmd_tasks(args: argparse.Namespace) -> int:
    config, _ = load(args)
    with history_at(config.db_path) as history:
        if history is None:
            print(f"no tasks yet ({config.db_path} does not exist)")
            return 0
        if args.task_id:
            return _show_task(history, args.task_id, args.json)
        tasks = history.recent(limit=args.limit)
        if args.json:
            print(json.dumps([task.__dict__ | {"tokens": task.tokens, "duration_ms": task.duration_ms}
                              for task in tasks], ensure_ascii=False))
            return 0
        if not tasks:
            print("no tasks yet")
        for task in tasks:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_at))
            duration = f"{task.duration_ms / 1000:.1f}s" if task.duration_ms is not None else "-"
            text = task.text if len(task.text) <= 60 else task.text[:59] + "…"
            print(f"{task.id}  {when}  {task.status:<11} {task.turns:>2} turns {task.tokens:>6} tok "
                  f"{duration:>7}  {text}")
        return 0


def _show_task(history: TaskHistory, task_id: str, as_json: bool) -> int:
    trace = history.trace(task_id)
    if trace is None:
        print(f"no task with id {task_id!r} (or the prefix matches several)", file=sys.stderr)
        return 1
    task, steps, audit = trace.task, trace.steps, trace.calls
    if as_json:
        print(json.dumps({"task": task.__dict__, "steps": [step.__dict__ for step in steps],
                          "audit": [row.__dict__ for row in audit]}, ensure_ascii=False, default=str))
        return 0
    print(f"task {task.id} [{task.origin}] {task.status}: {task.text}")
    for step in steps:
        print(f"── turn {step.turn} ── model {step.llm_ms or 0:.0f} ms, run {step.exec_ms or 0:.0f} ms, "
              f"{step.prompt_tokens}+{step.completion_tokens} tokens")
        if step.thought:
            print(step.thought)
        if step.code:
            print("".join(f"  │ {line}\n" for line in step.code.splitlines()), end="")
        if step.observation:
            print("".join(f"  → {line}\n" for line in step.observation.splitlines()), end="")
    if audit:
        print("── device calls ──")
        for row in audit:
            detail = f" ({row.detail})" if row.detail else ""
            print(f"  {row.device_id}.{row.method} {row.target or ''} → {row.outcome}{detail}")
    print(f"answer: {task.answer}" if task.status == "done" else f"{task.status}: {task.error}")
    return 0 if task.status == "done" else 1
