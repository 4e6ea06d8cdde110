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
    return bool(phrase) and re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None


@dataclass(frozen=True)
class Query:
    text: str  # normalised: lowercase, translated, digits, singular
    words: frozenset[str]


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

    def query(self, command: str) -> Query:
        text = normalize_numbers(command)
        for source, english in self.translations:
            text = text.replace(source, f" {english} ")
        normalised = " ".join(words(text))
        return Query(normalised, frozenset(normalised.split()) - self.stopwords)

    @cached_property
    def _keywords(self) -> dict[str, list[str]]:
        return {kind: [" ".join(words(keyword)) for keyword in doc.keywords] for kind, doc in self.docs.docs.items()}

    def score(self, query: Query, device: Device) -> float:
        area = " ".join(words(device.area))
        area_words = set(area.split())
        score = 0.0
        if phrase_in(area, query.text):
            score += AREA_PHRASE
        else:
            score += AREA_WORD * len((area_words - self.stopwords) & query.words)
        names = [device.name, *device.aliases]
        name_words = {word for name in names for word in words(name)} | set(device.id.split("_"))
        score += NAME_WORD * len((name_words - area_words - self.stopwords) & query.words)
        for name in names:
            own = " ".join(word for word in words(name) if word not in area_words)
            if own and phrase_in(own, query.text):
                score += NAME_PHRASE
                break
        keywords = [keyword for keyword in self._keywords.get(device.kind, []) if phrase_in(keyword, query.text)]
        return score + KIND_KEYWORD * min(2, len(keywords))

    def rank(self, command: str, devices: list[Device]) -> list[tuple[float, Device]]:
        """Devices with any sign of being meant, best first (ties keep inventory order)."""
        query = self.query(command)
        scored = [(self.score(query, device), device) for device in devices]
        return sorted((item for item in scored if item[0] > 0), key=lambda item: -item[0])
