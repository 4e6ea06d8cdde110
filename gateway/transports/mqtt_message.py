"""What travels over MQTT: a message as it arrives and a payload as it is sent.

No connection here (and no paho), so the policy, the intakes and the automations can read and write messages
without the transport.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False

    def decoded(self) -> Any:
        """JSON when the payload is JSON, else text (so is JSON nested past what Python parses: anyone may publish)."""
        text = self.payload.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text


def encode_payload(payload: Any) -> bytes:
    """A payload as the wire carries it: bytes as they are, text as UTF-8, anything else as JSON (numbers as
    their text)."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, bool) or payload is None or isinstance(payload, (dict, list)):
        return json.dumps(payload).encode()
    return str(payload).encode()
