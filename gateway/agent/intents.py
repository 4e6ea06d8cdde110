"""The local fast path: simple commands understood without a model, the way Home Assistant does it.

Sentences are matched by hassil against the home-assistant-intents sentence data (English and Chinese here),
with the exposed devices' names and areas as slot lists; Chinese names for English-named devices and rooms
come from gateway/agent/vocabulary.toml. A match names a device (or an area and a kind of device); the
device doc's intent template becomes the code, which runs in the same sandbox under the same policy as model
code. Ambiguity never guesses: two devices fit, an area has no such device, or a name is unknown, and the
command goes to the model (or, with no model, back to the person as a question).
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import string
import tomllib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hassil import Intents, recognize, recognize_best
from hassil.intents import TextSlotList, TextSlotValue

from gateway.agent.numbers import normalize_numbers
from gateway.agent.retrieval import vocabulary, words
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device

log = logging.getLogger(__name__)

CJK = re.compile(r"[\u3400-\u9fff]")
AMBIGUOUS = "ambiguous:"
# The only Home Assistant intents the fast path acts on; matching others (timers, media...) would cost time.
HANDLED = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassClimateSetTemperature", "HassClimateGetTemperature",
           "HassGetState", "HassSetPosition")


@cache
def _sentences(language: str) -> Intents:
    """Home Assistant's sentences for a language, with ours (gateway/agent/sentences.toml) added."""
    import home_assistant_intents

    data = home_assistant_intents.get_intents(language)
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
    device: Device
    code: str
    language: str
    params: dict[str, Any] = field(default_factory=dict)
    place: str = ""

    def answer(self, value: Any) -> str:
        template = vocabulary()["answers"][self.language][self.action]
        return template.format(name=self.device.name, value=value, place=self.place or self.device.area,
                               **self.params)


@dataclass
class Unclear:
    """The command is simple but does not say which device: ask instead of guessing."""

    question: str


