"""The `pyuse` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from gateway.agent.llm import NOT_CONFIGURED
from gateway.agent.loop import TaskEvent
from gateway.app import Gateway, TaskResult
from gateway.config import Config, ConfigError, find_config_file, load_config
from gateway.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyuse", description="A home and lab gateway: commands become Python written by a language model, "
                                  "run in a sandbox that holds only the device handles the task needs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", type=Path, help="config file (default: $PYUSE_CONFIG, ./pyuse.toml, "
                                                            "~/.config/pyuse/pyuse.toml, else built-in defaults)")
        sub.add_argument("-v", "--verbose", action="store_true", help="log more")
        sub.set_defaults(handler=handler)
        return sub

    ask = command("ask", "run one command through the model and the sandbox, showing each turn", cmd_ask)
    ask.add_argument("text", help='the command, e.g. "turn on the desk plug"')
    ask.add_argument("--json", action="store_true",
                     help="print the trace to stderr and one JSON object as the last line of stdout")
    ask.add_argument("--device", action="append", metavar="ID", help="limit the task to these devices")

    tasks = command("tasks", "list recent tasks, or show one task's trace", cmd_tasks)
    tasks.add_argument("task_id", nargs="?", metavar="ID", help="a task id (a unique prefix is enough)")
    tasks.add_argument("--limit", type=int, default=20, help="how many tasks to list (default 20)")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")

    command("demo", "start a simulated home/lab with an embedded MQTT broker and the gateway, then take "
                    "commands at a prompt", cmd_demo)
    return parser


def _load(args: argparse.Namespace) -> tuple[Config, str]:
    path = find_config_file(args.config)
    config = load_config(path)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return config, str(path) if path else "defaults"


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
            self.out.write(f"  model call failed ({data['error']}); retry {data['attempt']} in {data['delay_s']} s\n")
        elif event.kind == "code":
            self.out.write(f"── turn {data['turn']} ──\n")
            if data["thought"]:
                self.out.write(f"{data['thought']}\n")
            self.out.write("".join(f"  │ {line}\n" for line in data["code"].splitlines()))
        elif event.kind == "observation" and data["observation"]:
            self.out.write("".join(f"  → {line}\n" for line in data["observation"].splitlines()))
        self.out.flush()


def print_result(result: TaskResult, out: TextIO) -> None:
    if result.status == "done":
        out.write(f"\n{result.answer}\n")
    else:
        out.write(f"\ntask {result.status}: {result.error}\n")
    out.write(f"[task {result.task_id} · {result.status} · {result.turns} turn(s) · {result.tokens} tokens · "
              f"{result.duration_ms / 1000:.1f} s]\n")


def cmd_ask(args: argparse.Namespace) -> int:
    config, source = _load(args)
    if not config.llm.configured:
        print(f"pyuse: {NOT_CONFIGURED}", file=sys.stderr)
        return 2
    trace_out = sys.stderr if args.json else sys.stdout

    async def run() -> TaskResult:
        async with Gateway(config, source) as gateway:
            return await gateway.run_task(args.text, origin="cli", device_ids=args.device,
                                          on_event=TracePrinter(trace_out))

    result = asyncio.run(run())
    print_result(result, trace_out)
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False))
    return 0 if result.status == "done" else 1


def cmd_tasks(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    if not config.db_path.exists():
        print(f"no tasks yet ({config.db_path} does not exist)")
        return 0
    store = Store(config.db_path)
    try:
        if args.task_id:
            return _show_task(store, args.task_id, args.json)
        tasks = store.list_tasks(limit=args.limit)
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
    finally:
        store.close()


def _show_task(store: Store, task_id: str, as_json: bool) -> int:
    task = store.get_task(task_id)
    if task is None:
        print(f"no task with id {task_id!r} (or the prefix matches several)", file=sys.stderr)
        return 1
    steps = store.steps(task.id)
    audit = store.audit_rows(task.id)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    config, source = _load(args)
    return asyncio.run(run_demo(config))


if __name__ == "__main__":
    sys.exit(main())
