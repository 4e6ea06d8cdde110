"""Numbers written as words become digits before matching: "thirty-five" -> 35, "三十五" -> 35, "百分之三十" -> 30%.

Speech recognisers and people spell numbers out; matchers expect digits.
"""

from __future__ import annotations

import re

UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
ENGLISH = re.compile(r"\b(?:(?:a|one|two|three|four|five|six|seven|eight|nine)[\s-]+hundred(?:[\s-]+(?:and[\s-]+)?)?)?"
                     r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-]+(?:one|two|three|four|five|"
                     r"six|seven|eight|nine))?|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                     r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)?\b", re.IGNORECASE)
CHINESE_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CHINESE = re.compile(r"[零一二两三四五六七八九十百]+")


def _english_value(words: str) -> int | None:
    value = 0
    for word in re.split(r"[\s-]+", words.casefold()):
        if word == "hundred":
            value = max(value, 1) * 100  # "a hundred", "two hundred"
        elif word in TENS:
            value += TENS[word]
        elif word in UNITS:
            value += UNITS[word]
        elif word not in ("a", "and", ""):
            return None
    return value


def _chinese_value(text: str) -> int | None:
    value, current = 0, 0
    for char in text:
        if char in CHINESE_DIGITS:
            current = CHINESE_DIGITS[char]
        elif char == "十":
            value += (current or 1) * 10
            current = 0
        elif char == "百":
            value += (current or 1) * 100
            current = 0
    return value + current


def normalize_numbers(text: str) -> str:
    def english(match: re.Match[str]) -> str:
        words = match.group(0)
        if not words.strip() or words.strip().casefold() == "a":
            return words
        value = _english_value(words)
        return words if value is None else str(value)

    text = ENGLISH.sub(english, text)
    text = re.sub(r"百分之([零一二两三四五六七八九十百]+)", lambda m: f"{_chinese_value(m.group(1))}%", text)
    return CHINESE.sub(lambda m: str(_chinese_value(m.group(0))), text)
