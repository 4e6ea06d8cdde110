"""`help`: what works without a model on this home, from the devices present.

Each example is written from a device or a room the gateway knows (in English, and in Chinese where the vocabulary
has the room's name), then kept only if the fast path takes it as it stands, so help never shows a command that
would ask "which one?" or need a model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gateway.agent.intents import LocalIntents, LocalPlan
from gateway.agent.retrieval import vocabulary
from gateway.devices.model import Device

INTRO = ("Without a model, simple commands work: on and off, a level, brighter or dimmer, a temperature, a reading "
         "— for one device, or for every light of a room or the home — in English or Chinese. For example:")
TRIES = 3  # candidates tried for each kind of example: each try is a full match against every device
ANYTHING_ELSE = "Anything else (several steps, conditions, delays) needs a model: see [llm] in the config."


@dataclass(frozen=True)
class Help:
    text: str
    examples: list[str]


def help_for(local: LocalIntents, devices: list[Device], model_configured: bool) -> Help:
    """The help text and the example commands for `devices` (the devices a task may use)."""
    found = examples(local, devices)
    lines = [INTRO, *(f"  {example}" for example in found)]
    if not found:
        lines.append("  (none yet: no device the fast path knows is present)")
    if not model_configured:
        lines.append(ANYTHING_ELSE)
    return Help("\n".join(lines), found)


def examples(local: LocalIntents, devices: list[Device]) -> list[str]:
    """One working command per kind of thing present (a light, a level, a switch, a room's lights, all the lights, a
    temperature, heating, a lock), each kept only when the fast path acts on it as it stands. A few candidates are
    tried for each, so that a home of a thousand devices is answered in seconds, not minutes."""
    kept: list[str] = []
    taken: set[tuple[str, ...]] = set()  # what an example does: one example per action, domain and reach
    for several, candidates in _candidates(local, devices):
        for candidate in candidates[:TRIES]:
            plan = local.match(candidate, devices)
            if not isinstance(plan, LocalPlan) or (several and len(plan.devices) < 2):
                continue
            reach = "room" if plan.place else "home"
            deed = (plan.language, plan.action, reach if len(plan.devices) > 1 or plan.action == "read_temperature"
                    else plan.domain)
            if deed not in taken:
                taken.add(deed)
                kept.append(candidate)
                break
    return kept


def _candidates(local: LocalIntents, devices: list[Device]) -> list[tuple[bool, list[str]]]:
    """For each kind of example, whether it is about several devices, and the commands to try, likeliest first."""
    by_domain: dict[str, list[Device]] = {}
    for device in devices:
        doc = local.docs.get(device.kind)
        if doc is not None and doc.intents.domain is not None:
            by_domain.setdefault(doc.intents.domain, []).append(device)
    lights, switches = by_domain.get("light", []), by_domain.get("switch", [])
    # The busiest rooms first: the likeliest to have several lights, a sensor, heating.
    crowd = Counter(device.area for device in devices if device.area)
    areas = sorted(crowd, key=lambda area: -crowd[area])
    chinese = {english: chinese for chinese, english in vocabulary()["translations"].items()}
    rooms = [chinese[area.casefold()] for area in areas if area.casefold() in chinese]
    return [(False, [f"turn on the {_spoken(device)}" for device in lights]),
            (False, [f"set the {_spoken(device)} to 50%" for device in lights]),
            (False, [f"make the {_spoken(device)} brighter" for device in lights]),
            (False, [f"turn on the {_spoken(device)}" for device in switches]),
            (True, [f"turn off the lights in the {area}" for area in areas]),
            (True, ["turn off all the lights"]),
            (False, [f"what is the temperature in the {area}" for area in areas]),
            (False, [f"turn up the heating in the {area}" for area in areas]),
            (False, [f"lock the {_spoken(device)}" for device in by_domain.get("lock", [])]),
            (True, [f"打开{room}的灯" for room in rooms]),
            (True, ["关掉所有的灯"]),
            (False, [f"{room}的温度是多少" for room in rooms])]


def _spoken(device: Device) -> str:
    """The shortest way the device is named ("front door" for "Hallway Front Door Lock")."""
    return min((device.name, *device.aliases), key=len).lower()
