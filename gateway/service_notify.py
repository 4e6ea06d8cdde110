"""Telling a service manager how the gateway is doing: systemd's notify protocol (sd_notify(3)), which a unit with
`Type=notify` waits on before it counts the gateway as started. A few lines rather than a dependency: the protocol
is one datagram of `KEY=VALUE` lines to the unix socket named by $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1", "STOPPING=1"); False when no manager asked for it or it cannot be told."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):  # unset, or a vsock address, which only a VM's manager hands out
        return False
    target = "\0" + address[1:] if address.startswith("@") else address  # "@name" is an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), target)
        except OSError as exc:
            log.warning("could not tell the service manager %r at %s: %s", state.splitlines()[0], address, exc)
            return False
    return True
