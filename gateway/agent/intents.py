"""The local fast path: simple commands understood without a model, the way Home Assistant does it.

Sentences are matched by hassil against the home-assistant-intents sentence data (English and Chinese here),
with the exposed devices' names and areas as slot lists; Chinese names for English-named devices and rooms
come from gateway/agent/vocabulary.toml. A match names a device (or an area and a kind of device); the
device doc's intent template becomes the code, which runs in the same sandbox under the same policy as model
code. Ambiguity never guesses: two devices fit, an area has no such device, or a name is unknown, and the
command goes to the model (or, with no model, back to the person as a question). Only "the lights" (plural, or
with "all"; in Chinese a room's 灯, which has no plural) act on several devices at once. Commands with a
negation, a delay, a condition or several actions are never taken, whatever they match (vocabulary.toml
[fast_path.refuse]): a wrong action is worse than a refusal.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import string
import textwrap
import tomllib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hassil import Intents, recognize, recognize_best
from hassil.intents import SlotList, TextSlotList, TextSlotValue

from gateway.agent.numbers import normalize_numbers
from gateway.agent.retrieval import CJK, language_of, vocabulary, words
from gateway.devices.capabilities import IntentTemplates
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.untrusted import one_line

log = logging.getLogger(__name__)

AMBIGUOUS = "ambiguous:"
# ECMA-48 CSI and OSC sequences (colours, titles): a device name holding one is still said without it.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
# What "turn up"/"brighter" (PyuseIncrease) and "turn down"/"dimmer" (PyuseDecrease) run: the doc's template.
RELATIVE = {"PyuseIncrease": "increase", "PyuseDecrease": "decrease"}
# The only intents the fast path acts on (Home Assistant's, then sentences.toml's own); matching others (timers,
# media...) would cost time.
HANDLED = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassClimateSetTemperature", "HassClimateGetTemperature",
           "HassGetState", "HassSetPosition", "PyuseIncrease", "PyuseDecrease")


@cache
def _sentences(language: str) -> Intents:
    """Home Assistant's sentences for a language, with ours (gateway/agent/sentences.toml) added."""
    import home_assistant_intents

    data = home_assistant_intents.get_intents(language)
    if data is None:
        raise LookupError(f"home-assistant-intents has no sentences for {language}")
    data["intents"] = {name: intent for name, intent in data["intents"].items() if name in HANDLED}
    extra = tomllib.loads((importlib.resources.files("gateway.agent") / "sentences.toml").read_text("utf-8"))
    for entry in extra.get(language, []):
        block = {"sentences": entry["sentences"]}
        for key in ("slots", "requires_context"):
            if key in entry:
                block[key] = entry[key]
        data["intents"].setdefault(entry["intent"], {"data": []})["data"].append(block)
    return Intents.from_dict(data)


@dataclass
class LocalPlan:
    """What the fast path will do: code for the sandbox and how to phrase the answer."""

    action: str  # an IntentTemplates field: turn_on, set_level, read, ...
    devices: list[Device]  # one, or every light a plural command names
    code: str
    language: str
    params: dict[str, Any] = field(default_factory=dict)
    place: str = ""
    domain: str = ""  # the devices' domain, for the answer's words ("brighter" for a light, "warmer" for heating)

    @property
    def device(self) -> Device:
        """The device acted on (the first one of several)."""
        return self.devices[0]

    def answer(self, value: Any) -> str:
        answers = vocabulary()["answers"][self.language]
        if len(self.devices) > 1:
            names = answers["separator"].join(device.name for device in self.devices)
            several: str = answers["several"][self.action]
            return several.format(count=len(self.devices), names=names, **self.params)
        template: str = answers.get(f"{self.action}_{self.domain}", answers[self.action])
        return template.format(name=self.device.name, value=value, place=self.place or self.device.area,
                               **self.params)


@dataclass
class Unclear:
    """The command is simple but does not say which device: ask instead of guessing."""

    question: str
    choices: list[Device] = field(default_factory=list)  # the devices it may mean: the person picks one
    # or the command to plan once the person has said the value it lacks ("set the floor lamp to {answer}%")
    follow_up: str | None = None


