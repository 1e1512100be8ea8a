"""Business-rule expressions: a small, safe language compiled to closures (never eval).

`compile_rule(text, field)` tokenises, parses (recursive descent) into a small AST, checks
it, and compiles it into nested closures with every variable path resolved up front, so
`Rule.evaluate(context, action)` only does dictionary lookups and comparisons.

Language reference
------------------
Values      numbers (`22`, `-1.5`, `2e3`), strings (`'kids'`, `"it's"`, escapes
            `\\\\ \\' \\" \\n \\t \\r \\0 \\uXXXX`), `true`/`false` (the numbers 1 and 0, as
            flattened features store booleans), `null`, lists of literals `['a', 'b', 3]`.
Variables   `context.<name>`          request feature in namespace "context" (top-level scalars)
            `context.<ns>.<name>`     request feature `name` in namespace `ns`; deeper paths
                                      join the rest with dots: `context.user.geo.country` is
                                      namespace "user", name "geo.country"
            `action.id`               the action id
            `action.tags`             metadata "tags" (a list of strings)
            `action.metadata.<key>`   a metadata value; `.a.b` walks nested objects
            `action.<name>`, `action.<ns>.<name>`   action features, resolved like context
            A segment that is not a plain word is written `['geo.country']` after the path.
Operators   `==  !=  <  <=  >  >=`, `in`, `not in`, `contains`, `startswith`,
            `and`, `or`, `not`, parentheses. Keywords are lower case.
Precedence  `or` < `and` < `not` < comparisons; comparisons do not chain.

Semantics
---------
- A missing variable is null. Every comparison with a null operand is false, except
  `== null` (true when missing) and `!= null` (true when present). So `x != 'a'` and
  `x not in [...]` are false when `x` is missing, while `not (x == 'a')` is true.
- `==`/`!=` compare values of different types as different; `<`... compare only
  number-number or string-string (lexicographic) and are false otherwise; nothing raises.
- `a in b` / `b contains a`: `b` a list -> membership; `b` a string and `a` a string ->
  substring. A list-valued feature (flattened to `name=value` entries) also works:
  `context.user.tags contains 'vip'` checks the feature `tags=vip`.
- `a startswith b`: both strings. A bare value as a condition is true when it is present
  and non-zero / non-empty.
Limits: 2000 characters, nesting depth 32, 1000 items per list.

May import: the standard library and engine.errors / engine.features / engine.actions.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, cast

from engine.actions import Action
from engine.errors import InvalidInput, LimitExceeded
from engine.features import DEFAULT_NAMESPACE, Features

MAX_CHARS = 2000
MAX_DEPTH = 32
MAX_LIST_ITEMS = 1000
KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "startswith", "true", "false", "null"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
WORD_OPERATORS = ("in", "contains", "startswith")
_CONNECTIVES = frozenset({"and", "or", "not", "("})

Literal: TypeAlias = float | str | None
Getter: TypeAlias = Callable[[Features, "Action"], object]
Test: TypeAlias = Callable[[Features, "Action"], bool]

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_HINTS = {"=": "use '==' to compare", "!": "use 'not' or '!='", "&": "use 'and'", "|": "use 'or'"}
_EMPTY: dict[str, float | str] = {}


# --- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num" | "str" | "word" | "op" | "punct" | "end"
    text: str
    column: int  # 1-based
    value: Literal = None


def tokenize(text: str, where: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(text):
        space = _SPACE.match(text, i)
        if space:
            i = space.end()
            continue
        token = _token(text, i, out[-1] if out else None, where)
        out.append(token)
        i += len(token.text)
    out.append(Token("end", "", len(text) + 1))
    return out


def _token(text: str, i: int, previous: Token | None, where: str) -> Token:
    ch, column = text[i], i + 1
    after_dot = previous is not None and previous.kind == "punct" and previous.text == "."
    if after_dot and (m := _SEGMENT.match(text, i)):
        return Token("word", m.group(), column)
    if ch == "." and previous is not None and (previous.kind == "word" or previous.text == "]"):
        return Token("punct", ".", column)
    if ch in "'\"":
        return _string(text, i, where)
    if (ch.isdigit() or ch in "-.") and (m := _NUMBER.match(text, i)):
        value = float(m.group())
        if not math.isfinite(value):
            raise _error(where, column, f"the number {m.group()} is out of range")
        return Token("num", m.group(), column, value)
    for op in COMPARISONS:
        if text.startswith(op, i):
            return Token("op", op, column)
    if ch in "()[],":
        return Token("punct", ch, column)
    if m := _WORD.match(text, i):
        return Token("word", m.group(), column)
    hint = _HINTS.get(ch)
    raise _error(where, column, f"unexpected character {ch!r}" + (f"; {hint}" if hint else ""))


def _string(text: str, start: int, where: str) -> Token:
    quote, i = text[start], start + 1
    chars: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return Token("str", text[start : i + 1], start + 1, "".join(chars))
        if ch == "\\":
            decoded, i = _escape(text, i, where)
            chars.append(decoded)
            continue
        chars.append(ch)
        i += 1
    raise _error(where, start + 1, f"the string starting here is not closed with {quote}")


def _escape(text: str, i: int, where: str) -> tuple[str, int]:
    code = text[i + 1 : i + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], i + 2
    digits = text[i + 2 : i + 6]
    if code == "u" and len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return chr(int(digits, 16)), i + 6
    raise _error(
        where,
        i + 1,
        f"unknown escape '\\{code}' in a string; use \\\\ \\' \\\" \\n \\t \\r \\0 or \\uXXXX",
    )


def _error(where: str, column: int, message: str, limit: bool = False) -> InvalidInput:
    kind = LimitExceeded if limit else InvalidInput
    return kind(f"{where}: at column {column}: {message}", field=where)


# --- syntax tree --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lit:
    value: Literal
    boolean: bool = False  # written as true/false

    def render(self) -> str:
        if self.boolean:
            return "true" if self.value else "false"
        if self.value is None:
            return "null"
        if isinstance(self.value, str):
            return _quote(self.value)
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Lit, ...]

    def render(self) -> str:
        return "[" + ", ".join(item.render() for item in self.items) + "]"


@dataclass(frozen=True, slots=True)
class Var:
    root: str  # "context" | "action"
    segments: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.render()

    def render(self) -> str:
        out = self.root
        for segment in self.segments:
            out += f".{segment}" if _PLAIN.fullmatch(segment) else f"[{_quote(segment)}]"
        return out


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str
    left: Value
    right: Value

    def render(self) -> str:
        return f"{self.left.render()} {self.op} {self.right.render()}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def render(self) -> str:
        return f"not ({self.operand.render()})"


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]

    def render(self) -> str:
        return f" {self.op} ".join(f"({o.render()})" for o in self.operands)


Value: TypeAlias = Lit | ListLit | Var
Node: TypeAlias = Lit | ListLit | Var | Cmp | Not | BoolOp
CONDITIONS = (Cmp, Not, BoolOp)


def _quote(value: str) -> str:
    body = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    body = body.replace("\r", "\\r").replace("\t", "\\t").replace("\0", "\\0")
    return f"'{body}'"


# --- parser -------------------------------------------------------------------------------


class Parser:
    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.tokens = tokenize(text, where)
        self.pos = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.disjunction()
        token = self.peek()
        if token.kind != "end":
            raise self.fail(token, f"expected 'and', 'or' or the end, got {token.text!r}")
        return node

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def is_word(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "word" and token.text == word

    def fail(self, token: Token, message: str) -> InvalidInput:
        return _error(self.where, token.column, message)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(
                self.where, token.column, f"nested deeper than {MAX_DEPTH} levels", limit=True
            )

    def disjunction(self) -> Node:
        operands = [self.conjunction()]
        while self.is_word("or"):
            self.advance()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def conjunction(self) -> Node:
        operands = [self.negation()]
        while self.is_word("and"):
            self.advance()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def negation(self) -> Node:
        if self.is_word("not"):
            token = self.advance()
            self.enter(token)
            operand = self.negation()
            self.depth -= 1
            return Not(operand)
        return self.comparison()

    def comparison(self) -> Node:
        start = self.peek()
        left = self.operand(None)
        op_token = self.peek()
        op = self.operator()
        if op is None:
            return left
        if isinstance(left, CONDITIONS):
            raise self.fail(start, f"expected a value before {op!r}, got a condition")
        right_token = self.peek()
        right = self.operand(op)
        if isinstance(right, CONDITIONS):
            raise self.fail(right_token, f"expected a value after {op!r}, got a condition")
        if self.operator_ahead():
            raise self.fail(self.peek(), "comparisons do not chain; combine them with 'and'")
        if op in ("<", "<=", ">", ">=") and (
            isinstance(left, ListLit) or isinstance(right, ListLit)
        ):
            raise self.fail(op_token, f"{op!r} compares numbers or strings, not lists")
        return Cmp(op, left, right)

    def operator_ahead(self) -> bool:
        token = self.peek()
        if token.kind == "op":
            return True
        return token.kind == "word" and (
            token.text in WORD_OPERATORS or (token.text == "not" and self.is_word("in", 1))
        )

    def operator(self) -> str | None:
        token = self.peek()
        if token.kind == "op":
            self.advance()
            return token.text
        if token.kind == "word" and token.text in WORD_OPERATORS:
            self.advance()
            return token.text
        if self.is_word("not") and self.is_word("in", 1):
            self.pos += 2
            return "not in"
        return None

    def operand(self, after: str | None) -> Node:
        token = self.peek()
        if token.kind in ("num", "str") or (token.kind == "word" and token.text in _LITERALS):
            return self.literal()
        if token.text == "[" and token.kind == "punct":
            return self.list_literal()
        if token.text == "(" and token.kind == "punct":
            self.advance()
            self.enter(token)
            inner = self.disjunction()
            self.depth -= 1
            closing = self.advance()
            if closing.text != ")" or closing.kind != "punct":
                raise self.fail(closing, f"expected ')' to close the '(' at column {token.column}")
            return inner
        if token.kind == "word" and token.text not in KEYWORDS:
            return self.variable()
        previous = self.tokens[self.pos - 1] if self.pos else None
        if after is None and previous is not None and previous.text in _CONNECTIVES:
            after = previous.text
        context = f" after {after!r}" if after else ""
        got = "but the expression ended" if token.kind == "end" else f"got {token.text!r}"
        raise self.fail(token, f"expected a value{context}, {got}")

    def literal(self) -> Lit:
        token = self.advance()
        if token.kind in ("num", "str"):
            return Lit(token.value)
        return _LITERALS[token.text]

    def list_literal(self) -> ListLit:
        opening = self.advance()
        self.enter(opening)
        items: list[Lit] = []
        if self.peek().text == "]" and self.peek().kind == "punct":
            self.advance()
            self.depth -= 1
            return ListLit(())
        while True:
            token = self.peek()
            if not (token.kind in ("num", "str") or token.text in _LITERALS):
                raise self.fail(
                    token, "expected a literal (number, string, true, false or null) in the list"
                )
            items.append(self.literal())
            if len(items) > MAX_LIST_ITEMS:
                raise _error(
                    self.where,
                    token.column,
                    f"a list holds at most {MAX_LIST_ITEMS} items",
                    limit=True,
                )
            separator = self.advance()
            if separator.kind == "punct" and separator.text == "]":
                self.depth -= 1
                return ListLit(tuple(items))
            if separator.kind != "punct" or separator.text != ",":
                raise self.fail(separator, "expected ',' or ']' in the list")

    def variable(self) -> Var:
        root = self.advance()
        if root.text not in ("context", "action"):
            raise self.fail(
                root, f"unknown name {root.text!r}; variables start with 'context.' or 'action.'"
            )
        segments: list[str] = []
        while True:
            token = self.peek()
            if token.kind == "punct" and token.text == ".":
                self.advance()
                name = self.advance()
                if name.kind != "word":
                    raise self.fail(name, "expected a name after '.'")
                segments.append(name.text)
            elif token.kind == "punct" and token.text == "[":
                self.advance()
                key = self.advance()
                closing = self.advance()
                if key.kind != "str" or closing.text != "]":
                    raise self.fail(key, "expected a quoted name and ']' after '['")
                segments.append(str(key.value))
            else:
                break
        return self.check_variable(root, segments)

    def check_variable(self, root: Token, segments: list[str]) -> Var:
        if not segments:
            raise self.fail(root, f"expected '.' and a name after {root.text!r}")
        if root.text == "action" and segments == ["metadata"]:
            raise self.fail(root, "expected a key after 'action.metadata'")
        if any(not s for s in segments):
            raise self.fail(root, "names in a variable must not be empty")
        return Var(root.text, tuple(segments))


_LITERALS = {
    "true": Lit(1.0, boolean=True),
    "false": Lit(0.0, boolean=True),
    "null": Lit(None),
}


# --- compilation --------------------------------------------------------------------------


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


def _compile(node: Node) -> Test:
    if isinstance(node, Cmp):
        return _comparison(node)
    if isinstance(node, Not):
        inner = _compile(node.operand)
        return lambda c, a: not inner(c, a)
    if isinstance(node, BoolOp):
        return _bool_op(node.op, [_compile(o) for o in node.operands])
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


Member: TypeAlias = Callable[[Features, "Action", object], bool | None]


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


# --- binding a context: fold what is fixed per request, memoise what is fixed per action ---

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


def _plan(node: Node) -> Plan:
    variables = _variables(node)
    on_action = any(v.startswith("action") for v in variables)
    on_context = any(v.startswith("context") for v in variables)
    test = _compile(node)
    if not on_action:
        return Plan("context", test)
    if not on_context:
        return Plan("action", test, memo=Memo(test))
    if isinstance(node, Not):
        return Plan("not", test, (_plan(node.operand),))
    if isinstance(node, BoolOp):
        return Plan(node.op, test, tuple(_plan(o) for o in node.operands))
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


def _bind(plan: Plan, c: Features) -> Bound:
    if plan.kind == "context":
        return plan.test(c, _NO_ACTION)
    if plan.memo is not None:
        return plan.memo
    if plan.kind == "not":
        inner = _bind(plan.parts[0], c)
        if isinstance(inner, bool):
            return not inner
        return lambda a: not inner(a)
    if plan.kind in ("and", "or"):
        return _bind_bool_op(plan.kind == "and", [_bind(p, c) for p in plan.parts])
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


# --- public API ---------------------------------------------------------------------------


def _variables(node: Node) -> frozenset[str]:
    if isinstance(node, Var):
        return frozenset({node.path})
    if isinstance(node, Cmp):
        return _variables(node.left) | _variables(node.right)
    if isinstance(node, Not):
        return _variables(node.operand)
    if isinstance(node, BoolOp):
        return frozenset().union(*(_variables(o) for o in node.operands))
    return frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled expression: `evaluate(context, action) -> bool`, never raises."""

    text: str
    tree: Node = field(repr=False, compare=False)
    variables: frozenset[str] = field(compare=False)
    evaluate: Test = field(repr=False, compare=False)
    plan: Plan = field(repr=False, compare=False)
    uses_action: bool = field(compare=False)  # reads action.*
    uses_context: bool = field(compare=False)  # reads context.*

    def bind(self, context: Features) -> Bound:
        """This rule for one request: True/False when the answer is the same for every
        action, else a test of one action. Context-only parts are evaluated here, once;
        action-only parts are memoised per action object across requests. Same results
        as `evaluate`, several times faster when a request checks many actions."""
        return _bind(self.plan, context)

    @property
    def canonical(self) -> str:
        """The expression fully parenthesised; compiling it gives the same rule."""
        return self.tree.render()

    def __str__(self) -> str:
        return self.text


def compile_rule(text: object, field: str) -> Rule:
    """Parse and compile `text`; errors are InvalidInput naming `field` and the column."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string expression, got {text!r}", field=field)
    if len(text) > MAX_CHARS:
        raise LimitExceeded(
            f"{field} has {len(text)} characters, more than the limit of {MAX_CHARS}", field=field
        )
    tree = Parser(text, field).parse()
    plan = _plan(tree)
    variables = _variables(tree)
    return Rule(
        text=text,
        tree=tree,
        variables=variables,
        evaluate=plan.test,
        plan=plan,
        uses_action=any(v.startswith("action") for v in variables),
        uses_context=any(v.startswith("context") for v in variables),
    )
