"""Rule expressions: every operator, null semantics, clear compile errors, never a crash."""

from __future__ import annotations

import inspect
import re
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.rulebind
import engine.rulecompile
import engine.ruleparser
import engine.rules
import engine.ruletree
from engine.actions import Action
from engine.errors import InvalidInput, LimitExceeded
from engine.features import Features
from engine.rules import compile_rule

CONTEXT: Features = {
    "context": {"hour": 23.0, "device": "mobile", "mobile": 1.0},
    "user": {"segment": "vip", "geo.country": "DE", "tags=gold": 1.0, "visits": 3.0},
    "device": {"os": "ios"},
}
ACTION = Action(
    id="hero-kids",
    features={"context": {"price": 12.0}, "banner": {"theme": "run", "colors=red": 1.0}},
    metadata={"tags": ["sale", "kids"], "brand": "acme", "new": True, "stock": 3, "d": {"x": 2}},
)

CASES: list[tuple[str, bool]] = [
    # comparisons on numbers and strings
    ("context.hour >= 22", True),
    ("context.hour > 23", False),
    ("context.hour <= 23", True),
    ("context.hour < 23", False),
    ("context.hour == 23", True),
    ("context.hour != 23", False),
    ("22 <= context.hour", True),
    ("context.device == 'mobile'", True),
    ('context.device == "desktop"', False),
    ("context.device < 'n'", True),
    ("context.device >= 'n'", False),
    # variable resolution
    ("context.user.segment == 'vip'", True),
    ("context.user.geo.country == 'DE'", True),
    ("context.user['geo.country'] == 'DE'", True),
    ("context.device.os == 'ios'", True),
    ("context.context.device == 'mobile'", True),
    ("action.id == 'hero-kids'", True),
    ("action.price < 20", True),
    ("action.context.price == 12", True),
    ("action.banner.theme == 'run'", True),
    ("action.metadata.brand == 'acme'", True),
    ("action.metadata.stock > 2", True),
    ("action.metadata.d.x == 2", True),
    ("action.metadata.new == true", True),
    ("context.mobile == true", True),
    ("context.mobile == false", False),
    # membership, contains, startswith
    ("'kids' in action.tags", True),
    ("'toys' in action.tags", False),
    ("'toys' not in action.tags", True),
    ("'kids' not in action.tags", False),
    ("action.tags contains 'sale'", True),
    ("action.metadata.brand in ['acme', 'other']", True),
    ("action.metadata.brand not in ['acme', 'other']", False),
    ("context.hour in [22, 23]", True),
    ("context.user.tags contains 'gold'", True),
    ("'vip' in context.user.tags", False),
    ("'vip' not in context.user.tags", True),
    ("action.banner.colors contains 'red'", True),
    ("context.device contains 'obi'", True),
    ("'obi' in context.device", True),
    ("action.id startswith 'hero'", True),
    ("action.id startswith 'kids'", False),
    # boolean logic and precedence
    ("context.hour >= 22 and action.tags contains 'kids'", True),
    ("context.hour < 6 or action.price < 20", True),
    ("not context.hour < 6", True),
    ("not (context.hour >= 22 and action.price < 20)", False),
    ("context.hour < 6 or context.hour > 20 and action.price > 100", False),
    ("(context.hour < 6 or context.hour > 20) and action.price < 100", True),
    ("true", True),
    ("false or null", False),
    ("context.user.visits", True),
    # null semantics: missing is null; comparisons with null are false except == / != null
    ("context.missing == null", True),
    ("context.missing != null", False),
    ("context.hour != null", True),
    ("null == context.missing", True),
    ("context.missing == 'a'", False),
    ("context.missing != 'a'", False),
    ("not (context.missing == 'a')", True),
    ("context.missing < 1", False),
    ("not context.missing < 1", True),
    ("context.missing in ['a']", False),
    ("context.missing not in ['a']", False),
    ("'a' in context.missing", False),
    ("context.nope.tags contains 'x'", False),
    ("action.metadata.nothing.deeper == 1", False),
    ("context.missing == context.other", False),
    ("null in [null]", False),
    ("context.missing", False),
    ("not context.missing", True),
    # type mismatch is false (or "different" for !=), never an exception
    ("context.device < 3", False),
    ("context.hour < 'a'", False),
    ("context.device == 3", False),
    ("context.device != 3", True),
    ("action.tags < 3", False),
    ("action.tags startswith 'a'", False),
    ("3 in action.metadata.brand", False),
    ("action.metadata.d == 'x'", False),
    ("context.hour == context.user.visits", False),
    ("context.hour > context.user.visits", True),
    ("context.hour > context.device", False),
    # escapes
    ("'it\\'s' == \"it's\"", True),
    ("'a\\tb' contains '\\u0009'", True),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_evaluation_table(text: str, expected: bool) -> None:
    rule = compile_rule(text, "f")
    assert rule.evaluate(CONTEXT, ACTION) is expected
    bound = rule.bind(CONTEXT)
    assert (bound if isinstance(bound, bool) else bound(ACTION)) is expected, "bind differs"
    again = compile_rule(rule.canonical, "f")
    assert again.evaluate(CONTEXT, ACTION) is expected, rule.canonical
    assert again.canonical == rule.canonical


BAD: list[tuple[str, int, str]] = [
    ("context.hour >= ", 17, "expected a value after '>=', but the expression ended"),
    ("context.hour = 3", 14, "use '=='"),
    ("foo == 1", 1, "unknown name 'foo'"),
    ("(context.a == 1", 16, "expected ')' to close the '(' at column 1"),
    ("context.a == 1 == 2", 16, "comparisons do not chain"),
    ("[1, context.x]", 5, "expected a literal"),
    ("'abc", 1, "not closed"),
    ("'\\q'", 2, "unknown escape"),
    ("context.a && 1", 11, "use 'and'"),
    ("", 1, "expected a value, but the expression ended"),
    ("context", 1, "expected '.' and a name after 'context'"),
    ("context.x and", 14, "expected a value after 'and'"),
    ("context.x or or", 14, "expected a value after 'or', got 'or'"),
    ("context.x ) ", 11, "expected 'and', 'or' or the end"),
    ("action.metadata == 1", 1, "expected a key after 'action.metadata'"),
    ("(context.a == 1) == true", 1, "got a condition"),
    ("context.a < [1]", 11, "not lists"),
    ("[1 2]", 4, "expected ',' or ']'"),
    ("context. == 1", 10, "expected a name after '.'"),
    ("1e999 == 1", 1, "out of range"),
    ("context.a == 1 context.b", 16, "expected 'and', 'or' or the end"),
    ("context.a ! 1", 11, "use 'not' or '!='"),
]


@pytest.mark.parametrize(("text", "column", "fragment"), BAD)
def test_compile_errors_name_the_column_and_the_field(
    text: str, column: int, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        compile_rule(text, "constraints.rules[2].when")
    assert info.value.field == "constraints.rules[2].when"
    assert f"at column {column}: " in info.value.detail, info.value.detail
    assert fragment in info.value.detail, info.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "context.a == 1 and " * 120 + "true",  # > 2000 characters
        "(" * 33 + "true" + ")" * 33,
        "not " * 33 + "true",
        "context.a in [" + ", ".join(["1"] * 1001) + "]",
    ],
)
def test_limits_are_refused(text: str) -> None:
    with pytest.raises(LimitExceeded):
        compile_rule(text, "f")