class LocalIntents:
    def __init__(self, docs: DocLibrary) -> None:
        self.docs = docs
        data = vocabulary()
        self._chinese = {english: chinese for chinese, english in data["translations"].items()}
        fast_path = data["fast_path"]
        self._light_words, self._plural_words = fast_path["light_words"], fast_path["plural_words"]
        # What may act on several lights at once: what has an answer for several (on, off, a level, brighter...).
        self._several = {language: set(answers["several"]) for language, answers in data["answers"].items()}
        self._refusals = {reason: re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.IGNORECASE)
                          for reason, patterns in fast_path["refuse"].items()}

    def warm_up(self) -> None:
        """hassil compiles its templates on first use (about 0.1 s per language); do it before the first command."""
        for language in ("en", "zh-CN"):
            recognize("turn on the warm up lamp", _sentences(language),
                      slot_lists=self._slot_lists([Device(id="x", name="warm up lamp", kind="zigbee_bulb",
                                                          transport="mqtt", area="hall")]))

    def match(self, text: str, devices: list[Device]) -> LocalPlan | Unclear | None:
        language = language_of(text)
        sentences = _sentences("zh-CN" if language == "zh" else "en")
        spoken = normalize_numbers(text) if language == "en" else text.strip()
        refusal = self.refusal(spoken)
        if refusal:
            log.info("fast path leaves a command with %s to the model: %s", refusal, text)
            return None
        plural = _mentions(spoken, self._plural_words)
        slots = self._slot_lists(devices)
        # As Home Assistant does: a reading that names a device beats one that only names a room and a domain;
        # when the device it names is not in the room it also names, the plainest reading gets its turn.
        for result in (recognize_best(spoken, sentences, slot_lists=slots, best_slot_name="name"),
                       recognize(spoken, sentences, slot_lists=slots)):
            if result is None:
                return None
            entities = {name: entity.value for name, entity in result.entities.items()}
            try:
                plan = self._plan(result.intent.name, entities, devices, language, plural)
            except ValueError as exc:  # e.g. 150 % brightness: not simple after all
                log.info("local match set aside: %s", exc)
                return None
            if plan is not None:
                return plan
        return None

    def refusal(self, spoken: str) -> str | None:
        """What makes a command one the fast path never takes ("negation", "delay", "condition", "several"), or
        None. `spoken` has its numbers as digits."""
        folded = spoken.casefold().replace("\u2019", "'")  # don’t -> don't
        return next((reason for reason, pattern in self._refusals.items() if pattern.search(folded)), None)

    # slot lists: every name and area the command may use, in English and in Chinese
    def _slot_lists(self, devices: list[Device]) -> dict[str, SlotList]:
        by_text: dict[tuple[str, str], list[str]] = {}
        for device in devices:
            doc = self.docs.get(device.kind)
            domain = doc.intents.domain if doc else None
            if domain is None:
                continue
            for text in self._spellings(device):
                by_text.setdefault((text, domain), []).append(device.id)
        # The domain is the context Home Assistant's sentences filter on ("turn on {name}" wants a light, ...).
        # allow_template=False: device text is literal, never hassil syntax ("Lamp [2" would not even parse).
        names = [TextSlotValue.from_tuple((text, ids[0] if len(ids) == 1 else AMBIGUOUS + ",".join(ids),
                                           {"domain": domain}), allow_template=False)
                 for (text, domain), ids in by_text.items()]
        areas: dict[str, str] = {}
        for device in devices:
            if plain(device.area):
                areas[plain(device.area)] = device.area
                chinese = self._chinese.get(re.sub(r"\s+\d+$", "", device.area.casefold()))
                if chinese and not re.search(r"\d+$", device.area):
                    areas[chinese] = device.area
        return {"name": TextSlotList(name="name", values=names),
                "area": TextSlotList(name="area", values=[TextSlotValue.from_tuple(item, allow_template=False)
                                                          for item in areas.items()]),
                "floor": TextSlotList(name="floor", values=[])}

    def _spellings(self, device: Device) -> set[str]:
        """How people name the device: its name and aliases; without its area ("desk lamp") and with it first
        ("office desk lamp"); without a last word that only says its kind ("front door" for "Front Door Lock");
        in Chinese where the vocabulary knows the words."""
        area = " ".join(words(device.area))
        area_words = set(area.split())
        doc = self.docs.get(device.kind)
        kind_words = {keyword.casefold() for keyword in (doc.keywords if doc else []) if " " not in keyword}
        spellings = set()
        for name in map(plain, (device.name, *device.aliases)):
            if not name:
                continue
            spellings.add(name)
            own = " ".join(word for word in name.split() if word not in area_words)
            if not own:
                continue
            if not set(own.split()) <= kind_words:  # "light" alone, from "Living Room Light", names no device
                spellings.add(own)
            if area:
                spellings.add(f"{area} {own}")
            head, _, last = own.rpartition(" ")
            if head and last in kind_words:
                spellings.add(head)
            if own in self._chinese:
                spellings.add(self._chinese[own])
        return spellings

    # resolving the match
    def _plan(self, intent: str, entities: dict[str, Any], devices: list[Device], language: str,
              plural: bool) -> LocalPlan | Unclear | None:
        targets = self._targets(entities, devices, intent, plural)
        if targets is None:
            return None
        # Chinese has no plural: 卧室的灯 ("the bedroom's light(s)") names no one light, so it is every light there,
        # as Home Assistant reads an area and a domain; English "the office light" (singular) still asks which one.
        room_plural = language == "zh" and isinstance(entities.get("area"), str)
        every_light = ((plural or room_plural) and entities.get("domain") == "light"
                       and not isinstance(entities.get("name"), str))
        if len(targets) > 1 and not every_light:
            choices = ", ".join(f"{device.name} ({device.id}{', ' + device.area if device.area else ''})"
                                for device in targets)
            return Unclear(vocabulary()["answers"][language]["which"].format(choices=choices), targets)
        if intent == "PyuseAskLevel":
            answers = vocabulary()["answers"][language]
            return Unclear(answers["how_much"].format(name=targets[0].name),
                           follow_up=answers["set_to"].format(name=targets[0].name, answer="{answer}"))
        actions = {self._action(intent, entities, device) for device in targets}
        if len(actions) != 1:  # one light cannot do what the others do (dim a relay): not simple after all
            return None
        action, params = actions.pop()
        if action is None or (len(targets) > 1 and action not in self._several[language]):
            return None  # "are the kitchen lights on?": a question about several is the model's
        return LocalPlan(action, targets, self._code(action, targets, dict(params)), language, dict(params),
                         place=str(entities.get("area", "")), domain=self._templates(targets[0]).domain or "")

    def _code(self, action: str, targets: list[Device], params: dict[str, Any]) -> str:
        """The sandbox code: the doc's template for each device, then final_answer. For several devices each is
        tried, so one offline light does not keep the others on, and a failure still ends the task failed."""
        values = {name: repr(value) for name, value in params.items()}
        steps = [(device, string.Template(getattr(self._templates(device), action)).substitute(values))
                 for device in targets]
        if len(steps) == 1:
            device, step = steps[0]
            step = f"final_answer({step})" if action.startswith("read") else f"{step}\nfinal_answer(True)"
            return f"dev = devices[{device.id!r}]\n{step}"
        by_step: dict[str, list[str]] = {}  # one loop per template keeps the trace short
        for device, step in steps:
            by_step.setdefault(step, []).append(device.id)
        lines = ["failed = []"]
        for step, ids in by_step.items():
            lines += [f"for name in {ids!r}:", "    dev = devices[name]", "    try:", textwrap.indent(step, " " * 8),
                      "    except Exception as error:", "        failed.append(f'{dev.name}: {error}')"]
        lines += ["if failed:", "    raise RuntimeError('not done on ' + '; '.join(failed) + ' (the others are done)')",
                  "final_answer(True)"]
        return "\n".join(lines)

    def _targets(self, entities: dict[str, Any], devices: list[Device], intent: str,
                 plural: bool) -> list[Device] | None:
        by_id = {device.id: device for device in devices}
        name, area, domain = entities.get("name"), entities.get("area"), entities.get("domain")
        if isinstance(name, str):
            ids = name[len(AMBIGUOUS):].split(",") if name.startswith(AMBIGUOUS) else [name]
            candidates = [by_id[device_id] for device_id in ids if device_id in by_id]
            if area:
                candidates = [device for device in candidates if device.area.casefold() == str(area).casefold()]
            return candidates or None
        if not isinstance(area, str):
            # With no room, only "all the lights" names devices: the whole home's (never all switches, covers...).
            if domain != "light" or not plural:
                return None
            return [device for device in devices if self._in_domain(device, "light")] or None
        in_area = [device for device in devices if device.area.casefold() == area.casefold()]
        if intent == "HassClimateGetTemperature":
            wanted = [device for device in in_area if self._templates(device).read_temperature]
            sensors = [device for device in wanted if self._templates(device).domain == "sensor"]
            return sensors or wanted or None  # a room sensor says more about the room than a radiator's valve
        if isinstance(domain, str):
            return [device for device in in_area if self._in_domain(device, domain)] or None
        return None

    def _in_domain(self, device: Device, domain: str) -> bool:
        """Of that domain by its doc; a light is also a switch named one ("Garage Ceiling Light" on a relay)."""
        templates = self._templates(device)
        if domain == "light" and templates.domain == "switch":
            return any(_mentions(name, self._light_words) for name in (device.name, *device.aliases))
        return templates.domain == domain

    def _templates(self, device: Device) -> IntentTemplates:
        """Its doc's fast-path templates; none at all for a kind without a doc."""
        doc = self.docs.get(device.kind)
        return doc.intents if doc else IntentTemplates()

    def _action(self, intent: str, entities: dict[str, Any],
                device: Device) -> tuple[str | None, tuple[tuple[str, Any], ...]]:
        """The doc's template to run and its parameters (hashable, so several devices' can be compared)."""
        templates = self._templates(device)
        if intent in ("HassTurnOn", "HassTurnOff"):
            on = intent == "HassTurnOn"
            action = {"lock": "lock" if on else "unlock", "cover": "open" if on else "close"}.get(
                templates.domain or "", "turn_on" if on else "turn_off")
            return (action if getattr(templates, action) else None), ()
        if intent == "HassLightSet" and "brightness" in entities and templates.set_level:
            level = _number(entities["brightness"], 0, 100)
            # 0 % is off, and is answered so; turn_off also keeps the brightness the light comes back on at.
            return ("turn_off", ()) if level == 0 and templates.turn_off else ("set_level", (("level", level),))
        if intent == "HassClimateSetTemperature" and "temperature" in entities and templates.set_temperature:
            return "set_temperature", (("temperature", _number(entities["temperature"], 5, 35)),)
        if intent == "HassSetPosition" and "position" in entities and templates.set_position:
            return "set_position", (("position", _number(entities["position"], 0, 100)),)
        if intent == "HassClimateGetTemperature" and templates.read_temperature:
            return "read_temperature", ()
        if intent == "HassGetState" and templates.read:
            return "read", ()
        if intent in RELATIVE and getattr(templates, RELATIVE[intent]):
            return RELATIVE[intent], ()
        return None, ()


def plain(text: str) -> str:
    """Device text as people say it: one line, casefolded, without terminal escape sequences ("\\x1b[31mRed
    Lamp\\x1b[0m" is "red lamp")."""
    return one_line(ANSI_ESCAPE.sub("", text), limit=None).casefold()


def _mentions(text: str, words: list[str]) -> bool:
    """Whether `text` has one of `words`: English ones as whole words, Chinese ones anywhere (no spaces there)."""
    found = set(re.findall(r"[a-z']+", text.casefold()))
    return any(word in text if CJK.search(word) else word in found for word in words)


def _number(value: Any, low: float, high: float) -> float | int:
    number = float(value)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}..{high}")
    return int(number) if number.is_integer() else number
