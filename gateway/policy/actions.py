"""What a native call does, as the policy sees it: canonical actions with their values and channels.

The names are the vocabulary of gateway/devices/actions.py (ACTIONS); the protocol readers produce these, the
danger rules judge them, the rate limit counts them and the audit records them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby

from gateway.devices.actions import ACTIONS

Value = float | str | None


@dataclass(frozen=True)
class Action:
    """One thing the device will do. `value` is None when the call does not say (a recalled memory, MIN...), which
    every comparison treats as the dangerous case. `selected`: the channel is the one selected earlier, not named
    by the command itself, so a rule for another channel still holds. `after_s`: a timer does it later."""

    name: str
    value: Value = None
    channel: int | None = None
    selected: bool = False
    after_s: float | None = None
    text: str = ""  # unknown: the part that could not be read

    def __post_init__(self) -> None:
        if self.name not in ACTIONS:
            raise ValueError(f"not a canonical action: {self.name!r}")

    def __str__(self) -> str:
        parts = [self.name]
        if self.value is not None:
            unit = ACTIONS[self.name][1]
            shown = f"{self.value:g}" if isinstance(self.value, float) else self.value
            parts.append(f"{shown} {unit}" if unit and isinstance(self.value, float) else str(shown))
        if self.channel is not None:
            parts.append(f"ch{self.channel}")
        if self.after_s is not None:
            parts.append(f"in {self.after_s:g} s")
        if self.text:
            parts.append(repr(self.text[:60]))
        return " ".join(parts)


def unknown(text: str) -> Action:
    return Action("unknown", text=text)


def describe(actions: list[Action]) -> str:
    """For the audit trail: `output_toggle ×30`, `select_channel 2, set_voltage 13 V ch2`."""
    runs = [(shown, len(list(group))) for shown, group in groupby(str(action) for action in actions)]
    return ", ".join(shown if count == 1 else f"{shown} ×{count}" for shown, count in runs) or "nothing"


def number(value: object) -> float | None:
    """A finite number from JSON or text, as devices take one; None for anything else (a bool, an object, NaN:
    a value no comparison could judge)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None
