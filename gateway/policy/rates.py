"""Rate limits: a token bucket per device, so bursts are fine and a runaway loop is stopped."""

from __future__ import annotations

import time


class RateLimiter:
    """A token bucket per device: bursts are fine, a runaway loop is stopped."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, per_minute: int) -> bool:
        now = time.monotonic()
        capacity = max(1.0, per_minute / 3)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * per_minute / 60)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True
