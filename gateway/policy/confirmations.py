"""Confirmations: a dangerous call waits for a yes from the person the task came from, through that task's own
channel; no answer in time, or nobody to ask, is a no.

A question's id is the only handle on it from outside, so it is unguessable: a page that cannot read the pending
questions cannot answer one by counting (c1, c2, ... once approved a door lock from another site's page).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.devices.model import Device
from gateway.listeners import Listeners
from gateway.policy.rules import Operation

# Which channel may answer a confirmation for a task of each origin; others are answered by their own confirmer
# only (the terminal), and an automation has nobody to ask. A "cli" task in the daemon came from `pyuse ask`
# through the API, which asks at its terminal and answers through the API; one in the CLI's own gateway asks directly.
ANSWER_CHANNELS = {"api": "api", "cli": "api", "voice": "api", "web": "api", "mqtt": "mqtt"}


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


async def answered_elsewhere(request: ConfirmationRequest) -> bool:
    """The confirmer of a task from the API, the web page or MQTT: the question goes out as an event, and the
    answer arrives by id (POST /api/confirmations/<id>, the confirm topic); until then, this waits."""
    await asyncio.Event().wait()
    return False


class Confirmations:
    """Pending confirmations: asked through the task's own channel, answerable by id through that channel only."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.pending: dict[str, tuple[ConfirmationRequest, asyncio.Future[bool]]] = {}
        # ("asked"|"resolved", request, yes); a broken channel must not decide the question
        self.listeners: Listeners[str, ConfirmationRequest, bool | None] = Listeners("confirmation")

    async def ask(self, task_id: str, origin: str, device: Device, operation: Operation, reason: str,
                  confirmer: Confirmer | None) -> tuple[bool, str]:
        """(approved, why) — why says who decided, for the audit trail and the model."""
        if confirmer is None:
            return False, "nobody can confirm it from where this task came from"
        request = ConfirmationRequest(id=secrets.token_urlsafe(16), task_id=task_id, origin=origin,
                                      device_id=device.id, device_name=device.name, action=operation.summary(),
                                      reason=reason, expires_at=time.time() + self.timeout_s)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending[request.id] = (request, answer)
        self.listeners("asked", request, None)
        asker = asyncio.ensure_future(confirmer(request))
        asker.add_done_callback(lambda done: self.answer(request.id, bool(done.result()))
                                if not done.cancelled() and done.exception() is None else None)
        approved = False
        try:
            async with asyncio.timeout(self.timeout_s):
                approved = await asyncio.shield(answer)
        except TimeoutError:
            return False, f"no answer within {self.timeout_s:g} s"
        finally:
            self.pending.pop(request.id, None)
            asker.cancel()
            self.listeners("resolved", request, approved)
        return approved, "approved by the user" if approved else "the user said no"

    def answer(self, request_id: str, approved: bool, channel: str | None = None) -> bool:
        """Settle a pending question. A `channel` ("api", "mqtt") may only answer tasks that came through it."""
        entry = self.pending.get(request_id)
        if entry is None or entry[1].done():
            return False
        if channel is not None and ANSWER_CHANNELS.get(entry[0].origin) != channel:
            return False
        entry[1].set_result(approved)
        return True
