"""Text that a person will read and the model wrote: every unsafe character shown as an escape."""

from __future__ import annotations

import unicodedata


def printable_char(char: str) -> bool:
    """Not a control character, surrogate or non-character: safe in a topic, a path or a terminal."""
    code = ord(char)
    return not (code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF
                or (code & 0xFFFE) == 0xFFFE)


def printable(text: str) -> str:
    """Text with every unsafe character written as an escape (\\x1b, \\u202e...)."""
    return "".join(char if printable_char(char) and unicodedata.category(char) != "Cf"
                   else char.encode("unicode_escape").decode() for char in text)