class LocalIntents:
    def __init__(self, docs: DocLibrary) -> None:
        self.docs = docs
        data = vocabulary()
        self._chinese = {english: chinese for chinese, english in data["translations"].items()}

    def warm_up(self) -> None:
        """hassil compiles its templates on first use (about 0.1 s per language); do it before the first command."""
        for language in ("en", "zh-CN"):
            recognize("turn on the warm up lamp", _sentences(language),
                      slot_lists=self._slot_lists([Device(id="x", name="warm up lamp", kind="zigbee_bulb",
                                                          transport="mqtt", area="hall")]))

    def match(self, text: str, devices: list[Device]) -> LocalPlan | Unclear | None:
        language = "zh" if CJK.search(text) else "en"
        sentences = _sentences("zh-CN" if language == "zh" else "en")
        spoken = normalize_numbers(text) if language == "en" else text.strip()
        slots = self._slot_lists(devices)
        # As Home Assistant does: a reading that names a device beats one that only names a room and a domain;
        # when the device it names is not in the room it also names, the plainest reading gets its turn.
        for result in (recognize_best(spoken, sentences, slot_lists=slots, best_slot_name="name"),
                       recognize(spoken, sentences, slot_lists=slots)):
            if result is None:
                return None
            entities = {name: entity.value for name, entity in result.entities.items()}
            try:
                plan = self._plan(result.intent.name, entities, devices, language)
            except ValueError as exc:  # e.g. 150 % brightness: not simple after all
                log.info("local match set aside: %s", exc)
                return None
            if plan is not None:
                return plan
        return None

    # slot lists: every name and area the command may use, in English and in Chinese
    def _slot_lists(self, devices: list[Device]) -> dict[str, TextSlotList]:
        by_text: dict[tuple[str, str], list[str]] = {}
        for device in devices:
            doc = self.docs.get(device.kind)
            domain = doc.intents.domain if doc else None
            if domain is None:
                continue
            for text in self._spellings(device):
                by_text.setdefault((text, domain), []).append(device.id)
        # The domain is the context Home Assistant's sentences filter on ("turn on {name}" wants a light, ...).
        names = [TextSlotValue.from_tuple((text, ids[0] if len(ids) == 1 else AMBIGUOUS + ",".join(ids),
                                           {"domain": domain}))
                 for (text, domain), ids in by_text.items()]
        areas: dict[str, str] = {}
        for device in devices:
            if device.area:
                areas[device.area.casefold()] = device.area
                chinese = self._chinese.get(re.sub(r"\s+\d+$", "", device.area.casefold()))
                if chinese and not re.search(r"\d+$", device.area):
                    areas[chinese] = device.area
        return {"name": TextSlotList(name="name", values=names),
                "area": TextSlotList(name="area", values=[TextSlotValue.from_tuple(item) for item in areas.items()]),
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
        for name in (device.name, *device.aliases):
            spellings.add(name.casefold())
            own = " ".join(word for word in name.casefold().split() if word not in area_words)
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
    def _plan(self, intent: str, entities: dict[str, Any], devices: list[Device],
              language: str) -> LocalPlan | Unclear | None:
        targets = self._targets(entities, devices, intent)
        if isinstance(targets, Unclear) or targets is None:
            return targets
        if len(targets) > 1:
            choices = ", ".join(f"{device.name} ({device.id}{', ' + device.area if device.area else ''})"
                                for device in targets)
            return Unclear(vocabulary()["answers"][language]["which"].format(choices=choices))
        device = targets[0]
        action, params = self._action(intent, entities, device)
        if action is None:
            return None
        template = getattr(self.docs.get(device.kind).intents, action)
        code = string.Template(template).substitute({name: repr(value) for name, value in params.items()})
        code = f"final_answer({code})" if action.startswith("read") else f"{code}\nfinal_answer(True)"
        return LocalPlan(action, device, f"dev = devices[{device.id!r}]\n{code}", language, params,
                         place=str(entities.get("area", "")))

    def _targets(self, entities: dict[str, Any], devices: list[Device], intent: str) -> list[Device] | Unclear | None:
        by_id = {device.id: device for device in devices}
        name, area, domain = entities.get("name"), entities.get("area"), entities.get("domain")
        if isinstance(name, str):
            ids = name[len(AMBIGUOUS):].split(",") if name.startswith(AMBIGUOUS) else [name]
            candidates = [by_id[device_id] for device_id in ids if device_id in by_id]
            if area:
                candidates = [device for device in candidates if device.area.casefold() == str(area).casefold()]
            return candidates or None
        if not isinstance(area, str):
            return None
        in_area = [device for device in devices if device.area.casefold() == area.casefold()]
        if intent == "HassClimateGetTemperature":
            wanted = [device for device in in_area if self._doc(device) and self._doc(device).intents.read_temperature]
            sensors = [device for device in wanted if self._doc(device).intents.domain == "sensor"]
            return sensors or wanted or None  # a room sensor says more about the room than a radiator's valve
        if isinstance(domain, str):
            return [device for device in in_area if self._doc(device) and self._doc(device).intents.domain == domain] \
                or None
        return None

    def _doc(self, device: Device) -> Any:
        return self.docs.get(device.kind)

    def _action(self, intent: str, entities: dict[str, Any], device: Device) -> tuple[str | None, dict[str, Any]]:
        doc = self._doc(device)
        if doc is None:
            return None, {}
        templates = doc.intents
        if intent in ("HassTurnOn", "HassTurnOff"):
            on = intent == "HassTurnOn"
            action = {"lock": "lock" if on else "unlock", "cover": "open" if on else "close"}.get(
                templates.domain or "", "turn_on" if on else "turn_off")
            return (action if getattr(templates, action) else None), {}
        if intent == "HassLightSet" and "brightness" in entities and templates.set_level:
            return "set_level", {"level": _number(entities["brightness"], 0, 100)}
        if intent == "HassClimateSetTemperature" and "temperature" in entities and templates.set_temperature:
            return "set_temperature", {"temperature": _number(entities["temperature"], 5, 35)}
        if intent == "HassSetPosition" and "position" in entities and templates.set_position:
            return "set_position", {"position": _number(entities["position"], 0, 100)}
        if intent == "HassClimateGetTemperature" and templates.read_temperature:
            return "read_temperature", {}
        if intent == "HassGetState" and templates.read:
            return "read", {}
        return None, {}


def _number(value: Any, low: float, high: float) -> float | int:
    number = float(value)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}..{high}")
    return int(number) if number.is_integer() else number
