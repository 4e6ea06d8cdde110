"""The gateway's clock for job sleeps and automation schedules: real time, or faster to simulate a day in minutes.

Only sleeps and schedules follow it; timeouts, logs and the store keep real time.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import re
import time

INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_OF_DAY = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_interval(text: str) -> float:
    """'30s', '5m', '1.5h', '1d' -> seconds; ValueError saying the expected form."""
    found = INTERVAL.match(text)
    seconds = float(found.group(1)) * UNIT_SECONDS[found.group(2)] if found else 0.0
    if not 0 < seconds < math.inf:  # a number of 400 digits is inf seconds: never
        raise ValueError(f"{text[:40]!r} is not an interval; expected a number and a unit: 30s, 5m, 2h or 1d")
    return seconds


def parse_time_of_day(text: str) -> tuple[int, int]:
    """'07:30' -> (7, 30); ValueError saying the expected form."""
    found = TIME_OF_DAY.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a time of day; expected HH:MM on a 24-hour clock, such as 07:30")
    return int(found.group(1)), int(found.group(2))


class Clock:
    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._origin = time.time()
        self._origin_monotonic = time.monotonic()

    def now(self) -> float:
        """Seconds since the epoch on this clock (equal to time.time() at speed 1)."""
        return self._origin + (time.monotonic() - self._origin_monotonic) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def until(self, hour: int, minute: int) -> float:
        """Clock seconds from now to the next hour:minute, local time."""
        now = datetime.datetime.fromtimestamp(self.now())
        target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= now:
            target += datetime.timedelta(days=1)
        return (target - now).total_seconds()
