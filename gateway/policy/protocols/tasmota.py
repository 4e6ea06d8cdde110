"""Tasmota devices: `cmnd/<topic>/<Command>` with the argument as payload, read as the firmware reads it
(simulators/tasmota.py is the reference). `Backlog` runs a `;`-separated list of commands, each of them an
action here (and for the rate limit). A command with no argument (or `?`) only answers with its value.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading

POWER_WORDS = {"0": "output_off", "off": "output_off", "false": "output_off", "1": "output_on", "on": "output_on",
               "true": "output_on", "2": "output_toggle", "toggle": "output_toggle"}
DIMMER_STEPS = {"+", "-", "<", ">", "!"}  # relative changes: where they end is the device's
COMMAND = re.compile(r"(?P<base>[A-Z]+?)(?P<index>\d*)")
INTEGER = re.compile(r"[0-9]{1,9}")
COLOR = re.compile(r"#?[0-9A-Fa-f]{6,}|\d{1,3},\d{1,3},\d{1,3}(,\d{1,3})*")
DANGEROUS = {"RESTART": "reboot", "RESET": "factory_reset", "UPGRADE": "firmware_update", "UPLOAD": "firmware_update"}
SETTINGS = {"TELEPERIOD", "FADE", "SPEED", "OTAURL"}


def commands(name: str, argument: str) -> list[list[Action]]:
    """The commands that run for cmnd/<topic>/<name> (a Backlog's steps), each as its actions."""
    name = name.strip().upper()
    if name in ("BACKLOG", "BACKLOG0"):
        steps: list[list[Action]] = []
        for step in argument.split(";"):
            head, _, rest = step.strip().partition(" ")
            if head:
                steps += commands(head, rest.strip())
        return steps
    if name == "NODELAY":
        return []
    argument = "" if argument == "?" else argument
    found = COMMAND.fullmatch(name)
    if found is None:
        return [[unknown(f"{name} {argument}".strip())]]
    if argument == "" or found["base"] in ("STATE", "STATUS"):
        return [[Action("read")]]
    return [execute(found["base"], int(found["index"]) if found["index"] else None, argument)]


def execute(base: str, index: int | None, argument: str) -> list[Action]:
    channel = index or None  # Power0 is every relay
    if base == "POWER":
        word = POWER_WORDS.get(argument.lower())
        return [Action(word, channel=channel)] if word else [unknown(f"Power {argument}")]
    if base == "DIMMER" and index is None:
        if argument in DIMMER_STEPS:  # a step from wherever it is: it may switch the light on
            return [Action("set_brightness", argument), Action("output_on")]
        if not INTEGER.fullmatch(argument):
            return [unknown(f"Dimmer {argument}")]
        percent = float(min(int(argument), 100))
        return [Action("set_brightness", percent), Action("output_on" if percent else "output_off")]
    if base == "CT" and index is None:
        return [Action("set_color_temp", float(round(1_000_000 / min(max(int(argument), 153), 500))))] \
            if INTEGER.fullmatch(argument) else [unknown(f"CT {argument}")]
    if base == "COLOR" and index in (None, 1, 2):
        if not COLOR.fullmatch(argument.strip()):
            return [unknown(f"Color {argument}")]
        return [Action("set_color", argument.strip())] + ([] if index == 2 else [Action("output_on")])
    if base in DANGEROUS and index is None:
        return [Action(DANGEROUS[base])]
    if base in SETTINGS and index is None:
        return [Action("configure", base.lower())]
    return [unknown(f"{base}{index or ''} {argument}")]


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    topic, prefix = call.topic or "", f"cmnd/{device.base_topic}/"
    if topic.startswith(prefix):
        command = topic[len(prefix):]
        if not command or "/" in command:
            return Reading([])  # the device takes cmnd/<topic>/<Command> only
        steps = commands(command, (call.payload or "").strip())
        return Reading([action for step in steps for action in step], commands=len(steps))
    if topic.startswith(("stat/", "tele/")):
        return Reading([])  # what the device says, not what it is told
    return Reading([unknown(topic)])
