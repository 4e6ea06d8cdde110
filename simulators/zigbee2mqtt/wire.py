"""What every part of the simulated Zigbee2MQTT writes the same way: its version, its JSON and IEEE addresses."""

from __future__ import annotations

import hashlib
import json
from typing import Any

VERSION = "2.1.3"


def compact_json(payload: Any) -> str:
    """JSON as Zigbee2MQTT sends it: no spaces (keys sorted, so a payload is the same on every run)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def ieee_address(seed: str) -> str:
    """A stable 64-bit IEEE address (0x + 16 hex digits) derived from `seed`."""
    return "0x" + hashlib.sha1(seed.encode()).hexdigest()[:16]
