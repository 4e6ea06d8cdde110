"""Who may use the API: the install's token, the host names the gateway answers to, and same-origin requests only.

The token is a per-install secret in the data dir (`api_token`, mode 600), generated on first use. Every /api
request must present it: scripts and the CLI as `Authorization: Bearer <token>` (they read the file), the
gateway's own web page as an HttpOnly, SameSite=Strict cookie that no other site's page is sent or can read.
On a loopback bind the page receives that cookie when it loads; on any other bind the person pastes the token
once (POST /api/session), since anyone on the network could load the page.

The Host allowlist stops DNS rebinding (a foreign name pointed at this address would otherwise be served, cookie
and all, as the same origin as the attacker's page); the Origin check stops every other site's page, including
one on the same host at another port, which browsers treat as the same site and send the cookie to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_FILE = "api_token"
LOOPBACK_NAMES = frozenset({"localhost"})
# Fetch metadata of the page's own requests ("none": typed into the address bar, or not a browser's request).
OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def page_receives_token(bind_host: str) -> bool:
    """Whether loading the page hands it the token: only where nobody but this machine can load it."""
    return is_loopback(bind_host)


def _write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")


def read_token(data_dir: Path) -> str | None:
    """The token in the data dir, or None when there is none yet (an empty file counts as none)."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():  # copied with a wider mode: readers drive the gateway
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return token or None


def load_or_create_token(data_dir: Path) -> tuple[str, bool]:
    """(token, created now)."""
    token = read_token(data_dir)
    if token is not None:
        return token, False
    return rotate_token(data_dir), True


def rotate_token(data_dir: Path) -> str:
    token = secrets.token_urlsafe(32)
    _write(data_dir / TOKEN_FILE, token)
    return token


def host_name(authority: str) -> str | None:
    """The host of a Host header, lowercased, without port or brackets; None when it is not a plain authority."""
    if any(char in authority for char in "@/?#\\ "):  # never in a browser's Host; would hide another host
        return None
    try:
        return urlsplit(f"//{authority}").hostname
    except ValueError:
        return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Access:
    token: str
    page_gets_token: bool
    names: frozenset[str]  # host names besides loopback ones and IP literals: the bound name, configured ones

    @classmethod
    def for_bind(cls, bind_host: str, token: str, names: tuple[str, ...] = ()) -> Access:
        own = {name.casefold() for name in (bind_host, *names) if name and not _is_ip_literal(name)}
        return cls(token, page_receives_token(bind_host), frozenset(own | LOOPBACK_NAMES))

    @property
    def cookie(self) -> str:
        """Per install, not per port: two gateways on one host keep their cookies apart (cookies ignore ports)."""
        return "pyuse_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def host_allowed(self, host_header: str | None) -> bool:
        """An IP literal can only be this server (a browser connected to exactly that address and port); a name
        must be one of ours, since a rebound name is someone else's page reaching us as its own origin."""
        if host_header is None:  # HTTP/1.0 tools; a browser always sends Host
            return True
        host = host_name(host_header)
        return host is not None and (_is_ip_literal(host) or host in self.names)

    @staticmethod
    def same_origin(origin: str | None, host_header: str | None, fetch_site: str | None) -> bool:
        """No Origin (a non-browser client, or a same-origin GET) is fine; a browser's Origin must be this very
        authority, and its fetch metadata, when sent, must say the request comes from this origin."""
        if fetch_site is not None and fetch_site not in OWN_FETCH_SITES:
            return False
        if origin is None:
            return True
        if host_header is None or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.casefold() == host_header.casefold()

    def credential_ok(self, authorization: str | None, cookie: str | None) -> bool:
        offered = (authorization or "").removeprefix("Bearer ").strip() or (cookie or "")
        # surrogateescape: a header that is not UTF-8 arrives with its bytes escaped; it is a wrong token, not a crash
        return secrets.compare_digest(offered.encode(errors="surrogateescape"), self.token.encode())
