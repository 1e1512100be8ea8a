"""The rule language's syntax tree: what a parsed expression is made of.

Each node renders back to canonical text (fully parenthesised; parsing it gives the same
tree), and `variables(node)` lists the paths an expression reads. The parser
(engine.ruleparser) builds these nodes, the compiler (engine.rulecompile) turns them into
closures, and engine.rulebind plans how to bind them to one request.

May import: the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

Literal: TypeAlias = float | str | None

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


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
            return quote(self.value)
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
            out += f".{segment}" if _PLAIN.fullmatch(segment) else f"[{quote(segment)}]"
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


def quote(value: str) -> str:
    body = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    body = body.replace("\r", "\\r").replace("\t", "\\t").replace("\0", "\\0")
    return f"'{body}'"


def variables(node: Node) -> frozenset[str]:
    """The variable paths `node` reads, e.g. {"context.hour", "action.tags"}."""
    if isinstance(node, Var):
        return frozenset({node.path})
    if isinstance(node, Cmp):
        return variables(node.left) | variables(node.right)
    if isinstance(node, Not):
        return variables(node.operand)
    if isinstance(node, BoolOp):
        return frozenset().union(*(variables(o) for o in node.operands))
    return frozenset()