def test_depth_32_is_allowed() -> None:
    assert compile_rule("(" * 32 + "true" + ")" * 32, "f").evaluate({}, ACTION)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        compile_rule(3, "f")


def test_variables_and_uses() -> None:
    rule = compile_rule("context.hour >= 22 and 'kids' in action.tags", "f")
    assert rule.variables == {"context.hour", "action.tags"}
    assert rule.uses_action and rule.uses_context
    assert not compile_rule("context.hour > 1", "f").uses_action
    assert compile_rule("action.id == 'x'", "f").uses_action


def test_text_round_trips() -> None:
    for text, _ in CASES:
        rule = compile_rule(text, "f")
        assert rule.text == text and str(rule) == text
        assert compile_rule(rule.text, "f") == rule


@pytest.mark.parametrize(
    "module",
    [engine.rules, engine.ruleparser, engine.ruletree, engine.rulecompile, engine.rulebind],
)
def test_no_eval_or_exec_in_the_module(module: ModuleType) -> None:
    source = inspect.getsource(module)
    assert not re.search(r"(?<![\w.])(eval|exec|compile|__import__)\s*\(", source)
    assert "import builtins" not in source


# --- properties ----------------------------------------------------------------------------

PIECES = [
    "context.hour",
    "context.user.segment",
    "action.tags",
    "action.id",
    "action.metadata.b",
    "action.price",
    "context",
    "action",
    ".",
    "x",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not",
    "contains",
    "startswith",
    "and",
    "or",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'a'",
    '"b\\n"',
    "'",
    '"',
    "\\",
    "1",
    "-2.5",
    "1e3",
    "true",
    "false",
    "null",
    "=",
    "!",
    "&",
    "@",
    "['k']",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=2), scalars, max_size=2),
)
feature_values = st.one_of(st.floats(-10, 10), st.text(max_size=3))
namespaces = st.dictionaries(
    st.sampled_from(["hour", "segment", "price", "tags=a", "x", "b"]), feature_values, max_size=4
)
features = st.dictionaries(
    st.sampled_from(["context", "user", "banner", "hour"]), namespaces, max_size=3
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=15), st.text(max_size=20))
def test_token_soup_only_raises_invalid_input(pieces: list[str], noise: str) -> None:
    for text in (" ".join(pieces), "".join(pieces), " ".join(pieces) + noise):
        try:
            compile_rule(text, "f")
        except InvalidInput as exc:
            assert exc.field == "f"
            assert "at column" in exc.detail or "limit" in exc.detail, exc.detail


SOUND = [text for text, _ in CASES] + [
    "action.metadata.b < 3 or action.metadata.b == 'x' or action.metadata.b in [1, 'a']",
    "action.metadata.b contains 'a' and not action.metadata.b startswith 'b'",
    "context.hour > action.price or context.user.segment == action.metadata.b",
    "action.price in action.metadata.b and context.user.x >= -1",
]


@settings(max_examples=300, deadline=None)
@given(
    context=features,
    action_features=features,
    metadata=st.dictionaries(st.sampled_from(["b", "tags", "brand", "d"]), values, max_size=4),
)
def test_compiled_rules_never_raise_when_evaluated(
    context: Features, action_features: Features, metadata: dict[str, object]
) -> None:
    action = Action(id="a", features=action_features, metadata=metadata)
    for text in SOUND:
        rule = compile_rule(text, "f")
        result = rule.evaluate(context, action)
        assert isinstance(result, bool)
        bound = rule.bind(context)
        assert (bound if isinstance(bound, bool) else bound(action)) is result
