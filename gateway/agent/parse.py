"""Turn a model reply into a thought, code to run, or a final answer. Lenient by design: parsing failures
are the most reported complaint about code agents, so anything that is not code counts as an answer.

- The first ```python / ```py / bare ``` block is the code; an unclosed last fence runs to the end.
  Everything after the first block is dropped: small models go on to invent its output.
- With no code, text after `FINAL ANSWER:` is the answer; failing that, the whole reply is. Text with no letter
  or digit outside fence markers (whitespace, punctuation, empty fences) is no answer: the loop asks again.
- `final_answer(...)` inside code is handled by the sandbox, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CODE_LANGUAGES = {"", "python", "py", "python3", "py3"}
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n`]*\n")
CLOSING = re.compile(r"```[ \t]*$", re.MULTILINE)
FINAL = re.compile(r"final[ _]answer\s*:", re.IGNORECASE)
THOUGHT_LABEL = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)
FENCE_MARKER = re.compile(r"```[^\n`]*")


@dataclass
class ParsedReply:
    thought: str
    code: str | None
    answer: str | None
    kept: str  # the reply as it stays in the conversation

    @property
    def is_final(self) -> bool:
        return self.code is None


def parse_reply(text: str) -> ParsedReply:
    position = 0
    while fence := FENCE.search(text, position):
        closing = CLOSING.search(text, fence.end())
        end = closing.start() if closing else len(text)
        position = closing.end() if closing else len(text)
        code = text[fence.end():end].strip("\n")
        if fence.group(1).lower() not in CODE_LANGUAGES or not code.strip():
            continue
        thought = THOUGHT_LABEL.sub("", text[:fence.start()]).strip()
        kept_end = closing.end() if closing else len(text)
        kept = text[:kept_end].rstrip() + ("" if closing else "\n```")
        return ParsedReply(thought=thought, code=code, answer=None, kept=kept)
    final = FINAL.search(text)
    if final:
        thought = THOUGHT_LABEL.sub("", text[:final.start()]).strip()
        return ParsedReply(thought=thought, code=None, answer=_said(text[final.end():]), kept=text.strip())
    return ParsedReply(thought="", code=None, answer=_said(text), kept=text.strip())


def _said(text: str) -> str:
    """`text` stripped, or "" when it says nothing: no letter or digit outside its fence markers."""
    text = text.strip()
    return text if re.search(r"\w", FENCE_MARKER.sub("", text)) else ""
