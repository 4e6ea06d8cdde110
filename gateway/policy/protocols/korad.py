"""Korad KA3005P-style supplies: commands arrive back to back with no separator (`VSET1:13OUT1`), and the device
picks out every token it recognises, skipping any other byte (simulators/korad.py's TOKEN is the reference).

Skipped bytes are not harmless here: the device joins whatever arrives before a pause, so a stray `3` after an
earlier `VSET1:1` would read as 13 V. Anything that is not a whole token is therefore `unknown`.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading

TOKEN = re.compile(r"\*IDN\?|STATUS\?|[VI]SET1:\d{1,2}(?:\.\d{0,3})?|[VI]SET1\?|[VI]OUT1\?|OUT[01]|OVP[01]|OCP[01]"
                   r"|BEEP[01]|RCL[1-5]|SAV[1-5]|[\r\n ]+")
CHANNEL = 1  # one output


def token_actions(token: str) -> list[Action]:
    if token.endswith("?"):
        return [Action("read")]
    head, _, value = token.partition(":")
    if head == "VSET1":
        return [Action("set_voltage", float(value), CHANNEL)]
    if head == "ISET1":
        return [Action("set_current", float(value), CHANNEL)]
    on = token.endswith("1")
    if token.startswith("OUT"):
        return [Action("output_on" if on else "output_off", channel=CHANNEL)]
    if token.startswith(("OVP", "OCP")):
        return [Action("protection_on" if on else "protection_off", token[:3].lower(), CHANNEL)]
    if token.startswith("RCL"):  # a memory set from the front panel: any voltage and current
        return [Action("set_voltage", None, CHANNEL), Action("set_current", None, CHANNEL)]
    return [Action("configure", "beep" if token.startswith("BEEP") else f"memory {token[3]}")]


def read_burst(text: str) -> list[list[Action]]:
    """The commands of a burst, each as its actions."""
    commands: list[list[Action]] = []
    position, skipped = 0, ""
    while position < len(text):
        found = TOKEN.match(text, position)
        if found is None:
            skipped += text[position]
            position += 1
            continue
        if skipped:
            commands.append([unknown(skipped)])
            skipped = ""
        if found.group(0).strip():
            commands.append(token_actions(found.group(0)))
        position = found.end()
    if skipped:
        commands.append([unknown(skipped)])
    return commands


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    commands = read_burst(call.command or "")
    return Reading([action for command in commands for action in command], commands=len(commands))
