"""RFC 6901 JSON pointers (`/lights/0/on`), for the places that name a value inside a device's JSON: a doc's
`state_pointer` and its `[[calls]]` entries."""

from __future__ import annotations

from typing import Any

MISSING = object()  # what a pointer names that is not there (None is a value a document may hold)


def resolve(document: Any, path: str) -> Any:
    """The value `path` names in `document`, or MISSING ("" names the whole document)."""
    for token in path.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return MISSING
    return document
