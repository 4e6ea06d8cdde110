"""The API's bearer token: generated on first use into the data dir (mode 600), shown once, rotatable."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

TOKEN_FILE = "api_token"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")


def load_or_create_token(data_dir: Path) -> tuple[str, bool]:
    """(token, created now)."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    _write(path, token)
    return token, True


def rotate_token(data_dir: Path) -> str:
    token = secrets.token_urlsafe(32)
    _write(data_dir / TOKEN_FILE, token)
    return token
