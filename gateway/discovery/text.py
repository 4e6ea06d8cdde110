"""Device-supplied text is untrusted: anyone who can publish on the broker or reach a device can write it."""

from __future__ import annotations

import unicodedata

NAME_LIMIT = 100


def clean_text(value: object, limit: int = NAME_LIMIT) -> str:
    """One line of printable text: control and format characters dropped, whitespace collapsed, length capped."""
    text = "".join(char for char in str(value) if unicodedata.category(char) not in ("Cc", "Cf")
                   or char in "\t\n\r")
    return " ".join(text.split())[:limit]


def valid_topic(topic: object) -> bool:
    """A concrete MQTT topic a device may own: short, printable, no wildcards."""
    return (isinstance(topic, str) and 0 < len(topic) <= 256 and "+" not in topic and "#" not in topic
            and clean_text(topic, 256) == topic)
