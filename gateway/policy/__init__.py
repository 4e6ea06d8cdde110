"""What a task may touch and which calls need a person's yes: exposure (here), what a native call does
(protocols/, one reader per protocol, giving canonical actions), danger rules on those actions (rules.py),
confirmations (confirmations.py) and rate limits, every command of a chain counted (rates.py).

The broker consults this for every handle call: it reduces the call to the native call the device receives
(calls.py), reads the actions it performs, and decides on those, so a rule holds however the model's code spells
the call. Nothing the model writes can change these decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config import PolicyRule, PolicySection
from gateway.devices.actions import DangerRule
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import Registry
from gateway.errors import GatewayError
from gateway.policy.actions import Action, describe
from gateway.policy.calls import Operation, operation_for
from gateway.policy.confirmations import (
    ANSWER_CHANNELS,
    ConfirmationListener,
    ConfirmationRequest,
    Confirmations,
    Confirmer,
    answered_elsewhere,
)
from gateway.policy.protocols import Reading, read_call
from gateway.policy.rates import RateLimiter
from gateway.policy.rules import UNREADABLE, Decision, decide, rule_matches

__all__ = ["ANSWER_CHANNELS", "UNREADABLE", "Action", "ConfirmationListener", "ConfirmationRequest",
           "Confirmations", "Confirmer", "Decision", "Operation", "Policy", "Reading", "ScopeError",
           "answered_elsewhere", "describe", "operation_for", "rule_matches"]


class ScopeError(GatewayError, ValueError):
    """A task asked for devices it cannot have."""


# Called before a job publishes over MQTT with the task's origin, the topic and the payload; returns why the
# publish is refused, or None (an automation's loop guard registers one).
PublishCheck = Callable[[str, str, Any], str | None]


class Policy:
    def __init__(self, settings: PolicySection, docs: DocLibrary) -> None:
        self.settings = settings
        self.docs = docs
        self.rates = RateLimiter()
        self._memory: dict[str, dict[str, Any]] = {}  # device id -> what its protocol reader remembers
        self.publish_checks: list[PublishCheck] = []

    def refuse_publish(self, origin: str, topic: str, payload: Any) -> str | None:
        """Why a task from `origin` may not publish `payload` to `topic`, or None if it may."""
        return next((refusal for check in self.publish_checks
                     if (refusal := check(origin, topic, payload)) is not None), None)

    def exposed(self, device: Device) -> bool:
        if not device.exposed:
            return False
        return (any(_selects(pattern, device) for pattern in self.settings.expose)
                and not any(_selects(pattern, device) for pattern in self.settings.hide))

    def read(self, device: Device, operation: Operation) -> Reading:
        """The actions the native call performs, read as the device's protocol reads it."""
        return read_call(operation, device, self.docs.get(device.kind), self._memory.get(device.id, {}))

    def performed(self, device: Device, reading: Reading) -> None:
        """The call was sent: remember what its reader needs for the next (SCPI: the selected channel)."""
        if reading.memory is not None:
            self._memory[device.id] = reading.memory

    def rules_for(self, device: Device) -> list[DangerRule]:
        """Config rules (more specific) before the device doc's."""
        doc = self.docs.get(device.kind)
        return [rule for rule in self.settings.rules if _rule_selects(rule, device)] + (doc.danger if doc else [])

    def decide(self, device: Device, actions: list[Action]) -> Decision:
        return decide(actions, self.rules_for(device))

    def within_rate(self, device: Device, cost: int) -> tuple[bool, int]:
        doc = self.docs.get(device.kind)
        limit = min(self.settings.rate_limit_per_minute,
                    doc.rate_limit_per_minute if doc and doc.rate_limit_per_minute else 10**9)
        return self.rates.allow(device.id, limit, cost), limit

    def devices_for_task(self, registry: Registry, requested: list[str] | None) -> list[Device]:
        """All exposed devices, or the requested ones, each of which must exist and be exposed."""
        exposed = [device for device in registry.all() if self.exposed(device)]
        if not requested:
            return exposed
        by_id = {device.id: device for device in exposed}
        unknown = [device_id for device_id in requested if device_id not in by_id]
        if unknown:
            raise ScopeError(f"not exposed or unknown device(s): {', '.join(unknown)}; "
                             f"exposed: {', '.join(sorted(by_id)) or 'none'}")
        return [by_id[device_id] for device_id in requested]


def _selects(pattern: str, device: Device) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("area:"):
        return device.area.casefold() == pattern[5:].casefold()
    if pattern.startswith("kind:"):
        return device.kind == pattern[5:]
    return device.id == pattern


def _rule_selects(rule: PolicyRule, device: Device) -> bool:
    return ((rule.device is None or rule.device == device.id)
            and (rule.area is None or rule.area.casefold() == device.area.casefold())
            and (rule.kind is None or rule.kind == device.kind))
