"""engine.vwformat checked against a real VW parser: no user byte may change an example's shape.

The oracle: for each line, the namespaces and features VW parses (index letter, feature hash,
value) must be exactly the ones the Features imply, hashed with VW's own hash functions from
the tokens we meant to write; exactly one action, the chosen one, carries the label.
"""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import vowpalwabbit
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import vwformat
from engine.errors import InvalidInput
from engine.features import Features

CB = vowpalwabbit.LabelType.CONTEXTUAL_BANDIT
CONSTANT_NAMESPACE = 128  # VW adds its constant feature here; not ours to count
SHARED_PROBABILITY = -1.0  # how VW marks a `shared` label
ESCAPED_RE = re.compile(r"(?:[A-Za-z0-9_.+\-]|%[0-9A-F]{2})+|%")
NASTY = [
    "|", ":", " ", "\t", "\n", "\r", "\x00", "_label", "_labelIndex", "shared",
    "|a b:1", "1:2:0.5", "%", "=", "'", '"', "\\",
]  # fmt: skip

FeatureKey = tuple[int, int, float]


# --- VW oracle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws() -> Iterator[vowpalwabbit.Workspace]:
    workspace = vowpalwabbit.Workspace("--cb_explore_adf --quiet")
    yield workspace
    workspace.finish()


@dataclass(frozen=True)
class Parser:
    """Holds the Workspace: Hypothesis would call a Workspace argument's `setup_example`."""

    ws: vowpalwabbit.Workspace


@pytest.fixture(scope="module")
def parser(ws: vowpalwabbit.Workspace) -> Parser:
    return Parser(ws)


