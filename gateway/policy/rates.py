"""Rate limits: a token bucket per device, so bursts are fine and a runaway loop is stopped. A call costs one token
per action it performs: a Backlog of 30 Power commands is 30 switchings, not one call."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    @staticmethod
    def capacity(per_minute: int) -> float:
        """The largest burst: a third of a minute's worth."""
        return max(1.0, per_minute / 3)

    def allow(self, key: str, per_minute: int, cost: int) -> bool:
        """Take `cost` tokens if they are all there (a chain is sent whole or not at all)."""
        now = time.monotonic()
        capacity = self.capacity(per_minute)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * per_minute / 60)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - cost, now)
        return True
