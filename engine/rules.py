"""Business-rule expressions: a small, safe language compiled to closures (never eval).

`compile_rule(text, field)` tokenises, parses (recursive descent) into a small AST, checks
it, and compiles it into nested closures with every variable path resolved up front, so
`Rule.evaluate(context, action)` only does dictionary lookups and comparisons. This module
is the language's reference and its public face (`compile_rule`, `Rule`); each stage has
a module of its own:

  engine.ruleparser   text -> syntax tree (tokens, recursive descent, errors with columns)
  engine.ruletree     the syntax tree's nodes, rendered back to canonical text
  engine.rulecompile  syntax tree -> closures `test(context, action) -> bool`
  engine.rulebind     a rule bound to one request, its action-only parts memoised

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

May import: the standard library, engine.errors, engine.features and the rule modules above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import rulebind
from engine.errors import InvalidInput, LimitExceeded
from engine.features import Features
from engine.rulebind import Bound, Plan, plan_for
from engine.rulecompile import Test
from engine.ruleparser import Parser
from engine.ruletree import Node, variables

MAX_CHARS = 2000


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
        return rulebind.bind(self.plan, context)

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
    planned = plan_for(tree)
    read = variables(tree)
    return Rule(
        text=text,
        tree=tree,
        variables=read,
        evaluate=planned.test,
        plan=planned,
        uses_action=any(v.startswith("action") for v in read),
        uses_context=any(v.startswith("context") for v in read),
    )