def f32(value: float) -> float:
    """What VW stores: the value rounded to a 32-bit float."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def expected_features(
    ws: vowpalwabbit.Workspace, prefix: str, features: Features
) -> Counter[FeatureKey]:
    """(index letter, hash, value) of every feature VW should see; VW drops zero values."""
    out: Counter[FeatureKey] = Counter()
    for ns, values in features.items():
        ns_hash = ws.hash_space(prefix + vwformat.escape(ns))
        for name, value in values.items():
            if isinstance(value, str):
                token, weight = f"{vwformat.escape(name)}={vwformat.escape(value)}", 1.0
            else:
                token, weight = vwformat.escape(name), f32(value)
            if weight != 0.0:
                out[(ord(prefix), ws.hash_feature(token, ns_hash), weight)] += 1
    return out


def parsed_features(ex: vowpalwabbit.Example) -> Counter[FeatureKey]:
    out: Counter[FeatureKey] = Counter()
    for i in range(ex.num_namespaces()):
        ns = ex.get_ns(i)
        if ns.ord_ns == CONSTANT_NAMESPACE:
            continue
        for j in range(ex.num_features_in(ns)):
            out[(ns.ord_ns, ex.feature(ns, j), ex.feature_weight(ns, j))] += 1
    return out


def costs(ex: vowpalwabbit.Example) -> list[tuple[int, float, float]]:
    label = ex.get_label(CB)
    return [(c.action, c.cost, c.probability) for c in label.costs]


def check_parsed_by_vw(
    ws: vowpalwabbit.Workspace,
    shared: Features,
    actions: Sequence[Features],
    chosen: int | None = None,
    cost: float = 0.0,
    probability: float = 1.0,
) -> None:
    lines = vwformat.multiline(shared, actions, chosen, cost, probability)
    assert len(lines) == 1 + len(actions)
    for line in lines:
        assert not {"\n", "\r", "\x00"} & set(line), line
    examples = ws.parse(lines, CB)
    try:
        assert len(examples) == 1 + len(actions)
        head, *rest = examples
        assert [p for _, _, p in costs(head)] == [SHARED_PROBABILITY]
        assert parsed_features(head) == expected_features(ws, vwformat.CONTEXT_PREFIX, shared)
        for i, (ex, features) in enumerate(zip(rest, actions, strict=True)):
            want = [(0, f32(cost), f32(probability))] if i == chosen else []
            assert costs(ex) == want, (i, lines[i + 1])
            assert parsed_features(ex) == expected_features(ws, vwformat.ACTION_PREFIX, features)
    finally:
        ws.finish_example(examples)


# --- property test -------------------------------------------------------------------------

nasty = st.sampled_from(NASTY)
any_char = st.characters(exclude_categories=())  # lone surrogates too: JSON can carry them
strings = st.one_of(
    st.text(any_char, max_size=12),
    nasty,
    st.lists(nasty, min_size=1, max_size=4).map("".join),
)
numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
feature_sets = st.dictionaries(
    strings, st.dictionaries(strings, st.one_of(numbers, strings), max_size=5), max_size=4
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Features, list[Features], int | None, float, float]:
    actions = draw(st.lists(feature_sets, min_size=1, max_size=5))
    chosen = draw(st.none() | st.integers(0, len(actions) - 1))
    probability = draw(st.floats(min_value=vwformat.FLOAT32_MIN_POSITIVE, max_value=1.0))
    return draw(feature_sets), actions, chosen, draw(numbers), probability


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_vw_parses_exactly_the_intended_structure(
    parser: Parser, case: tuple[Features, list[Features], int | None, float, float]
) -> None:
    check_parsed_by_vw(parser.ws, *case)


def unescape(token: str) -> str:
    if token == vwformat.EMPTY_TOKEN:
        return ""
    parts = re.split(r"%([0-9A-F]{2})", token)
    raw = b"".join(bytes.fromhex(p) if i % 2 else p.encode() for i, p in enumerate(parts))
    return raw.decode("utf-8", "surrogatepass")


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(strings, st.text(any_char, max_size=40)))
def test_escape_is_a_safe_invertible_token(text: str) -> None:
    token = vwformat.escape(text)
    assert ESCAPED_RE.fullmatch(token), token
    assert unescape(token) == text


# --- corpus of known attacks -------------------------------------------------------------

ATTACKS: list[tuple[str, Features, list[Features]]] = [
    ("label-like feature name", {"user": {"|ca x:1": 1.0}}, [{"item": {"|a b:1": "1:2:0.5"}}]),
    ("newline in value", {"user": {"seg": "a\nshared |c evil"}}, [{"item": {"k": "a\r\n|a x"}}]),
    ("space in namespace", {"x y": {"a": 2.0}}, [{"x y": {"b c": "d e"}}]),
    (
        "reserved words",
        {"_label": {"_label": "shared", "_labelIndex": 1.0}},
        [{":": {":": ":"}}, {"|": {"|": "|"}}, {"shared": {"shared": "shared"}}],
    ),
    (
        "extreme numbers",
        {"n": {"big": 1e12, "neg": -1e12, "tiny": 5e-324, "negzero": -0.0, "small": 1e-07}},
        [{"n": {"denormal32": 1e-40, "under": 1.2345678901234567e-30, "cent": -19.99}}],
    ),
    (
        "exact integers",
        {"n": {"two24": 2.0**24, "past": 2.0**24 + 2, "neg": -(2.0**24) - 2, "one": 1.0}},
        [{"n": {"zero": 0.0, "minus": -1.0, "wide": 623364125173.0, "wneg": -884124773087.0}}],
    ),
    ("no features at all", {}, [{}, {"empty": {}}, {"x": {"y": 1.0}}]),
    ("empty strings", {"": {"": ""}}, [{"": {"": 1.0}}, {"a": {"": "", "%": "%"}}]),
    ("percent look-alikes", {"p": {"%41": "A", "A": "%41", "%": "%25"}}, [{"p": {"%25": 1.0}}]),
    ("quotes and backslash", {"q": {"'tag": '"x"', "\\": "\\|"}}, [{"q": {"'": 1.0}}]),
    ("control and unicode", {"u": {"\x00\x01\x7f": "é\u0301", "\u2028": "\ud800"}}, [{}]),
    ("very long names", {"l" * 256: {"|" * 256: "é" * 1024}}, [{"a": {"\n" * 256: 1.5}}]),
]


@pytest.mark.parametrize("chosen", [None, 0])
@pytest.mark.parametrize(
    ("shared", "actions"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_known_attacks_keep_their_structure(
    ws: vowpalwabbit.Workspace, shared: Features, actions: list[Features], chosen: int | None
) -> None:
    check_parsed_by_vw(ws, shared, actions, chosen, cost=-0.5, probability=0.25)


@pytest.mark.parametrize(
    "value",
    [
        *(1e-07, 0.1, -19.99, 1.2345678901234567e-30, 1e-40, 5e-324, -0.0),
        *(2.0**24 + 1, 623364125173.0, 1e12, 3.4e38),
    ],
)
def test_numbers_are_read_back_exactly(ws: vowpalwabbit.Workspace, value: float) -> None:
    text = vwformat.format_number(value)
    features: Features = {"n": {"x": value}}
    line = vwformat.labeled(vwformat.action_body(features), f"0:{text}:1")
    assert line.endswith(f"x:{text}")
    examples = ws.parse(["shared |c", line], CB)
    try:
        action = examples[1]
        assert parsed_features(action) == expected_features(ws, "a", features)
        assert costs(action)[0][1] == f32(value)
    finally:
        ws.finish_example(examples)


# --- unit tests --------------------------------------------------------------------------

SAMPLE = [
    "", " ", "%", "%%", "%25", "%2525", "a b", "a%20b", "a+b", "a-b", "a.b", "a_b", "\x00",
    "%00", "é", "e\u0301", "\ud800", "\udfff", "\U0001f600", "|", "%7C", ":", "=", "\t",
    "\n", "\r", "\r\n", "A", "a", "shared", "shared ",
]  # fmt: skip


def test_escape_is_injective_on_a_sample() -> None:
    escaped = [vwformat.escape(s) for s in SAMPLE]
    assert len(set(SAMPLE)) == len(SAMPLE)
    assert len(set(escaped)) == len(SAMPLE), escaped


@pytest.mark.parametrize("text", [vwformat.SAFE_CHARS, "user_id", "price.usd", "-1.5e+3", "A"])
def test_safe_strings_are_unchanged(text: str) -> None:
    assert vwformat.escape(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b", "a%20b"),
        ("x|y", "x%7Cy"),
        ("50%", "50%25"),
        ("k=v:1", "k%3Dv%3A1"),
        ("é", "%C3%A9"),
        ("\x00\n", "%00%0A"),
        ("", "%"),
        (" " * 40, "%20" * 40),
    ],
)
def test_escape_percent_encodes_utf8_bytes(text: str, expected: str) -> None:
    assert vwformat.escape(text) == expected


def test_namespace_block_is_sorted_and_deterministic() -> None:
    one: Features = {"user": {"seg": "runner", "age": 31.0}, "context": {"device": "mobile"}}
    two: Features = {"context": {"device": "mobile"}, "user": {"age": 31.0, "seg": "runner"}}
    expected = "|ccontext device=mobile |cuser age:31 seg=runner"
    assert vwformat.namespace_block("c", one) == expected
    assert vwformat.namespace_block("c", two) == expected


def test_empty_examples_are_still_valid_lines() -> None:
    assert vwformat.shared_line({}) == "shared |c"
    assert vwformat.shared_line({"user": {}}) == "shared |c"
    assert vwformat.action_body({}) == "|a"
    assert vwformat.namespace_block("a", {"item": {}}) == ""
    assert vwformat.action_body({}, "hero 1") == "|i id=hero%201"


def test_the_action_id_has_a_namespace_of_its_own(ws: vowpalwabbit.Workspace) -> None:
    features: Features = {"": {"x": "y"}, "item": {"k": "v"}}
    line = vwformat.action_body(features, "sku|1")
    assert line == "|i id=sku%7C1 |a% x=y |aitem k=v"
    example = ws.parse(["shared |c", line], CB)
    try:
        id_space = ws.hash_space("i")
        expected = expected_features(ws, "a", features)
        expected[(ord("i"), ws.hash_feature("id=sku%7C1", id_space), 1.0)] += 1
        assert parsed_features(example[1]) == expected
        assert id_space not in {ws.hash_space("a" + vwformat.escape(ns)) for ns in features}
    finally:
        ws.finish_example(example)


def test_all_digit_ids_stay_apart(ws: vowpalwabbit.Workspace) -> None:
    """VW reads an all-digit feature name as its weight index: "1" and "01" would meet."""
    lines = ["shared |c", vwformat.action_body({}, "1"), vwformat.action_body({}, "01")]
    examples = ws.parse(lines, CB)
    try:
        assert parsed_features(examples[1]) != parsed_features(examples[2])
    finally:
        ws.finish_example(examples)


@pytest.mark.parametrize(
    ("value", "text"),
    [(31.0, "31"), (-0.0, "0"), (-(2.0**24), "-16777216"), (0.5, "0x1.0000000000000p-1")],
)
def test_format_number(value: float, text: str) -> None:
    assert vwformat.format_number(value) == text


def test_cb_label_format() -> None:
    assert vwformat.cb_label(-1.0, 0.5) == "0:-1:0x1.0000000000000p-1"
    assert vwformat.cb_label(0.0, 1.0) == "0:0:1"


@pytest.mark.parametrize(
    ("cost", "probability", "field", "shown"),
    [
        (0.0, 0.0, "probability", "0.0"),
        (0.0, -0.5, "probability", "-0.5"),
        (0.0, 1.5, "probability", "1.5"),
        (0.0, math.nan, "probability", "nan"),
        (0.0, math.inf, "probability", "inf"),
        (0.0, 1e-50, "probability", "1e-50"),
        (math.nan, 0.5, "cost", "nan"),
        (math.inf, 0.5, "cost", "inf"),
        (-math.inf, 0.5, "cost", "-inf"),
        (1e39, 0.5, "cost", "1e+39"),
    ],
)
def test_cb_label_rejects_bad_values(
    cost: float, probability: float, field: str, shown: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(f"got {shown}")) as info:
        vwformat.cb_label(cost, probability)
    assert info.value.field == field


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e39, -3.5e38])
def test_non_finite_or_too_large_numbers_are_refused(value: float) -> None:
    with pytest.raises(InvalidInput, match=re.escape(repr(value))) as info:
        vwformat.shared_line({"user": {"x": value}})
    assert info.value.field == "user.x"
    with pytest.raises(InvalidInput):
        vwformat.format_number(value)


def test_multiline_labels_only_the_chosen_action() -> None:
    lines = vwformat.multiline({}, [{}, {"i": {"k": "v"}}, {}], chosen=1, cost=2.0, probability=1.0)
    assert lines == ["shared |c", "|a", "0:2:1 |ai k=v", "|a"]
    assert vwformat.multiline({}, [{}])[1] == "|a"


@pytest.mark.parametrize(("actions", "chosen"), [([], None), ([{}], 1), ([{}], -1)])
def test_multiline_rejects_bad_choices(actions: list[Features], chosen: int | None) -> None:
    with pytest.raises(InvalidInput):
        vwformat.multiline({}, actions, chosen)


@pytest.mark.parametrize(
    ("body", "label"),
    [("a", None), ("|a\n|a", None), ("|a\x00", None), ("|a", "0:1:1 |a"), ("|a", "0:1:1\n")],
)
def test_labeled_refuses_lines_that_would_break(body: str, label: str | None) -> None:
    with pytest.raises(InvalidInput):
        vwformat.labeled(body, label)


@pytest.mark.parametrize("prefix", ["", "ca", " ", "|", "é"])
def test_namespace_prefix_must_be_one_letter(prefix: str) -> None:
    with pytest.raises(InvalidInput):
        vwformat.namespace_block(prefix, {"x": {"y": 1.0}})


# --- learning uses the escaped features --------------------------------------------------


def test_learning_distinguishes_escaped_features() -> None:
    # Unescaped, `kind=x|y` would read as `kind=x` plus an empty namespace `y`: the same
    # features as the first action, which wins ties, so the best action is put last.
    kinds = ["x", "y", "x y", "x|y"]
    best = kinds.index("x|y")
    shared: Features = {"user": {"seg": "runner", "age": 31.0}}
    actions: list[Features] = [{"item": {"kind": k}} for k in kinds]
    rng = np.random.default_rng(7)
    with vowpalwabbit.Workspace("--cb_explore_adf --quiet -q ca --random_seed 7") as ws:
        for _ in range(300):
            chosen = int(rng.integers(len(kinds)))
            cost = 0.0 if chosen == best else 1.0
            ws.learn(vwformat.multiline(shared, actions, chosen, cost, 1 / len(kinds)))
        pmf = np.asarray(ws.predict(vwformat.multiline(shared, actions)), dtype=np.float64)
    assert pmf.shape == (len(kinds),)
    assert int(pmf.argmax()) == best, pmf
    assert pmf[best] > 0.8, pmf
