"""Context flattening: shapes, limits and errors that name the field."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput, LimitExceeded
from engine.features import flatten, merge
from engine.limits import Limits

L = Limits(max_depth=3, max_features=10, max_abs_number=1e6, max_string_chars=20)


def test_shapes_flatten_into_namespaces() -> None:
    got = flatten(
        {
            "device": "mobile",
            "visits": 3,
            "vip": True,
            "gone": None,
            "user": {"segment": "runner", "geo": {"country": "DE"}, "tags": ["a", "b"]},
        },
        L,
    )
    assert got == {
        "context": {"device": "mobile", "visits": 3.0, "vip": 1.0},
        "user": {"segment": "runner", "geo.country": "DE", "tags=a": 1.0, "tags=b": 1.0},
    }


@pytest.mark.parametrize(
    ("context", "field", "error"),
    [
        ([1], "context", InvalidInput),
        ({"x": float("inf")}, "context.x", InvalidInput),
        ({"x": 1e7}, "context.x", LimitExceeded),
        ({"x": "y" * 21}, "context.x", LimitExceeded),
        ({"u": {"a": {"b": {"c": 1}}}}, "context.u.a.b", LimitExceeded),
        ({"x": [1]}, "context.x[0]", InvalidInput),
        ({"": 1}, "context.", InvalidInput),
        ({"x": {"y": object()}}, "context.x.y", InvalidInput),
        ({f"k{i}": i for i in range(11)}, "context", LimitExceeded),
    ],
)
def test_bad_context_is_refused_naming_the_field(context: object, field: str, error: type) -> None:
    with pytest.raises(error) as info:
        flatten(context, L)
    assert info.value.field == field


def test_merge_prefers_later_parts() -> None:
    assert merge({"u": {"a": 1.0}}, {"u": {"a": 2.0, "b": "x"}}) == {"u": {"a": 2.0, "b": "x"}}
