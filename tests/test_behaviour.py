"""Behaviour events at the edge: api.requests types the JSON (BehaviourEvent), then
api.events.observed and engine.behaviour check the values. Every rule refuses with the field
it names; good events get defaults.

Invalid inputs are a table of (event, field, message fragment), run with and without a
batch prefix (`events[3].`). A Hypothesis property feeds arbitrary JSON-like values: each
either parses into an event that keeps the rules or raises InvalidInput naming a field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import events, requests
from api.requests import BehaviourEvent, BehaviourRequest
from engine import behaviour
from engine.behaviour import (
    FUTURE_SLACK_SECONDS,
    MAX_AGE_SECONDS,
    MAX_QUANTITY,
    MAX_TEXT,
    TYPES,
    BehaviourObserved,
    Product,
)
from engine.errors import InvalidInput, LimitExceeded
from engine.limits import DEFAULT_LIMITS
from engine.validate import ID_RE

NOW = 1_700_000_123.25
PRODUCT = {"id": "sku-1", "category": "running", "brand": "acme", "price": 49.5}
PREFIXES = ["", "events[3]."]


def event(kind: str = "product_view", **fields: Any) -> dict[str, Any]:
    """A valid event of `kind` (product and query as its type needs), overridden by `fields`;
    a field given as None is left out."""
    out: dict[str, Any] = {"type": kind, "user_id": "u1"}
    if kind in behaviour.PRODUCT_TYPES:
        out["product"] = dict(PRODUCT)
    if kind == "search":
        out["query"] = "trail shoes"
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def product(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in {**PRODUCT, **fields}.items() if v is not None}


def parse(item: object, where: str = "") -> BehaviourObserved:
    return events.observed(
        requests.convert(item, BehaviourEvent, where), DEFAULT_LIMITS, where, NOW
    )


FIELDS = frozenset({"type", *BehaviourRequest.__struct_fields__})


# --- invalid input: (event, field without prefix, message fragment) ------------------------

INVALID: list[tuple[str, object, str, str]] = [
    # the event itself
    ("unknown field", event(colour="red"), "colour", "is not a known field"),
    ("type missing", event(type=None), "type", "must be one of page_view"),
    ("type unknown", event(type="click"), "type", "got 'click'"),
    ("type not a string", event(type=["page_view"]), "type", "must be one of"),
    ("type inventory", event(type="inventory"), "type", "must be one of"),
    # user_id
    ("user_id missing", event(user_id=None), "user_id", "user_id is required"),
    ("user_id empty", event(user_id=""), "user_id", "1-128 printable characters"),
    ("user_id too long", event(user_id="u" * 129), "user_id", "1-128 printable"),
    ("user_id control char", event(user_id="u\n1"), "user_id", "printable"),
    ("user_id a number", event(user_id=7), "user_id", "must be a string"),
    # session_id
    ("session_id empty", event(session_id=""), "session_id", "1-128 printable"),
    ("session_id NUL", event(session_id="s\x00"), "session_id", "printable"),
    ("session_id a number", event(session_id=3), "session_id", "must be a string"),
    # ts
    ("ts a string", event(ts="now"), "ts", "must be a number"),
    ("ts a boolean", event(ts=True), "ts", "must be a number"),
    ("ts NaN", event(ts=math.nan), "ts", "finite"),
    ("ts infinite", event(ts=math.inf), "ts", "finite"),
    ("ts too old", event(ts=NOW - MAX_AGE_SECONDS - 1), "ts", "within the last 7 days"),
    ("ts too far ahead", event(ts=NOW + FUTURE_SLACK_SECONDS + 1), "ts", "300 s ahead"),
    ("ts zero", event(ts=0), "ts", "within the last 7 days"),
    ("ts beyond limit", event(ts=1e13), "ts", "beyond the limit"),
    # product
    ("product not an object", event(product="sku-1"), "product", "must be an object"),
    ("product unknown field", event(product=product(size=9)), "product.size", "not a known"),
    ("product id missing", event(product=product(id=None)), "product.id", "id is required"),
    ("product id empty", event(product=product(id="")), "product.id", "1-128 printable"),
    ("product id number", event(product=product(id=5)), "product.id", "must be a string"),
    ("product id too long", event(product=product(id="p" * 129)), "product.id", "1-128"),
    ("category empty", event(product=product(category="")), "product.category", "1-256"),
    (
        "category too long",
        event(product=product(category="c" * (MAX_TEXT + 1))),
        "product.category",
        "1-256 characters",
    ),
    ("category number", event(product=product(category=1)), "product.category", "string"),
    ("brand empty", event(product=product(brand="")), "product.brand", "1-256 characters"),
    ("brand a list", event(product=product(brand=["a"])), "product.brand", "must be a string"),
    ("price negative", event(product=product(price=-0.01)), "product.price", "must be >= 0"),
    ("price a string", event(product=product(price="9")), "product.price", "must be a number"),
    ("price boolean", event(product=product(price=False)), "product.price", "must be a number"),
    ("price infinite", event(product=product(price=math.inf)), "product.price", "finite"),
    ("price beyond limit", event(product=product(price=2e12)), "product.price", "beyond"),
    # product required by type
    ("product_view no product", event(product=None), "product", "required for product_view"),
    (
        "add_to_cart no product",
        event("add_to_cart", product=None),
        "product",
        "required for add_to_cart",
    ),
    (
        "remove_from_cart no product",
        event("remove_from_cart", product=None),
        "product",
        "required for remove_from_cart",
    ),
    # query
    ("search no query", event("search", query=None), "query", "query is required for search"),
    ("query empty", event("search", query=""), "query", "1-256 characters"),
    ("query too long", event("search", query="q" * (MAX_TEXT + 1)), "query", "1-256"),
    ("query a number", event("search", query=42), "query", "must be a string"),
    # quantity
    ("quantity zero", event(quantity=0), "quantity", "must be in (0, 10000]"),
    ("quantity negative", event(quantity=-1), "quantity", "must be in (0, 10000]"),
    ("quantity too large", event(quantity=MAX_QUANTITY + 1), "quantity", "got 10001"),
    ("quantity a string", event(quantity="2"), "quantity", "must be a number"),
    ("quantity boolean", event(quantity=True), "quantity", "must be a number"),
    # revenue
    ("revenue on a view", event(revenue=10), "revenue", "only for purchase events"),
    ("revenue on a cart", event("add_to_cart", revenue=1), "revenue", "not add_to_cart"),
    ("revenue negative", event("purchase", revenue=-5), "revenue", "must be >= 0"),
    ("revenue a string", event("purchase", revenue="5"), "revenue", "must be a number"),
    ("revenue NaN", event("purchase", revenue=math.nan), "revenue", "finite"),
    # device and channel
    ("device empty", event(device=""), "device", "1-256 characters"),
    ("device a number", event(device=1), "device", "must be a string"),
    ("channel too long", event(channel="c" * (MAX_TEXT + 1)), "channel", "1-256"),
    ("channel an object", event(channel={"a": 1}), "channel", "must be a string"),
]


@pytest.mark.parametrize("where", PREFIXES)
@pytest.mark.parametrize(
    ("item", "field", "fragment"),
    [pytest.param(item, field, fragment, id=name) for name, item, field, fragment in INVALID],
)
def test_invalid_event_names_its_field(item: object, field: str, fragment: str, where: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(item, where)
    assert raised.value.field == f"{where}{field}"
    assert fragment in raised.value.detail
    assert raised.value.detail.startswith(f"{where}{field} ")


@pytest.mark.parametrize(
    ("where", "field"), [("", "body"), ("events[3].", "events[3]")], ids=["body", "batch"]
)
@pytest.mark.parametrize("item", [None, [], "page_view", 3], ids=repr)
def test_an_event_must_be_an_object(item: object, where: str, field: str) -> None:
    with pytest.raises(InvalidInput, match="must be an object") as raised:
        parse(item, where)
    assert raised.value.field == field


def test_numbers_beyond_the_limit_are_limit_exceeded() -> None:
    with pytest.raises(LimitExceeded) as raised:
        parse(event(product=product(price=1e13)), "events[0].")
    assert raised.value.field == "events[0].product.price"


def test_an_integer_too_large_for_a_float_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(event(ts=10**400))
    assert raised.value.field == "ts"


def test_an_empty_key_is_refused_with_a_non_empty_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse({**event(), "": 1})
    assert raised.value.field


# --- valid events ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_parses_with_defaults(kind: str) -> None:
    parsed = parse(event(kind))
    assert parsed.kind == kind
    assert parsed.user_id == "u1"
    assert parsed.ts == NOW
    assert parsed.quantity == 1.0
    assert parsed.revenue == 0.0
    assert parsed.session_id is None
    assert parsed.device is None and parsed.channel is None
    expected_product = Product(id="sku-1", category="running", brand="acme", price=49.5)
    assert parsed.product == (expected_product if kind in behaviour.PRODUCT_TYPES else None)
    assert parsed.query == ("trail shoes" if kind == "search" else None)


def test_every_field_is_carried() -> None:
    parsed = parse(
        event(
            "purchase",
            session_id="s1",
            ts=NOW - 60,
            product={"id": "p|1: x", "category": "a b", "brand": "é", "price": 0},
            quantity=2.5,
            revenue=99,
            device="mobile",
            channel="email",
        )
    )
    assert parsed == BehaviourObserved(
        kind="purchase",
        user_id="u1",
        session_id="s1",
        ts=NOW - 60,
        product=Product(id="p|1: x", category="a b", brand="é", price=0.0),
        quantity=2.5,
        revenue=99.0,
        device="mobile",
        channel="email",
    )
    assert isinstance(parsed.revenue, float) and isinstance(parsed.ts, float)


def test_a_product_needs_only_its_id() -> None:
    parsed = parse(event(product={"id": "p"}))
    assert parsed.product == Product(id="p")


@pytest.mark.parametrize(
    ("fields", "read", "expected"),
    [
        ({"ts": NOW - MAX_AGE_SECONDS}, lambda e: e.ts, NOW - MAX_AGE_SECONDS),
        ({"ts": NOW + FUTURE_SLACK_SECONDS}, lambda e: e.ts, NOW + FUTURE_SLACK_SECONDS),
        ({"quantity": MAX_QUANTITY}, lambda e: e.quantity, MAX_QUANTITY),
        ({"quantity": 1e-9}, lambda e: e.quantity, 1e-9),
        ({"product": product(price=0)}, lambda e: e.product.price, 0.0),
        ({"user_id": "u" * 128}, lambda e: e.user_id, "u" * 128),
        ({"session_id": "é|: " * 32}, lambda e: e.session_id, "é|: " * 32),
        ({"device": "d" * MAX_TEXT}, lambda e: e.device, "d" * MAX_TEXT),
    ],
    ids=["oldest ts", "newest ts", "max qty", "tiny qty", "free", "long user", "session", "text"],
)
def test_boundaries_are_accepted(
    fields: dict[str, Any], read: Callable[[BehaviourObserved], object], expected: object
) -> None:
    assert read(parse(event(**fields))) == expected


def test_purchase_revenue_zero_and_search_with_product() -> None:
    assert parse(event("purchase", revenue=0)).revenue == 0.0
    searched = parse(event("search", product={"id": "p"}))
    assert searched.query == "trail shoes" and searched.product == Product(id="p")


# --- anything JSON-like either parses or is refused with a field --------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(list(TYPES))
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELD_NAMES = [*sorted(FIELDS), "id", "price", "extra"]


TEXT = st.text(min_size=1, max_size=MAX_TEXT)
ID = st.from_regex(ID_RE, fullmatch=True)


def valid_event(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    good_product = st.fixed_dictionaries(
        {"id": ID},
        optional={"category": TEXT, "brand": TEXT, "price": st.floats(0, 1e12) | st.none()},
    )
    required: dict[str, st.SearchStrategy[Any]] = {"type": st.just(kind), "user_id": ID}
    if kind in behaviour.PRODUCT_TYPES:
        required["product"] = good_product
    if kind == "search":
        required["query"] = TEXT
    optional: dict[str, st.SearchStrategy[Any]] = {
        "session_id": ID | st.none(),
        "ts": st.floats(NOW - MAX_AGE_SECONDS, NOW + FUTURE_SLACK_SECONDS) | st.none(),
        "quantity": st.floats(0, MAX_QUANTITY, exclude_min=True) | st.integers(1, 10_000),
        "device": TEXT | st.none(),
        "channel": TEXT | st.none(),
    }
    if kind == "purchase":
        optional["revenue"] = st.floats(0, 1e12) | st.none()
    if kind not in behaviour.PRODUCT_TYPES:
        optional["product"] = good_product | st.none()
    return st.fixed_dictionaries(required, optional=optional)


VALID = st.sampled_from(TYPES).flatmap(valid_event)


def mutate(item: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """`item` with one field (`product.x` inside the product) set to `value`."""
    out = dict(item)
    if path.startswith("product.") and isinstance(out.get("product"), dict):
        out["product"] = {**out["product"], path.removeprefix("product."): value}
    else:
        out[path.removeprefix("product.")] = value
    return out


PRODUCT_PATHS = ("id", "category", "brand", "price", "extra")
MUTATED = st.builds(
    mutate,
    VALID,
    st.sampled_from([*sorted(FIELDS), "extra", *(f"product.{f}" for f in PRODUCT_PATHS)]),
    JSONISH,
)


@settings(max_examples=200, deadline=None)
@given(
    item=st.one_of(JSONISH, st.dictionaries(st.sampled_from(FIELD_NAMES), JSONISH), VALID, MUTATED),
    where=st.sampled_from(PREFIXES),
)
def test_anything_parses_or_is_refused_with_a_field(item: object, where: str) -> None:
    try:
        parsed = parse(item, where)
    except InvalidInput as exc:
        assert exc.field
        assert exc.field.startswith(where.rstrip(".")) or exc.field == "body"
        return
    assert parsed.kind in TYPES
    assert NOW - MAX_AGE_SECONDS <= parsed.ts <= NOW + FUTURE_SLACK_SECONDS
    assert 0 < parsed.quantity <= MAX_QUANTITY
    assert parsed.revenue >= 0 and (parsed.kind == "purchase" or parsed.revenue == 0)
    assert parsed.kind not in behaviour.PRODUCT_TYPES or parsed.product is not None
    assert parsed.kind != "search" or parsed.query is not None
    assert parsed.product is None or parsed.product.price is None or parsed.product.price >= 0


@settings(max_examples=100, deadline=None)
@given(item=VALID)
def test_valid_events_parse_and_keep_their_values(item: dict[str, Any]) -> None:
    parsed = parse(item)
    assert (parsed.kind, parsed.user_id) == (item["type"], item["user_id"])
    assert parsed.ts == (NOW if item.get("ts") is None else item["ts"])
    assert parsed.quantity == item.get("quantity", 1.0)
    assert parsed.revenue == (item.get("revenue") or 0.0)
    raw_product = item.get("product")
    if raw_product is None:
        assert parsed.product is None
    else:
        assert parsed.product == Product(**raw_product)
