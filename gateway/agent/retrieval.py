"""Rank devices by how likely a command is about them, so a prompt can list the likely ones and stay small.

Signals, in order of weight: the area named in the command ("bedroom 3", 客厅), words of the device's name or
aliases ("ceiling light", "desk lamp"), and the kind's keywords from its device doc ("thermostat", "temperature").
Chinese terms are translated through gateway/agent/vocabulary.toml and spelled-out numbers become digits first.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from gateway.agent.numbers import normalize_numbers
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device

AREA_PHRASE = 4.0
AREA_WORD = 1.0
NAME_PHRASE = 3.0
NAME_WORD = 2.0
KIND_KEYWORD = 1.0


def words(text: str) -> list[str]:
    """Lowercase words and numbers; a plural 's' is dropped so 'lights' matches 'light'."""
    found = re.findall(r"[a-z0-9]+", text.casefold())
    return [word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
            for word in found]


def phrase_in(phrase: str, text: str) -> bool:
    """Whole-word match on normalised text (lowercase words joined by single spaces)."""
    return bool(phrase) and f" {phrase} " in f" {text} "


@dataclass(frozen=True)
class Query:
    text: str  # normalised: lowercase, translated, digits, singular
    words: frozenset[str]


@dataclass(frozen=True)
class Features:
    """What scoring needs of a device, computed once per name/area/aliases/kind."""

    area: str
    area_words: frozenset[str]
    name_words: frozenset[str]
    own_names: tuple[str, ...]  # each name without the area's words, e.g. "ceiling light"


CJK = re.compile(r"[\u3400-\u9fff]")


def language_of(text: str) -> str:
    """"zh" for text with Chinese characters, else "en": the languages the vocabulary's answers are in."""
    return "zh" if CJK.search(text) else "en"


@cache
def vocabulary() -> dict[str, Any]:
    """gateway/agent/vocabulary.toml: stopwords, area names, translations."""
    return tomllib.loads((importlib.resources.files("gateway.agent") / "vocabulary.toml").read_text("utf-8"))


class Retriever:
    def __init__(self, docs: DocLibrary) -> None:
        self.docs = docs
        data = vocabulary()
        self.stopwords = frozenset(data["stopwords"])
        self.translations = sorted(data["translations"].items(), key=lambda item: -len(item[0]))
        self._features: dict[tuple[object, ...], Features] = {}

    def query(self, command: str) -> Query:
        text = normalize_numbers(command)
        for source, english in self.translations:
            text = text.replace(source, f" {english} ")
        normalised = " ".join(words(text))
        return Query(normalised, frozenset(normalised.split()) - self.stopwords)

    @cached_property
    def _keywords(self) -> dict[str, list[str]]:
        return {kind: [" ".join(words(keyword)) for keyword in doc.keywords] for kind, doc in self.docs.docs.items()}

    def features(self, device: Device) -> Features:
        key = (device.id, device.name, device.area, tuple(device.aliases))
        found = self._features.get(key)
        if found is None:
            area = " ".join(words(device.area))
            area_words = frozenset(area.split())
            names = [device.name, *device.aliases]
            name_words = {word for name in names for word in words(name)} | set(device.id.split("_"))
            own = tuple(dict.fromkeys(" ".join(word for word in words(name) if word not in area_words)
                                      for name in names))
            found = Features(area, area_words, frozenset(name_words - area_words - self.stopwords), own)
            if len(self._features) > 50_000:
                self._features.clear()
            self._features[key] = found
        return found

    def rank(self, command: str, devices: list[Device]) -> list[tuple[float, Device]]:
        """Devices with any sign of being meant, best first (ties keep inventory order)."""
        query = self.query(command)
        kind_scores = {kind: KIND_KEYWORD * min(2, sum(phrase_in(keyword, query.text) for keyword in keywords))
                       for kind, keywords in self._keywords.items()}
        area_scores: dict[str, float] = {}
        scored = []
        for device in devices:
            features = self.features(device)
            area = area_scores.get(features.area)
            if area is None:
                area = (AREA_PHRASE if phrase_in(features.area, query.text)
                        else AREA_WORD * len((features.area_words - self.stopwords) & query.words))
                area_scores[features.area] = area
            score = area + kind_scores.get(device.kind, 0.0)
            if features.name_words & query.words:
                score += NAME_WORD * len(features.name_words & query.words)
                if any(own and phrase_in(own, query.text) for own in features.own_names):
                    score += NAME_PHRASE
            if score > 0:
                scored.append((score, device))
        return sorted(scored, key=lambda item: -item[0])
