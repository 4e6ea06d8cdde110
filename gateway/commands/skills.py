"""`pyuse skills`: list, show, run, save and delete saved skills. Running goes through the daemon when one owns
the data dir; the others read and write the skills folder and the store directly."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import quote

from gateway.agent.llm import NOT_CONFIGURED, LLMClient
from gateway.app import Gateway
from gateway.commands.common import follow, key_values, load, terminal_confirmer
from gateway.config import Config
from gateway.console import TracePrinter, print_result
from gateway.errors import GatewayError
from gateway.remote import DaemonUnavailable, RemoteError, running_daemon
from gateway.saved_skills import SavedSkills, SkillNotFound, skills_of
from gateway.tasks import TaskResult


def cmd_skills(args: argparse.Namespace) -> int:
    config, source = load(args)
    if args.action == "run":
        return _run_skill(config, source, args)
    if args.action == "save":
        return asyncio.run(_save_skill(config, args.task_id))
    with skills_of(config) as skills:
        try:
            if args.action == "delete":
                print(f"deleted {skills.delete(args.name)}")
                return 0
            if args.action == "show":
                return _show_skill(skills, args.name)
        except SkillNotFound as exc:
            print(f"pyuse skills: {exc}", file=sys.stderr)
            return 1
        return _list_skills(skills, args.json)


def _show_skill(skills: SavedSkills, name: str) -> int:
    entry = skills.entry(skills.get(name))
    print(f"# {skills.directory / (entry.skill.name + '.py')}\n{entry.skill.source.rstrip()}")
    print(f"# {entry.runs} run(s), {entry.failures} failed"
          + (f"; saved from task {entry.task_id}" if entry.task_id else "")
          + (f"; last error: {entry.last_error}" if entry.last_error else ""))
    return 0


def _list_skills(skills: SavedSkills, as_json: bool) -> int:
    entries, errors = skills.entries()
    if as_json:
        print(json.dumps({"skills": [{"name": entry.skill.name, "doc": entry.skill.doc, "params": entry.skill.params,
                                      "triggers": entry.skill.triggers, "runs": entry.runs,
                                      "failures": entry.failures, "task_id": entry.task_id} for entry in entries],
                          "errors": errors}, ensure_ascii=False))
        return 0
    if not entries and not errors:
        print(f"no skills yet: save one from a task with `pyuse skills save TASK`, or write one in "
              f"{skills.directory}/")
    for entry in entries:
        skill = entry.skill
        signature = ", ".join(f"{name}: {kind}" for name, kind in skill.params.items())
        print(f"{skill.name}({signature})  {skill.doc}  [{entry.runs} run(s), {entry.failures} failed]")
        for trigger in skill.triggers:
            print(f"    \"{trigger}\"")
    for error in errors:
        print(f"skipped: {error}")
    return 0


def _run_skill(config: Config, source: str, args: argparse.Namespace) -> int:
    try:
        given = key_values(args.arg, "--arg")
    except ValueError as exc:
        print(f"pyuse skills run: {exc}", file=sys.stderr)
        return 2

    async def run() -> TaskResult | None:
        confirm = await terminal_confirmer(sys.stdout)
        client = await running_daemon(config)
        if client is not None:  # the daemon owns the data dir: the skill runs there, and is shown here
            try:
                task = await client.call("POST", f"/api/skills/{quote(args.name, safe='')}/run", {"args": given})
            except RemoteError as exc:
                print(f"pyuse skills run: {exc}", file=sys.stderr)
                return None
            return await follow(client, task["id"], TracePrinter(sys.stdout), confirm)
        async with Gateway(config, source) as gateway:
            await gateway.settle_discovery()
            try:
                return await gateway.run_skill(args.name, given, "cli", confirm, TracePrinter(sys.stdout))
            except GatewayError as exc:  # no such skill, or arguments that do not fit it
                print(f"pyuse skills run: {exc}", file=sys.stderr)
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


async def _save_skill(config: Config, task_id: str) -> int:
    if not config.llm.configured:
        print(f"pyuse skills save: writing a skill needs a model, and {NOT_CONFIGURED}", file=sys.stderr)
        return 2
    if not config.db_path.exists():
        print(f"pyuse skills save: no tasks yet ({config.db_path} does not exist)", file=sys.stderr)
        return 1
    llm = LLMClient(config.llm)
    try:
        with skills_of(config) as skills:
            skill, tokens = await skills.save(llm, task_id)
            path = skills.directory / f"{skill.name}.py"
    except GatewayError as exc:  # the task cannot become a skill, or the model failed
        print(f"pyuse skills save: {exc}", file=sys.stderr)
        return 1
    finally:
        await llm.close()
    signature = ", ".join(f"{name}: {kind}" for name, kind in skill.params.items())
    print(f"saved {path} ({tokens} tokens): {skill.name}({signature})")
    for trigger in skill.triggers:
        print(f'    "{trigger}"')
    return 0
