"""Conditions on an MQTT payload or a device's state, as automations write them:

    occupancy == true
    temperature > 28 and state != "OFF"
    action in ["single", "double"] or payload["battery low"] == true

Parsed with ast into a small tree of allowed nodes and evaluated by walking it: never eval'd, so a condition
can compare values and nothing else. A bare name is a field of the JSON object (a.b for nested fields);
`payload` is the whole payload, for payloads that are not objects; true, false and null are JSON's. A missing
field is null, and a comparison that cannot be made (null > 3) is false.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
               ast.Gt: operator.gt, ast.GtE: operator.ge,
               ast.In: lambda left, right: left in right, ast.NotIn: lambda left, right: left not in right}
CONSTANTS = {"true": True, "false": False, "null": None}
MISSING = None
# Deeper than any condition a person writes; the parser and the walk below recurse, and must not run out of stack.
MAX_DEPTH = 32


class Condition:
    def __init__(self, source: str) -> None:
        self.source = source
        try:
            tree = ast.parse(source.strip(), mode="eval")
            self._check(tree.body, 0)
        except SyntaxError as error:
            raise ValueError(f"condition {self.shown} is not valid: {error.msg}") from None
        except RecursionError:  # ast.parse, or ast.unparse of a refused part
            raise self._too_deep() from None
        self._tree = tree.body

    @property
    def shown(self) -> str:
        """The source for a message: a condition can be long, a message is one line."""
        return repr(self.source if len(self.source) <= 60 else self.source[:59] + "…")

    def _too_deep(self) -> ValueError:
        return ValueError(f"condition {self.shown} nests more than {MAX_DEPTH} levels deep; write it flatter "
                          "(fields, values, comparisons, and, or, not)")

    def __call__(self, payload: Any) -> bool:
        try:
            return bool(self._value(self._tree, payload))
        except TypeError:  # e.g. None > 3, "a" < 1
            return False

    def _check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self._too_deep()
        depth += 1
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, depth)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            self._check(node.operand, depth)
        elif isinstance(node, ast.Compare):
            unknown = [op for op in node.ops if type(op) not in COMPARISONS]
            if unknown:
                raise ValueError(f"condition {self.shown}: {type(unknown[0]).__name__} is not a comparison "
                                 "it supports (==, !=, <, <=, >, >=, in, not in)")
            for operand in (node.left, *node.comparators):
                self._check(operand, depth)
        elif isinstance(node, (ast.List, ast.Tuple)):
            for element in node.elts:
                self._check(element, depth)
        elif isinstance(node, ast.Attribute):
            self._check(node.value, depth)
        elif isinstance(node, ast.Subscript):
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, (str, int))):
                raise ValueError(f"condition {self.shown}: write field[\"name\"] with a quoted name")
            self._check(node.value, depth)
        elif isinstance(node, ast.Name) or (isinstance(node, ast.Constant)
                                            and isinstance(node.value, (str, int, float, bool, type(None)))):
            return
        else:
            raise ValueError(f"condition {self.shown}: {ast.unparse(node)[:60]!r} is not allowed; use fields, "
                             "values, comparisons, and, or, not")

    def _value(self, node: ast.AST, payload: Any) -> Any:
        if isinstance(node, ast.BoolOp):
            values = (self._value(value, payload) for value in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            operand = self._value(node.operand, payload)
            return not operand if isinstance(node.op, ast.Not) else -operand
        if isinstance(node, ast.Compare):
            left = self._value(node.left, payload)
            for op, comparator in zip(node.ops, node.comparators):
                right = self._value(comparator, payload)
                if not COMPARISONS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self._value(element, payload) for element in node.elts]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id == "payload":
                return payload
            return payload.get(node.id, MISSING) if isinstance(payload, dict) else MISSING
        if isinstance(node, ast.Attribute):
            inner = self._value(node.value, payload)
            return inner.get(node.attr, MISSING) if isinstance(inner, dict) else MISSING
        assert isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
        inner = self._value(node.value, payload)
        key = node.slice.value
        if isinstance(inner, dict):
            return inner.get(key, MISSING)
        if isinstance(inner, list) and isinstance(key, int) and -len(inner) <= key < len(inner):
            return inner[key]
        return MISSING
