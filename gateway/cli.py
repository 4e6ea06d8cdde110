"""The `pyuse` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from gateway.agent.llm import NOT_CONFIGURED
from gateway.agent.loop import EventSink
from gateway.agent.prompt import Prompt
from gateway.agent.skills import SkillLibrary
from gateway.app import Gateway, TaskResult
from gateway.config import Config, ConfigError, find_config_file, load_config
from gateway.console import Console, TracePrinter, print_prompt, print_result
from gateway.devices.docs import DocLibrary
from gateway.lock import DataDirBusy, holder
from gateway.logs import setup_logging
from gateway.policy import Confirmer, ScopeError
from gateway.remote import DaemonClient, DaemonUnavailable, RemoteError, running_daemon
from gateway.sandbox.manager import SandboxUnavailable
from gateway.store import Store
from gateway.textfile import UnreadableFile, read_text


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

    command("run", "run the gateway as a service: discovery, the HTTP API and web page, the MQTT command topic",
            cmd_run)

    token = command("token", "print the API token, which every API request needs (scripts send 'Authorization: "
                             "Bearer <token>'; the web page gets it as a cookie, or asks for it off loopback)",
                    cmd_token)
    token.add_argument("--rotate", action="store_true", help="replace it with a new one (restart the daemon)")

    ask = command("ask", "run one command (by the fast path, a saved skill or the model) in the sandbox, "
                         "showing each turn", cmd_ask)
    ask.add_argument("text", help='the command, e.g. "turn on the desk plug"')
    ask.add_argument("--json", action="store_true",
                     help="print the trace to stderr and one JSON object as the last line of stdout")
    ask.add_argument("--device", action="append", metavar="ID", help="limit the task to these devices")

    tasks = command("tasks", "list recent tasks, or show one task's trace", cmd_tasks)
    tasks.add_argument("task_id", nargs="?", metavar="ID", help="a task id (a unique prefix is enough)")
    tasks.add_argument("--limit", type=positive_int, default=20, help="how many tasks to list (default 20)")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")

    execute = command("exec", "run a Python file in a fresh sandbox job under the same policy, and print what "
                              "the model would have seen (for debugging and security testing)", cmd_exec)
    execute.add_argument("file", type=Path, help="a Python file; '-' reads standard input")
    execute.add_argument("--device", action="append", metavar="ID", help="limit the job to these devices")

    devices = command("devices", "list the devices the gateway knows (discovered, declared and remembered)",
                      cmd_devices)
    devices.add_argument("--json", action="store_true", help="one JSON array, for scripts")

    prompt = command("prompt", "print the exact messages a command would send to the model, with their token "
                               "estimate", cmd_prompt)
    prompt.add_argument("text", help="the command")
    prompt.add_argument("--device", action="append", metavar="ID", help="limit the task to these devices")

    skills = commands.add_parser("skills", help="list, show, run, save and delete saved skills",
                                 description="Saved skills: Python functions in <data_dir>/skills/ that solved a "
                                             "task once; a command matching a skill's TRIGGERS runs it without "
                                             "a model.")
    actions = skills.add_subparsers(dest="action", metavar="ACTION")
    skills.set_defaults(handler=cmd_skills, action="list", config=None, verbose=False, json=False)

    def skill_action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", type=Path, help="config file")
        sub.add_argument("-v", "--verbose", action="store_true", help="log more")
        return sub

    skill_action("list", "list the skills with their parameters, triggers and runs (the default)").add_argument(
        "--json", action="store_true", help="one JSON array, for scripts")
    skill_action("show", "print a skill's file and how it has run").add_argument("name")
    run_skill = skill_action("run", "run a skill in the sandbox, under the same policy as any task")
    run_skill.add_argument("name")
    run_skill.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="a parameter's value")
    skill_action("delete", "delete a skill's file").add_argument("name")
    skill_action("save", "have the model turn a finished task into a skill").add_argument(
        "task_id", metavar="TASK", help="a task id (a unique prefix is enough)")

    automations = commands.add_parser(
        "automations", help="list, add, trigger, resume, recompile and delete the running gateway's automations",
        description="Automations run inside `pyuse run`; these commands ask it through its API. Define lasting "
                    "ones with [[automations]] in the config, or add them here (kept in the gateway's store).")
    automation_actions = automations.add_subparsers(dest="action", metavar="ACTION")
    automations.set_defaults(handler=cmd_automations, action="list", config=None, verbose=False, json=False)

    def automation_action(name: str, help_text: str, named: bool = True) -> argparse.ArgumentParser:
        sub = automation_actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", type=Path, help="config file")
        sub.add_argument("-v", "--verbose", action="store_true", help="log more")
        if named:
            sub.add_argument("name")
        return sub

    automation_action("list", "each automation with its trigger, action, state and last run (the default)",
                      named=False).add_argument("--json", action="store_true", help="one JSON object, for scripts")
    add = automation_action("add", "add an automation: one trigger (--mqtt, --device, --every or --at) and one "
                                   "action (--action words, or --skill NAME with --arg)")
    add.add_argument("--mqtt", metavar="TOPIC", help="an MQTT topic filter (+ and # allowed)")
    add.add_argument("--device", metavar="ID", help="a device id: its state changing")
    add.add_argument("--every", metavar="INTERVAL", help="30s, 5m, 2h, 1d")
    add.add_argument("--at", metavar="HH:MM", help="daily, local time")
    add.add_argument("--when", metavar="CONDITION", help='on the payload or state, e.g. "occupancy == true"')
    add.add_argument("--action", dest="action_words", metavar="WORDS",
                     help="a task in words, compiled into a skill on its first run")
    add.add_argument("--skill", metavar="NAME", help="a saved skill to run")
    add.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="the skill's argument")
    add.add_argument("--debounce", type=float, metavar="SECONDS", help="ignore triggers this soon after a run")
    add.add_argument("--max-runs-per-minute", type=int, metavar="N", help="more is a loop: stop it (0: no limit)")
    automation_action("trigger", "run it now, as if triggered")
    automation_action("resume", "let a stopped automation run again")
    automation_action("recompile", "have the model compile its words again on the next run")
    automation_action("delete", "delete an automation added through the API or this command")

    command("doctor", "report the sandbox layers this machine gives, the MQTT broker, the model, the device docs",
            cmd_doctor)
    command("demo", "start a simulated home/lab with an embedded MQTT broker and the gateway, then take "
                    "commands at a prompt", cmd_demo)
    # Its own parser reads the arguments (`pyuse sim --help`): none is an option here.
    sim = commands.add_parser("sim", help="run simulated devices (SCENARIO: home, lab, large) until Ctrl-C",
                              add_help=False, prefix_chars="\0")
    sim.add_argument("args", nargs=argparse.REMAINDER)
    sim.set_defaults(handler=cmd_sim)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: a count from 1 to a billion (SQLite reads a negative limit as none, and stops at 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a whole number") from None
    if not 1 <= value <= 1_000_000_000:
        raise argparse.ArgumentTypeError(f"{text:.40} is not from 1 to 1000000000")
    return value


def _load(args: argparse.Namespace, level: str | None = None) -> tuple[Config, str]:
    """The config, and logging set up: warnings only for one-shot commands unless -v."""
    path = find_config_file(args.config)
    config = load_config(path)
    setup_logging("debug" if args.verbose else level or "warning", config.gateway.log_format == "json")
    return config, str(path) if path else "defaults"


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.daemon import run_daemon

    path = find_config_file(args.config)
    config = load_config(path)
    setup_logging("debug" if args.verbose else config.gateway.log_level, config.gateway.log_format == "json")
    return asyncio.run(run_daemon(config, str(path) if path else "defaults"))


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.api.auth import load_or_create_token, rotate_token

    config, _ = _load(args)
    if args.rotate:
        print(rotate_token(config.gateway.data_dir))
        print("rotated: restart `pyuse run` for it to take effect", file=sys.stderr)
    else:
        print(load_or_create_token(config.gateway.data_dir)[0])
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    config, source = _load(args)
    trace_out = sys.stderr if args.json else sys.stdout

    async def run() -> TaskResult:
        confirm = await _terminal_confirmer(trace_out)
        client = await running_daemon(config)
        if client is not None:  # the daemon owns the data dir: the task runs there, and is shown here
            task = await client.call("POST", "/api/tasks", {"text": args.text, "devices": args.device,
                                                            "origin": "cli"})
            return await _follow(client, task["id"], TracePrinter(trace_out), confirm)
        async with Gateway(config, source) as gateway:
            return await gateway.run_task(args.text, origin="cli", device_ids=args.device,
                                          on_event=TracePrinter(trace_out), confirm=confirm)

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


async def _follow(client: DaemonClient, task_id: str, on_event: EventSink, confirm: Confirmer | None) -> TaskResult:
    """Follow a task in the daemon; Ctrl-C here cancels it there, as it would a local one."""
    try:
        return await client.follow_task(task_id, on_event, confirm)
    except asyncio.CancelledError:
        await client.call("POST", f"/api/tasks/{task_id}/cancel")
        raise


def _own_gateway(config: Config, command: str) -> None:
    """For commands with no API route: they need a gateway of their own, so no other process may hold the data
    dir (checked here to say so; Gateway.start holds it)."""
    owner = holder(config.gateway.data_dir)
    if owner is not None:
        raise DataDirBusy(config.gateway.data_dir, owner, f"`pyuse {command}` runs a gateway of its own, and only "
                          "one may use a data dir: stop the other first")


async def _terminal_confirmer(out: TextIO):  # noqa: ANN202
    """Ask at the terminal when there is one; otherwise nobody can confirm, and dangerous calls are denied."""
    if not sys.stdin.isatty():
        return None
    console = Console(out)
    await console.start()
    return console.confirm


def cmd_exec(args: argparse.Namespace) -> int:
    config, source = _load(args)
    _own_gateway(config, "exec")
    try:
        code = sys.stdin.read() if str(args.file) == "-" else read_text(args.file)
    except (FileNotFoundError, UnreadableFile) as exc:
        print(f"pyuse exec: {args.file}: {'no such file' if isinstance(exc, FileNotFoundError) else exc}",
              file=sys.stderr)
        return 2

    async def run() -> int:
        confirm = await _terminal_confirmer(sys.stderr)
        async with Gateway(config, source) as gateway:
            try:
                task_id, execution = await gateway.run_code(code, f"exec {args.file}", args.device, confirm)
            except (ScopeError, SandboxUnavailable) as exc:
                print(f"pyuse exec: {exc}", file=sys.stderr)
                return 2
        sys.stdout.write(execution.output)
        if execution.answer is not None:
            print(f"final answer: {execution.answer}")
        print(f"[task {task_id} · {execution.status} · {execution.duration_ms:.0f} ms · layers: "
              f"{', '.join(gateway.sandbox.layers)}]", file=sys.stderr)
        return 0 if execution.status in ("ok", "final") else 1

    return asyncio.run(run())


def cmd_devices(args: argparse.Namespace) -> int:
    config, source = _load(args)

    async def run() -> list[dict[str, Any]]:
        client = await running_daemon(config)
        if client is not None:  # the daemon's registry, as the API gives it
            return await client.call("GET", "/api/devices")
        async with Gateway(config, source) as gateway:
            await gateway.settle_discovery()
            return [json.loads(device.model_dump_json()) for device in gateway.registry.all()]

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
              "(see [discovery] in config.example.toml)")
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


def cmd_prompt(args: argparse.Namespace) -> int:
    config, source = _load(args)

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
                except ScopeError as exc:
                    print(f"pyuse prompt: {exc}", file=sys.stderr)
                    return 2
        print_prompt(prompt, config.agent.prompt_budget_tokens, sys.stdout)
        return 0

    return asyncio.run(run())


def cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.doctor import run_doctor

    config, source = _load(args)
    return asyncio.run(run_doctor(config, source, sys.stdout))


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


def cmd_skills(args: argparse.Namespace) -> int:
    config, source = _load(args)
    library = SkillLibrary(config.gateway.data_dir / "skills")
    if args.action == "run":
        return _run_skill(config, source, args)
    if args.action == "save":
        return asyncio.run(_save_skill(config, library, args.task_id))
    if args.action == "delete":
        if not library.delete(args.name):
            print(f"pyuse skills: no skill named {args.name!r}", file=sys.stderr)
            return 1
        if config.db_path.exists():
            store = Store(config.db_path)
            store.forget_skill(args.name)
            store.close()
        print(f"deleted {library.directory / (args.name + '.py')}")
        return 0
    records = _skill_records(config)
    skills = library.load()
    if args.action == "show":
        skill = next((skill for skill in skills if skill.name == args.name), None)
        if skill is None:
            problems = [error for error in library.errors if error.startswith(f"{args.name}.py")]
            print(f"pyuse skills: {problems[0] if problems else f'no skill named {args.name!r}'}", file=sys.stderr)
            return 1
        print(f"# {library.directory / (skill.name + '.py')}\n{skill.source.rstrip()}")
        record = records.get(skill.name, {})
        print(f"# {record.get('runs', 0)} run(s), {record.get('failures', 0)} failed"
              + (f"; saved from task {record['task_id']}" if record.get("task_id") else "")
              + (f"; last error: {record['last_error']}" if record.get("last_error") else ""))
        return 0
    listing = [{"name": skill.name, "doc": skill.doc, "params": skill.params, "triggers": skill.triggers,
                "runs": records.get(skill.name, {}).get("runs", 0),
                "failures": records.get(skill.name, {}).get("failures", 0),
                "task_id": records.get(skill.name, {}).get("task_id")} for skill in skills]
    if args.json:
        print(json.dumps({"skills": listing, "errors": library.errors}, ensure_ascii=False))
        return 0
    if not skills and not library.errors:
        print(f"no skills yet: save one from a task with `pyuse skills save TASK`, or write one in "
              f"{library.directory}/")
    for item in listing:
        signature = ", ".join(f"{name}: {kind}" for name, kind in item["params"].items())
        print(f"{item['name']}({signature})  {item['doc']}  [{item['runs']} run(s), {item['failures']} failed]")
        for trigger in item["triggers"]:
            print(f"    \"{trigger}\"")
    for error in library.errors:
        print(f"skipped: {error}")
    return 0


def _skill_records(config: Config) -> dict[str, dict[str, object]]:
    if not config.db_path.exists():
        return {}
    store = Store(config.db_path)
    try:
        return store.skill_records()
    finally:
        store.close()


def _run_skill(config: Config, source: str, args: argparse.Namespace) -> int:
    from gateway.app import SkillArgumentError

    given = {}
    for item in args.arg:
        name, equals, value = item.partition("=")
        if not equals or not name:
            print(f"pyuse skills run: --arg {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        given[name.strip()] = value

    async def run() -> TaskResult | None:
        confirm = await _terminal_confirmer(sys.stdout)
        client = await running_daemon(config)
        if client is not None:  # the daemon owns the data dir: the skill runs there, and is shown here
            try:
                task = await client.call("POST", f"/api/skills/{quote(args.name, safe='')}/run", {"args": given})
            except RemoteError as exc:
                print(f"pyuse skills run: {exc}", file=sys.stderr)
                return None
            return await _follow(client, task["id"], TracePrinter(sys.stdout), confirm)
        async with Gateway(config, source) as gateway:
            await gateway.settle_discovery()
            try:
                return await gateway.run_skill(args.name, given, "cli", confirm, TracePrinter(sys.stdout))
            except (KeyError, SkillArgumentError) as exc:
                print(f"pyuse skills run: {exc.args[0]}", file=sys.stderr)
                return None

    try:
        result = asyncio.run(run())
    except DaemonUnavailable as exc:
        print(f"pyuse skills run: {exc}", file=sys.stderr)
        return 1
    if result is None:
        return 2
    print_result(result, sys.stdout)
    return 0 if result.status == "done" else 1


async def _save_skill(config: Config, library: SkillLibrary, task_id: str) -> int:
    from gateway.agent.llm import LLMClient, LLMError
    from gateway.agent.skill_writer import SkillWriteError, write_skill

    if not config.llm.configured:
        print(f"pyuse skills save: writing a skill needs a model, and {NOT_CONFIGURED}", file=sys.stderr)
        return 2
    if not config.db_path.exists():
        print(f"pyuse skills save: no tasks yet ({config.db_path} does not exist)", file=sys.stderr)
        return 1
    store, llm = Store(config.db_path), LLMClient(config.llm)
    try:
        docs = DocLibrary.load([config.gateway.data_dir / "device_docs"])
        skill, tokens = await write_skill(llm, store, library, docs, task_id)
    except (SkillWriteError, LLMError) as exc:
        print(f"pyuse skills save: {exc}", file=sys.stderr)
        return 1
    finally:
        await llm.close()
        store.close()
    signature = ", ".join(f"{name}: {kind}" for name, kind in skill.params.items())
    print(f"saved {library.directory / (skill.name + '.py')} ({tokens} tokens): {skill.name}({signature})")
    for trigger in skill.triggers:
        print(f'    "{trigger}"')
    return 0


def _key_values(items: list[str], what: str) -> dict[str, str]:
    values = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


def cmd_automations(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gateway.config import AutomationEntry

    config, _ = _load(args)
    client = DaemonClient(config)
    try:
        if args.action == "list":
            listing = asyncio.run(client.call("GET", "/api/automations"))["automations"]
            if args.json:
                print(json.dumps({"automations": listing}, ensure_ascii=False))
            elif not listing:
                print("no automations: add one with `pyuse automations add`, or [[automations]] in the config")
            for item in ([] if args.json else listing):
                state = f"STOPPED: {item['stopped']}" if item["stopped"] else ("on" if item["enabled"] else "off")
                action = f"skill {item['skill']}" if item["skill"] and not item["action"] else repr(item["action"])
                print(f"{item['name']}  [{state}]  {item['describe']} → {action}  "
                      f"({item['runs']} run(s), {item['dropped']} dropped, last: {item['last_status'] or '-'})")
            return 0
        if args.action == "add":
            trigger = {key: value for key in ("mqtt", "device", "every", "at", "when")
                       if (value := getattr(args, key)) is not None}
            fields: dict[str, object] = {"name": args.name, "trigger": trigger, "action": args.action_words or "",
                                         "skill": args.skill or "", "args": _key_values(args.arg, "--arg")}
            if args.debounce is not None:
                fields["debounce_s"] = args.debounce
            if args.max_runs_per_minute is not None:
                fields["max_runs_per_minute"] = args.max_runs_per_minute
            entry = AutomationEntry.model_validate(fields)
            made = asyncio.run(client.call("POST", "/api/automations", entry.model_dump(mode="json")))
            print(f"added {made['name']}: {made['describe']}")
            return 0
        path = f"/api/automations/{args.name}"
        if args.action == "delete":
            asyncio.run(client.call("DELETE", path))
            print(f"deleted {args.name}")
        else:
            reply = asyncio.run(client.call("POST", f"{path}/{args.action}"))
            print(f"{args.name}: {'started' if reply.get('started') else 'not started (disabled, stopped, debounced or busy)'}"
                  if args.action == "trigger" else f"{args.action}: {args.name}")
        return 0
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "automation"
            print(f"pyuse automations add: {where}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"pyuse automations: {exc}", file=sys.stderr)
        return 2
    except (DaemonUnavailable, RemoteError) as exc:
        print(f"pyuse automations: {exc}", file=sys.stderr)
        return 1


def cmd_sim(args: argparse.Namespace) -> int:
    from simulators.cli import main as sim_main

    return sim_main(args.args)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    config, source = _load(args)
    return asyncio.run(run_demo(config))


if __name__ == "__main__":
    sys.exit(main())
