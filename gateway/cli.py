"""The `pyuse` command: its arguments, and which command runs. The commands are in gateway/commands/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.commands.automations import cmd_automations
from gateway.commands.service import cmd_demo, cmd_doctor, cmd_run, cmd_sim, cmd_token
from gateway.commands.skills import cmd_skills
from gateway.commands.tasks import cmd_ask, cmd_devices, cmd_exec, cmd_prompt, cmd_tasks
from gateway.config import ConfigError

Command = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    handler: Command = args.handler
    try:
        return handler(args)
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

    def command(name: str, help_text: str, handler: Command) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", type=Path, help="config file (default: $PYUSE_CONFIG, ./pyuse.toml, "
                                                            "$XDG_CONFIG_HOME/pyuse/pyuse.toml (~/.config when "
                                                            "unset), /etc/pyuse/pyuse.toml, else built-in defaults)")
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
    demo = command("demo", "start a simulated home/lab with an embedded MQTT broker and the gateway, then take "
                           "commands at a prompt ('help' lists what works without a model)", cmd_demo)
    demo.add_argument("--data-dir", type=Path, metavar="DIR", help="keep the demo's devices, tasks and skills here "
                                                                   "(default: a temporary directory removed at exit)")
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


if __name__ == "__main__":
    sys.exit(main())
