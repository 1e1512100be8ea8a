"""A rule's syntax tree compiled to closures: `test(context, action) -> bool`.

Every variable path is resolved once, here, so evaluating a rule only does dictionary
lookups and comparisons, and the common shapes (`variable OP literal`, `literal in
variable`) are fused into one closure each. Nothing here raises at evaluation time: a
missing variable is null and a comparison across types is false (engine.rules documents
the semantics).

May import: the standard library, engine.actions, engine.features and engine.ruletree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TypeAlias, cast

from engine.actions import Action
from engine.features import DEFAULT_NAMESPACE, Features
from engine.ruletree import BoolOp, Cmp, ListLit, Lit, Literal, Node, Not, Value, Var

Getter: TypeAlias = Callable[[Features, Action], object]
Test: TypeAlias = Callable[[Features, Action], bool]

_EMPTY: dict[str, float | str] = {}


def _feature_path(segments: tuple[str, ...]) -> tuple[str, str]:
    if len(segments) == 1:
        return DEFAULT_NAMESPACE, segments[0]
    return segments[0], ".".join(segments[1:])


def _scalar(value: object) -> object:
    """Metadata values as the language sees them: booleans and integers become floats."""
    kind = type(value)
    if kind is bool or kind is int:
        return float(value)  # type: ignore[arg-type]  # kind checked just above
    return value


def _getter(var: Var) -> Getter:
    if var.root == "context":
        ns, name = _feature_path(var.segments)

        def context_feature(c: Features, a: Action) -> object:
            return c.get(ns, _EMPTY).get(name)

        return context_feature
    return _action_getter(var.segments)


def _action_getter(segments: tuple[str, ...]) -> Getter:
    if segments == ("id",):
        return lambda c, a: a.id
    if segments == ("tags",) or (segments[0] == "metadata" and len(segments) == 2):
        key = segments[-1]
        return lambda c, a: _scalar(a.metadata.get(key))
    if segments[0] == "metadata":
        return _nested_metadata(segments[1:])
    ns, name = _feature_path(segments)

    def action_feature(c: Features, a: Action) -> object:
        return a.features.get(ns, _EMPTY).get(name)

    return action_feature


def _nested_metadata(keys: tuple[str, ...]) -> Getter:
    def get(c: Features, a: Action) -> object:
        value: object = a.metadata
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return _scalar(value)

    return get


def _value(node: Value) -> Getter:
    if isinstance(node, Var):
        return _getter(node)
    constant: object = [i.value for i in node.items] if isinstance(node, ListLit) else node.value
    return lambda c, a: constant


def compile_node(node: Node) -> Test:
    """The closure that evaluates `node` (a condition, or a bare value tested for truth)."""
    if isinstance(node, Cmp):
        return _comparison(node)
    if isinstance(node, Not):
        inner = compile_node(node.operand)
        return lambda c, a: not inner(c, a)
    if isinstance(node, BoolOp):
        return _bool_op(node.op, [compile_node(o) for o in node.operands])
    get = _value(node)
    return lambda c, a: _truthy(get(c, a))


def _truthy(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float | int | str | list | tuple | Mapping):
        return bool(value)
    return True


def _bool_op(op: str, tests: list[Test]) -> Test:
    if len(tests) == 2:
        first, second = tests
        if op == "and":
            return lambda c, a: first(c, a) and second(c, a)
        return lambda c, a: first(c, a) or second(c, a)
    if op == "and":
        return lambda c, a: all(t(c, a) for t in tests)
    return lambda c, a: any(t(c, a) for t in tests)


def _comparison(node: Cmp) -> Test:
    left, right = node.left, node.right
    if node.op in ("==", "!=") and (_is_null(left) or _is_null(right)):
        other = _value(right if _is_null(left) else left)
        if node.op == "==":
            return lambda c, a: other(c, a) is None
        return lambda c, a: other(c, a) is not None
    if _is_null(left) or _is_null(right):
        return lambda c, a: False
    if node.op in ("in", "not in", "contains"):
        item, collection = (right, left) if node.op == "contains" else (left, right)
        return _membership(item, collection, negate=node.op == "not in")
    if node.op == "startswith":
        return _startswith(_value(left), _value(right))
    if isinstance(right, Lit) and not isinstance(left, Lit):
        return _against_literal(node.op, left, right.value)
    if isinstance(left, Lit) and not isinstance(right, Lit):
        return _against_literal(_MIRROR[node.op], right, left.value)
    return _general(node.op, _value(left), _value(right))


_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _is_null(node: Value) -> bool:
    return isinstance(node, Lit) and node.value is None and not node.boolean


def _against_literal(op: str, node: Value, k: Literal) -> Test:
    """`variable OP literal`, the hot path: fused lookup and comparison, one call."""
    where = _location(node) if isinstance(node, Var) else None
    if where is not None:
        source, ns, name = where
        if op == "==":
            return _FUSED_EQ[source](ns, name, k)
        kinds = (str,) if isinstance(k, str) else (float, int, bool)
        if op == "!=":
            return _FUSED_NE[source](ns, name, k, kinds)
        return _FUSED_ORDER[source](ns, name, k, kinds, _ORDER[op])
    get = _value(node)
    if op == "==":
        return lambda c, a: get(c, a) == k
    if op == "!=":

        def differs(c: Features, a: Action) -> bool:
            v = get(c, a)
            return v is not None and v != k

        return differs
    compare = _ORDER[op]
    kinds = (str,) if isinstance(k, str) else (float, int, bool)

    def ordered(c: Features, a: Action) -> bool:
        v = get(c, a)
        return type(v) in kinds and compare(v, k)

    return ordered


def _location(var: Var) -> tuple[str, str, str] | None:
    """(source, namespace, name) for variables one lookup away; None for the rest."""
    if var.root == "context":
        return ("context", *_feature_path(var.segments))
    if var.segments == ("id",):
        return None
    if var.segments == ("tags",) or (var.segments[0] == "metadata" and len(var.segments) == 2):
        return "metadata", "", var.segments[-1]
    if var.segments[0] == "metadata":
        return None
    return ("action", *_feature_path(var.segments))


Kinds: TypeAlias = tuple[type, ...]
Order: TypeAlias = Callable[[object, object], bool]


def _eq_context(ns: str, name: str, k: Literal) -> Test:
    return lambda c, a: c.get(ns, _EMPTY).get(name) == k


def _eq_action(ns: str, name: str, k: Literal) -> Test:
    return lambda c, a: a.features.get(ns, _EMPTY).get(name) == k


def _eq_metadata(ns: str, name: str, k: Literal) -> Test:
    return lambda c, a: a.metadata.get(name) == k


def _ne_context(ns: str, name: str, k: Literal, kinds: Kinds) -> Test:
    def differs(c: Features, a: Action) -> bool:
        v = c.get(ns, _EMPTY).get(name)
        return v is not None and v != k

    return differs


def _ne_action(ns: str, name: str, k: Literal, kinds: Kinds) -> Test:
    def differs(c: Features, a: Action) -> bool:
        v = a.features.get(ns, _EMPTY).get(name)
        return v is not None and v != k

    return differs


def _ne_metadata(ns: str, name: str, k: Literal, kinds: Kinds) -> Test:
    def differs(c: Features, a: Action) -> bool:
        v = a.metadata.get(name)
        return v is not None and v != k

    return differs


def _order_context(ns: str, name: str, k: Literal, kinds: Kinds, compare: Order) -> Test:
    def ordered(c: Features, a: Action) -> bool:
        v = c.get(ns, _EMPTY).get(name)
        return type(v) in kinds and compare(v, k)

    return ordered


def _order_action(ns: str, name: str, k: Literal, kinds: Kinds, compare: Order) -> Test:
    def ordered(c: Features, a: Action) -> bool:
        v = a.features.get(ns, _EMPTY).get(name)
        return type(v) in kinds and compare(v, k)

    return ordered


def _order_metadata(ns: str, name: str, k: Literal, kinds: Kinds, compare: Order) -> Test:
    def ordered(c: Features, a: Action) -> bool:
        v = a.metadata.get(name)
        return type(v) in kinds and compare(v, k)

    return ordered


_FUSED_EQ = {"context": _eq_context, "action": _eq_action, "metadata": _eq_metadata}
_FUSED_NE = {"context": _ne_context, "action": _ne_action, "metadata": _ne_metadata}
_FUSED_ORDER = {"context": _order_context, "action": _order_action, "metadata": _order_metadata}


def _general(op: str, left: Getter, right: Getter) -> Test:
    if op in ("==", "!="):
        want = op == "=="

        def equality(c: Features, a: Action) -> bool:
            x, y = left(c, a), right(c, a)
            return x is not None and y is not None and (x == y) is want

        return equality
    compare = _ORDER[op]

    def ordered(c: Features, a: Action) -> bool:
        x, y = left(c, a), right(c, a)
        return _comparable(x, y) and compare(x, y)

    return ordered


def _comparable(x: object, y: object) -> bool:
    tx, ty = type(x), type(y)
    if tx is str:
        return ty is str
    return (tx is float or tx is int) and (ty is float or ty is int)


_ORDER: dict[str, Order] = {
    "<": cast(Order, operator.lt),
    "<=": cast(Order, operator.le),
    ">": cast(Order, operator.gt),
    ">=": cast(Order, operator.ge),
}


def _membership(item: Value, collection: Value, negate: bool) -> Test:
    get_item = _value(item)
    if isinstance(collection, ListLit):
        members = frozenset(i.value for i in collection.items if i.value is not None)

        def in_literal(c: Features, a: Action) -> bool:
            v = get_item(c, a)
            kind = type(v)
            if kind is str or kind is float or kind is int:
                return (v in members) is not negate
            return False

        return in_literal
    if isinstance(item, Lit) and isinstance(collection, Var):
        fused = _fused_membership(item.value, collection, negate)
        if fused is not None:
            return fused
    if isinstance(collection, Var) and _is_feature(collection):
        member = _feature_member(collection)
    else:
        member = _value_member(collection)

    def in_value(c: Features, a: Action) -> bool:
        found = member(c, a, get_item(c, a))
        return found is not None and found is not negate

    return in_value


def _fused_membership(k: Literal, var: Var, negate: bool) -> Test | None:
    """`literal in variable`, e.g. `'kids' in action.tags`: one call per evaluation."""
    where = _location(var)
    if where is None:
        return None
    source, _, name = where
    if source == "metadata":

        def in_metadata(c: Features, a: Action) -> bool:
            value = a.metadata.get(name)
            if type(value) is list:
                return (k in value) is not negate
            found = _contains(value, k)
            return found is not None and found is not negate

        return in_metadata
    member = _feature_member(var)
    return lambda c, a: (found := member(c, a, k)) is not None and found is not negate


def _is_feature(node: Var) -> bool:
    return node.root == "context" or (
        node.segments not in (("id",), ("tags",)) and node.segments[0] != "metadata"
    )


Member: TypeAlias = Callable[[Features, Action, object], bool | None]


def _contains(collection: object, item: object) -> bool | None:
    """True/False when membership is defined, None when it is not (null, type mismatch)."""
    if item is None or collection is None:
        return None
    if isinstance(collection, list | tuple):
        return item in collection
    if isinstance(collection, str) and isinstance(item, str):
        return item in collection
    return None


def _value_member(collection: Value) -> Member:
    get = _value(collection)
    return lambda c, a, item: _contains(get(c, a), item)


def _feature_member(var: Var) -> Member:
    """Membership in a feature; a flattened list feature is stored as `name=value` entries."""
    ns, name = _feature_path(var.segments)
    on_action = var.root == "action"

    def member(c: Features, a: Action, item: object) -> bool | None:
        namespace = (a.features if on_action else c).get(ns, _EMPTY)
        value = namespace.get(name)
        if value is not None:
            return _contains(value, item)
        if not isinstance(item, str):
            return None
        if f"{name}={item}" in namespace:
            return True
        prefix = f"{name}="
        return False if any(key.startswith(prefix) for key in namespace) else None

    return member


def _startswith(left: Getter, right: Getter) -> Test:
    def starts(c: Features, a: Action) -> bool:
        x, y = left(c, a), right(c, a)
        return isinstance(x, str) and isinstance(y, str) and x.startswith(y)

    return starts
