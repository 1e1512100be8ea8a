"""Rule text to a syntax tree: a tokenizer and a recursive-descent parser.

`Parser(text, where).parse()` returns the engine.ruletree node of an expression, or raises
InvalidInput (LimitExceeded for nesting and list sizes) naming `where` and the column, with
a hint for the mistakes people make (`=`, `&&`, chained comparisons). The grammar and the
semantics are in engine.rules.

May import: the standard library, engine.errors and engine.ruletree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engine.errors import InvalidInput, LimitExceeded
from engine.ruletree import CONDITIONS, BoolOp, Cmp, ListLit, Lit, Literal, Node, Not, Var

MAX_DEPTH = 32
MAX_LIST_ITEMS = 1000
KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "startswith", "true", "false", "null"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
WORD_OPERATORS = ("in", "contains", "startswith")
_CONNECTIVES = frozenset({"and", "or", "not", "("})

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_HINTS = {"=": "use '==' to compare", "!": "use 'not' or '!='", "&": "use 'and'", "|": "use 'or'"}


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
