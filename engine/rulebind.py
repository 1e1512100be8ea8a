"""Binding a rule to one request: fold what is fixed per request, memoise what is fixed
per action.

A rule checked against many actions in one request evaluates its context-only parts once
(`bind` folds them to True/False) and keeps its action-only parts' answers per action
object across requests (`Memo`), so only the comparisons that read both test each action.
`plan_for` decides, once per rule, which part is which.

May import: the standard library, engine.actions, engine.features, engine.ruletree and
engine.rulecompile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, cast

from engine.actions import Action
from engine.features import Features
from engine.rulecompile import Test, compile_node
from engine.ruletree import BoolOp, Node, Not, variables

Bound: TypeAlias = "bool | Callable[[Action], bool]"
MAX_MEMO = 65_536
_NO_CONTEXT: Features = {}
_NO_ACTION = cast("Action", None)


@dataclass(frozen=True, slots=True)
class Plan:
    """How to bind one condition: `context` (evaluate once), `action` (memoised per action),
    `mixed` (a comparison reading both), or `not`/`and`/`or` over parts."""

    kind: str
    test: Test
    parts: tuple[Plan, ...] = ()
    memo: Memo | None = None


def plan_for(node: Node) -> Plan:
    """How to bind `node`: which of its parts read only the context, only the action, or both."""
    read = variables(node)
    on_action = any(v.startswith("action") for v in read)
    on_context = any(v.startswith("context") for v in read)
    test = compile_node(node)
    if not on_action:
        return Plan("context", test)
    if not on_context:
        return Plan("action", test, memo=Memo(test))
    if isinstance(node, Not):
        return Plan("not", test, (plan_for(node.operand),))
    if isinstance(node, BoolOp):
        return Plan(node.op, test, tuple(plan_for(o) for o in node.operands))
    return Plan("mixed", test)


class Memo:
    """An action-only test with its results kept per action object (the key holds the
    object, so an id is never reused while its entry lives); bounded by MAX_MEMO entries.
    The same object answers in every request, so callers may cache what it says about a
    list of actions (engine.constraints does, per list)."""

    __slots__ = ("store", "test")

    def __init__(self, test: Test) -> None:
        self.test = test
        self.store: dict[int, tuple[Action, bool]] = {}

    def __call__(self, a: Action) -> bool:
        hit = self.store.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        value = self.test(_NO_CONTEXT, a)
        if len(self.store) >= MAX_MEMO:
            self.store.clear()
        self.store[id(a)] = (a, value)
        return value


def bind(plan: Plan, c: Features) -> Bound:
    """`plan` for the request context `c`: True/False, or a test of one action."""
    if plan.kind == "context":
        return plan.test(c, _NO_ACTION)
    if plan.memo is not None:
        return plan.memo
    if plan.kind == "not":
        inner = bind(plan.parts[0], c)
        if isinstance(inner, bool):
            return not inner
        return lambda a: not inner(a)
    if plan.kind in ("and", "or"):
        return _bind_bool_op(plan.kind == "and", [bind(p, c) for p in plan.parts])
    test = plan.test
    return lambda a: test(c, a)


def _bind_bool_op(conjunction: bool, bound: list[Bound]) -> Bound:
    tests: list[Callable[[Action], bool]] = []
    for part in bound:
        if isinstance(part, bool):
            if part is not conjunction:  # False in an `and`, True in an `or` decides
                return part
            continue
        tests.append(part)
    if not tests:
        return conjunction
    if len(tests) == 1:
        return tests[0]
    if conjunction:
        return lambda a: all(t(a) for t in tests)
    return lambda a: any(t(a) for t in tests)
