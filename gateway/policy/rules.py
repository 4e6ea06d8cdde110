"""Danger rules judged on canonical actions: what the device would do, never how the call was spelled.

A call is decided by the strictest of its actions (deny, then confirm, then allow); each action by the first rule
that holds for it, config rules before the doc's. An action the reader could not make out (`unknown`) asks a
person on a device that has any rule to ask or refuse, unless a rule says otherwise for `unknown` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.devices.actions import IMPLIED, Condition, DangerRule
from gateway.policy.actions import Action, Value
from gateway.policy.calls import Operation

__all__ = ["UNREADABLE", "Decision", "Operation", "decide", "holds", "rule_matches"]

UNREADABLE = "could not read this command"
STRICTNESS = {"allow": 0, "confirm": 1, "deny": 2}


@dataclass
class Decision:
    action: str  # allow | confirm | deny
    reason: str = ""
    because: Action | None = None  # the action that decided it


def holds(condition: Condition, value: Value, unknown: bool) -> bool:
    """Whether an action's value meets a rule's comparison; `unknown` is the answer for a value the call does not
    make known (None, MAX, a word where a number belongs), which could be anything."""
    if condition.op is None:
        return True
    if value is None:
        return unknown
    if isinstance(condition.operand, float):
        if not isinstance(value, float):
            return unknown
        return {"==": value == condition.operand, "!=": value != condition.operand, ">": value > condition.operand,
                ">=": value >= condition.operand, "<": value < condition.operand,
                "<=": value <= condition.operand}[condition.op]
    same = str(value).strip().casefold() == str(condition.operand).casefold()
    return same if condition.op == "==" else not same


def rule_matches(rule: DangerRule, action: Action) -> bool:
    """A rule that asks or refuses holds whenever the action may be what it names (a toggle may switch on, a
    channel only selected may be another, a value not known may be over the limit); one that allows, only when the
    action surely is."""
    condition, lenient = rule.condition, rule.action != "allow"
    if condition.action != action.name and not (lenient and condition.action in IMPLIED.get(action.name, ())):
        return False
    if rule.channel is not None:
        certain = action.channel is not None and not action.selected
        if (certain and action.channel != rule.channel) or (not certain and not lenient):
            return False
    return holds(condition, action.value, unknown=lenient)


def decide(actions: list[Action], rules: list[DangerRule]) -> Decision:
    """The strictest decision over a call's actions."""
    guarded = any(rule.action != "allow" for rule in rules)
    worst = Decision("allow")
    for action in actions:
        rule = next((rule for rule in rules if rule_matches(rule, action)), None)
        if rule is not None:
            decision = Decision(rule.action, rule.reason, action)
        elif action.name == "unknown" and guarded:
            decision = Decision("confirm", UNREADABLE, action)
        else:
            continue
        if _rank(decision) > _rank(worst):
            worst = decision
    return worst


def _rank(decision: Decision) -> tuple[int, bool]:
    """Stricter first; of two alike, a rule's own reason says more than "could not read"."""
    return STRICTNESS[decision.action], decision.reason != UNREADABLE
