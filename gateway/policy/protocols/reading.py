"""What a protocol reader returns, and its signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action
from gateway.policy.calls import Operation


@dataclass
class Reading:
    """The actions a native call performs, in order. `commands`: how many commands the call chains (SCPI `;`
    units, Korad tokens, a Tasmota Backlog's steps), each of which costs the rate limit a token. `memory`: what the
    reader remembers of the device once the call is sent (SCPI: the selected channel); None keeps what it had."""

    actions: list[Action]
    memory: dict[str, Any] | None = None
    commands: int = 1

    @property
    def cost(self) -> int:
        """Rate-limit tokens: every command of a chain counts, and a call that does nothing still counts once."""
        return max(1, self.commands)


# (the native call, the device, its doc, what the reader remembers of the device) -> the reading
Reader = Callable[[Operation, Device, DeviceDoc | None, dict[str, Any]], Reading]
