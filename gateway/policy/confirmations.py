"""Confirmations: a dangerous call waits for a yes from the person the task came from, through that task's own
channel (questions.py's Waiting); no answer in time, or nobody to ask, is a no.

A question's id is the only handle on it from outside, so it is unguessable: a page that cannot read the pending
questions cannot answer one by counting (c1, c2, ... once approved a door lock from another site's page).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.devices.model import Device
from gateway.policy.rules import Operation
from gateway.questions import ANSWER_CHANNELS, Waiting, answered_elsewhere

__all__ = ["ANSWER_CHANNELS", "ConfirmationListener", "ConfirmationRequest", "Confirmations", "Confirmer",
           "answered_elsewhere"]


@dataclass
class ConfirmationRequest:
    id: str
    task_id: str
    origin: str
    device_id: str
    device_name: str
    action: str
    reason: str
    expires_at: float

    def prompt(self) -> str:
        return (f"Confirm: {self.device_name} ({self.device_id}): {self.action} — {self.reason}. "
                f"Allow it?")


Confirmer = Callable[[ConfirmationRequest], Awaitable[bool]]
ConfirmationListener = Callable[[str, ConfirmationRequest, bool | None], None]  # ("asked"|"resolved", request, yes)


SAID_NO = "the user said no"


class Confirmations(Waiting[ConfirmationRequest, bool]):
    """Pending confirmations (questions.py's Waiting, whose answer is a yes or a no)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s, "confirmation")
        # What a person said no to, by task (the broker notes it): the task ends saying so (Gateway.run_task).
        self.declined: dict[str, str] = {}

    async def ask(self, task_id: str, origin: str, device: Device, operation: Operation, reason: str,
                  confirmer: Confirmer | None) -> tuple[bool, str]:
        """(approved, why) — why says who decided, for the audit trail and the model."""
        if confirmer is None:
            return False, "nobody can confirm it from where this task came from"
        request = ConfirmationRequest(id=secrets.token_urlsafe(16), task_id=task_id, origin=origin,
                                      device_id=device.id, device_name=device.name, action=operation.summary(),
                                      reason=reason, expires_at=time.time() + self.timeout_s)
        try:
            approved = bool(await self.wait(request, confirmer))
        except TimeoutError:
            return False, f"no answer within {self.timeout_s:g} s"
        return approved, "approved by the user" if approved else SAID_NO

    def answer(self, request_id: str, approved: bool, channel: str | None = None) -> bool:
        """Settle a pending confirmation. A `channel` ("api", "mqtt") may only answer tasks that came through it."""
        return self.settle(request_id, approved, channel)
