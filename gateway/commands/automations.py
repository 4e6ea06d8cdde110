"""`pyuse automations`: the running daemon's automations, through its API."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError

from gateway.commands.common import key_values, load
from gateway.config import AutomationEntry
from gateway.remote import DaemonClient, DaemonUnavailable, RemoteError


def cmd_automations(args: argparse.Namespace) -> int:
    config, _ = load(args)
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
                                         "skill": args.skill or "", "args": key_values(args.arg, "--arg")}
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
