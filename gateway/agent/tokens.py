"""A token estimate that needs no download (tiktoken fetches its tables on first use, which fails offline).

It counts the pieces a BPE tokenizer typically makes: short words are one token, long words one per ~4
letters, digits one per 3, each CJK character and each punctuation mark one.
"""

from __future__ import annotations

import re

PIECES = re.compile(r"[A-Za-z]+|\d+|[\u3400-\u9fff\uf900-\ufaff]|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    count = 0
    for piece in PIECES.findall(text):
        first = piece[0]
        if first.isascii() and first.isalpha():
            count += 1 + max(0, len(piece) - 1) // 4
        elif first.isdigit():
            count += (len(piece) + 2) // 3
        else:
            count += 1
    return count
