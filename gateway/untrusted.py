"""Untrusted text: what devices, brokers and web pages say, and what the model writes.

Anyone who can publish on the broker or reach a device can write it, so it passes one rule before anyone reads
it: no control characters (terminal escapes, NUL), no format characters (bidi overrides, zero-width joiners),
no surrogates and no non-characters (safe_char). Each way of showing such text applies that rule:
- one_line: a name or a log field, unsafe characters dropped, whitespace collapsed, length capped;
- prompt_token: one line quoted for the model, which can never close the block it sits in;
- fenced: many lines (a job's output) for the model, unsafe characters escaped, the fence unbreakable;
- escaped: for a person to read and approve, every unsafe character shown as an escape (\\x1b, \\u202e...).
MQTT topics are text devices choose too: valid_topic says which one a device may own, and topic_matches is the
broker's wildcard matching without the broker.
"""

from __future__ import annotations

import json
import unicodedata
from typing import TypeGuard

NAME_LIMIT = 100
TOPIC_LIMIT = 256
UNSAFE_CATEGORIES = ("Cc", "Cf", "Cs")  # control, format, surrogate


def safe_char(char: str) -> bool:
    """The one rule: not a control, format or surrogate character, nor a non-character."""
    code = ord(char)
    return (unicodedata.category(char) not in UNSAFE_CATEGORIES
            and not (0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE))


def one_line(value: object, limit: int | None = NAME_LIMIT) -> str:
    """One line of safe text: unsafe characters dropped, any whitespace (newlines too) a single space, at most
    `limit` characters."""
    kept = "".join(char for char in str(value) if safe_char(char) or char.isspace())
    return " ".join(kept.split())[:limit]


def prompt_token(text: str, limit: int) -> str:
    """One line as a JSON string for the model, cut with an ellipsis; angle brackets are escaped so device text
    can never close the block it sits in."""
    kept = one_line(text, limit + 1)  # one character more than fits tells that it was cut
    if len(kept) > limit:
        kept = kept[: limit - 1] + "…"
    return json.dumps(kept, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def fenced(text: str, tag: str) -> str:
    """Many lines as a data block for the model: unsafe characters other than newline and tab escaped, angle
    brackets as HTML entities, so nothing inside can close the block or pass for a chat template's tokens
    (<|im_start|>)."""
    kept = "".join(char if char in "\n\t" or safe_char(char) else _escape(char) for char in text)
    return f"<{tag}>\n{kept.replace('<', '&lt;').replace('>', '&gt;')}\n</{tag}>"


def escaped(text: str) -> str:
    """Text for a person to read: every unsafe character written as an escape, so it cannot steer a terminal."""
    return "".join(char if safe_char(char) else _escape(char) for char in text)


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode()


def valid_topic(topic: object) -> TypeGuard[str]:
    """A concrete MQTT topic a device may own: short, no wildcards, and already one line of safe text."""
    return (isinstance(topic, str) and 0 < len(topic) <= TOPIC_LIMIT and "+" not in topic and "#" not in topic
            and one_line(topic, TOPIC_LIMIT) == topic)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT filter matches a topic, as a broker decides: `+` is one level, a final `#` any number of
    levels (none too), and a topic starting with `$` matches no wildcard in the first level."""
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for index, want in enumerate(wanted):
        wildcards = index > 0 or not topic.startswith("$")
        if want == "#" and index == len(wanted) - 1:
            return wildcards
        if index == len(levels):
            return False
        if want != levels[index] and not (want == "+" and wildcards):
            return False
    return len(wanted) == len(levels)
