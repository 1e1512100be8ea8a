"""Constraints: strict parsing with field paths; `apply` agrees with a plain reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.serving.mirror import Mirror, StockView
from engine.actions import Action
from engine.adjust import adjust
from engine.constraints import apply, fallback, fallback_reason
from engine.constraintspec import parse_constraints
from engine.errors import InvalidInput
from engine.features import Features
from engine.limits import Limits
from engine.records import decode_stock, encode_stock

IDS = ["hero-a", "hero-b", "offer-c"]
LIMITS = Limits()


def parse(body: object) -> Any:
    return parse_constraints(body, IDS, LIMITS)


INVALID: list[tuple[object, str, str]] = [
    ([], "constraints", "must be an object"),
    ({"colour": 1}, "constraints.colour", "not a known field"),
    ({"rules": {}}, "constraints.rules", "must be an array"),
    ({"rules": [{"exclude": "true"}]}, "constraints.rules[0].name", "must be 1-64"),
    (
        {"rules": [{"name": "a", "exclude": "true"}, {"name": "a", "exclude": "true"}]},
        "constraints.rules[1].name",
        "appears twice",
    ),
    ({"rules": [{"name": "a"}]}, "constraints.rules[0].exclude", "exactly one of"),
    (
        {"rules": [{"name": "a", "exclude": "true", "require": "true"}]},
        "constraints.rules[0].exclude",
        "exactly one of",
    ),
    (
        {"rules": [{"name": "a", "exclude": "action.id =="}]},
        "constraints.rules[0].exclude",
        "at column 13: expected a value after '=='",
    ),
    (
        {"rules": [{"name": "a", "when": "action.id == 'x'", "exclude": "true"}]},
        "constraints.rules[0].when",
        "may read only context",
    ),
    (
        {"rules": [{"name": "n", "when": 3, "exclude": "true"}]},
        "constraints.rules[0].when",
        "must be a string",
    ),
    (
        {"schedules": {"nope": {"start": "2026-01-01T00:00Z"}}},
        "constraints.schedules.nope",
        "not an action",
    ),
    ({"schedules": {"hero-a": {}}}, "constraints.schedules.hero-a", "needs 'start', 'end'"),
    (
        {"schedules": {"hero-a": {"start": "2026-12-01T00:00:00"}}},
        "constraints.schedules.hero-a.start",
        "has no UTC offset",
    ),
    (
        {"schedules": {"hero-a": {"start": "yesterday", "timezone": "UTC"}}},
        "constraints.schedules.hero-a.start",
        "not an ISO-8601 time",
    ),
    (
        {"schedules": {"hero-a": {"start": "2026-01-01T00:00Z", "timezone": "Mars/Base"}}},
        "constraints.schedules.hero-a.timezone",
        "not a known time zone",
    ),
    (
        {"schedules": {"hero-a": {"start": "2026-01-02T00:00Z", "end": "2026-01-01T00:00Z"}}},
        "constraints.schedules.hero-a.end",
        "must be after",
    ),
    (
        {"schedules": {"hero-a": {"start": "2026-03-29T02:30", "timezone": "Europe/Berlin"}}},
        "constraints.schedules.hero-a.start",
        "daylight-saving gap",
    ),
    ({"inventory": {}}, "constraints.inventory.sku_field", "must name a metadata key"),
    (
        {"inventory": {"sku_field": "sku", "unknown": "maybe"}},
        "constraints.inventory.unknown",
        "in_stock, out_of_stock",
    ),
    (
        {"inventory": {"sku_field": "sku", "threshold": "0"}},
        "constraints.inventory.threshold",
        "must be a number",
    ),
    (
        {"frequency_caps": [{"name": "c", "actions": ["hero-a"], "limit": 0, "window_seconds": 1}]},
        "constraints.frequency_caps[0].limit",
        "whole number",
    ),
    (
        {"frequency_caps": [{"name": "c", "actions": ["hero-a"], "limit": 1, "window_seconds": 0}]},
        "constraints.frequency_caps[0].window_seconds",
        "must be in (0",
    ),
    (
        {"frequency_caps": [{"name": "c", "actions": ["zz"], "limit": 1, "window_seconds": 1}]},
        "constraints.frequency_caps[0].actions[0]",
        "not an action",
    ),
    (
        {"frequency_caps": [{"name": "c", "limit": 1, "window_seconds": 1}]},
        "constraints.frequency_caps[0]",
        "exactly one of 'actions' or 'group'",
    ),
    (
        {"frequency_caps": [{"name": "c", "actions": [], "limit": 1, "window_seconds": 1}]},
        "constraints.frequency_caps[0].actions",
        "at least one",
    ),
    ({"pinned": "zz"}, "constraints.pinned", "not an action"),
    ({"pinned": 3}, "constraints.pinned", "action id or null"),
    ({"boost": {"hero-a": 0}}, "constraints.boost.hero-a", "factor in (0"),
    ({"boost": {"hero-a": float("inf")}}, "constraints.boost.hero-a", "finite"),
    ({"boost": {"zz": 2}}, "constraints.boost.zz", "not an action"),
    ({"exploration_floor": 1.5}, "constraints.exploration_floor", "in [0, 1]"),
    ({"exploration_floor": True}, "constraints.exploration_floor", "must be a number"),
    ({"fallback": {"action": "zz"}}, "constraints.fallback.action", "not an action"),
    ({"fallback": {"empty": False}}, "constraints.fallback", '"empty": true'),
    ({"fallback": {"action": "hero-a", "empty": True}}, "constraints.fallback", "not both"),
    (
        {"diversity": {"max_per": {"category": 0}}},
        "constraints.diversity.max_per.category",
        "[1, 20]",
    ),
    ({"diversity": {"per": {}}}, "constraints.diversity.per", "not a known field"),
]


@pytest.mark.parametrize(("body", "field", "fragment"), INVALID)
def test_invalid_specs_name_their_field(body: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(body)
    assert info.value.field == field, info.value.detail
    assert fragment in info.value.detail, info.value.detail


def test_full_example_parses() -> None:
    c = parse(
        {
            "rules": [
                {
                    "name": "night",
                    "when": "context.hour >= 22",
                    "exclude": "action.tags contains 'kids'",
                }
            ],
            "schedules": {
                "hero-a": {"start": "2026-12-01T00:00:00+01:00", "end": "2026-12-27T00:00:00+01:00"}
            },
            "inventory": {"sku_field": "sku", "threshold": 0, "unknown": "out_of_stock"},
            "frequency_caps": [
                {
                    "name": "h3",
                    "actions": ["hero-a", "hero-b"],
                    "limit": 3,
                    "window_seconds": 86400,
                },
                {"name": "brand", "group": "brand", "limit": 1, "window_seconds": 3600},
            ],
            "pinned": None,
            "boost": {"hero-b": 2.0},
            "exploration_floor": 0.05,
            "fallback": {"action": "offer-c"},
            "diversity": {"max_per": {"category": 2}},
        }
    )
    assert c.rules[0].name == "night" and c.rules[0].exclude and c.rules[0].static
    assert c.schedules["hero-a"].start == datetime(2026, 11, 30, 23, tzinfo=UTC).timestamp()
    assert c.inventory.unknown == "out_of_stock" and c.caps[1].group == "brand"
    assert c.boost == {"hero-b": 2.0} and c.exploration_floor == 0.05
    assert c.diversity == {"category": 2} and c.to_json()["pinned"] is None
    assert parse(None) == parse({})


# --- time zones ---------------------------------------------------------------------------


def window(spec: dict[str, str]) -> tuple[float | None, float | None]:
    w = parse({"schedules": {"hero-a": spec}}).schedules["hero-a"]
    return w.start, w.end


def test_same_instant_in_different_zones() -> None:
    expected = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()
    for text, zone in [
        ("2026-12-01T08:00:00Z", None),
        ("2026-12-01T09:00:00+01:00", None),
        ("2026-12-01T03:00:00-05:00", None),
        ("2026-12-01T09:00:00", "Europe/Berlin"),
        ("2026-12-01T17:00:00", "Asia/Tokyo"),
        ("2026-12-01T03:00:00", "America/New_York"),
        ("2026-12-01T09:00:00+01:00", "Asia/Tokyo"),  # an explicit offset wins over the zone
    ]:
        spec = {"start": text} | ({"timezone": zone} if zone else {})
        assert window(spec)[0] == expected, (text, zone)


def test_berlin_dst_boundaries() -> None:
    # Spring forward 2026-03-29 02:00 CET -> 03:00 CEST: a day of 23 hours.
    start, end = window(
        {"start": "2026-03-29T00:00", "end": "2026-03-30T00:00", "timezone": "Europe/Berlin"}
    )
    assert start is not None and end is not None and end - start == 23 * 3600
    assert (
        window({"start": "2026-03-29T03:00", "timezone": "Europe/Berlin"})[0]
        == datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()
    )
    # Fall back 2026-10-25 03:00 CEST -> 02:00 CET: 25 hours; 02:30 happens twice (first kept).
    start, end = window(
        {"start": "2026-10-25T00:00", "end": "2026-10-26T00:00", "timezone": "Europe/Berlin"}
    )
    assert start is not None and end is not None and end - start == 25 * 3600
    assert (
        window({"start": "2026-10-25T02:30", "timezone": "Europe/Berlin"})[0]
        == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    )


def test_schedule_window_is_half_open() -> None:
    c = parse({"schedules": {"hero-a": {"start": "2026-01-01T00:00Z", "end": "2026-01-02T00:00Z"}}})
    a = Action(id="hero-a", features={})
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for now, shown in [
        (start - 1, False),
        (start, True),
        (start + 86399, True),
        (start + 86400, False),
    ]:
        result = apply(c, [a], {}, now, None, {})
        assert (result.actions == [a]) is shown
        assert result.removed == ({} if shown else {"schedule": ["hero-a"]})


# --- apply against a reference ------------------------------------------------------------

WHENS: dict[str, Callable[[Features], bool]] = {
    "context.hour >= 12": lambda c: _num(c.get("context", {}).get("hour"), lambda h: h >= 12),
    "context.user.segment == 'vip'": lambda c: c.get("user", {}).get("segment") == "vip",
}
TESTS: dict[str, Callable[[Features, Action], bool]] = {
    "action.tags contains 'kids'": lambda c, a: "kids" in _list(a.metadata.get("tags")),
    "action.price < 50": lambda c, a: _num(
        a.features.get("context", {}).get("price"), lambda p: p < 50
    ),
    "action.metadata.brand == 'x'": lambda c, a: a.metadata.get("brand") == "x",
    "action.price > context.budget": lambda c, a: _num(
        a.features.get("context", {}).get("price"),
        lambda p: _num(c.get("context", {}).get("budget"), lambda b: p > b),
    ),
    "context.user.segment == 'vip'": lambda c, a: c.get("user", {}).get("segment") == "vip",
    "context.hour < 6 or action.id == 'a1'": lambda c, a: (
        a.id == "a1" or _num(c.get("context", {}).get("hour"), lambda h: h < 6)
    ),
}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _num(value: object, check: Callable[[float], bool]) -> bool:
    return isinstance(value, float) and check(value)


@dataclass
class Case:
    actions: list[Action]
    body: dict[str, Any]
    rules: list[tuple[str, str | None, str, bool]]  # name, when, test, exclude
    windows: dict[str, tuple[float | None, float | None]]
    caps: list[tuple[str, list[str] | None, str | None, int, float]]
    inventory: tuple[str, float, str] | None
    context: Features
    now: float
    exposures: dict[str, list[float]] | None
    stock: dict[str, float]


def iso(t: float, hours: int) -> str:
    """The instant `t` written with an offset of `hours` (the same instant, another zone)."""
    return datetime.fromtimestamp(t, timezone(timedelta(hours=hours))).isoformat()


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 10))
    actions = []
    for i in range(n):
        price = draw(st.one_of(st.none(), st.floats(0, 100)))
        metadata: dict[str, object] = {
            "tags": draw(st.lists(st.sampled_from(["kids", "sale"]), max_size=2))
        }
        for key, options in (("brand", ["x", "y"]), ("sku", ["s0", "s1", "s2", 7])):
            value = draw(st.one_of(st.none(), st.sampled_from(options)))
            if value is not None:
                metadata[key] = value
        features: Features = {"context": {"price": price}} if price is not None else {}
        actions.append(Action(id=f"a{i}", features=features, metadata=metadata))
    ids = [a.id for a in actions]
    now = 1_800_000_000.0
    rules = [
        (
            f"r{i}",
            draw(st.one_of(st.none(), st.sampled_from(sorted(WHENS)))),
            draw(st.sampled_from(sorted(TESTS))),
            draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 4)))
    ]
    windows: dict[str, tuple[float | None, float | None]] = {}
    for action_id in draw(st.lists(st.sampled_from(ids), unique=True, max_size=n)):
        start = draw(st.one_of(st.none(), st.integers(-3, 3).map(lambda d: now + d * 3600.0)))
        end = draw(st.one_of(st.none(), st.integers(-3, 3).map(lambda d: now + d * 3600.0 + 1800)))
        if (start is None and end is None) or (
            start is not None and end is not None and end <= start
        ):
            continue
        windows[action_id] = (start, end)
    caps = []
    for i in range(draw(st.integers(0, 3))):
        group = draw(st.one_of(st.none(), st.just("brand")))
        members = None if group else draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
        caps.append(
            (
                f"c{i}",
                members,
                group,
                draw(st.integers(1, 3)),
                draw(st.sampled_from([60.0, 3600.0])),
            )
        )
    inventory = draw(
        st.one_of(
            st.none(),
            st.tuples(
                st.just("sku"),
                st.sampled_from([0.0, 2.0]),
                st.sampled_from(["in_stock", "out_of_stock"]),
            ),
        )
    )
    exposures = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(ids),
                st.lists(
                    st.one_of(
                        st.floats(now - 7200, now + 10),
                        st.sampled_from([now - 60, now - 3600, now - 59.5, now - 3599.5, now]),
                    ),
                    max_size=4,
                ),
                max_size=n,
            ),
        )
    )
    stock = draw(
        st.dictionaries(st.sampled_from(["s0", "s1", "s2", "7"]), st.sampled_from([0.0, 1.0, 5.0]))
    )
    context: Features = {}
    sources: list[tuple[str, str, st.SearchStrategy[float | str]]] = [
        ("context", "hour", st.floats(0, 23)),
        ("context", "budget", st.floats(0, 100)),
        ("user", "segment", st.sampled_from(["vip", "new"])),
    ]
    for ns, name, strategy in sources:
        feature: float | str | None = draw(st.one_of(st.none(), strategy))
        if feature is not None:
            context.setdefault(ns, {})[name] = feature
    body: dict[str, Any] = {
        "rules": [
            {"name": name, ("exclude" if exclude else "require"): test}
            | ({"when": when} if when else {})
            for name, when, test, exclude in rules
        ],
        "schedules": {
            aid: {
                k: iso(v, draw(st.integers(-8, 9)))
                for k, v in (("start", s), ("end", e))
                if v is not None
            }
            for aid, (s, e) in windows.items()
        },
        "frequency_caps": [
            {"name": name, "limit": limit, "window_seconds": win}
            | ({"group": group} if group else {"actions": members})
            for name, members, group, limit, win in caps
        ],
    }
    if inventory:
        body["inventory"] = {
            "sku_field": inventory[0],
            "threshold": inventory[1],
            "unknown": inventory[2],
        }
    return Case(actions, body, rules, windows, caps, inventory, context, now, exposures, stock)


def reference_reason(case: Case, action: Action) -> str | None:
    """A deliberately plain re-statement of the documented semantics."""
    if action.id in case.windows:
        start, end = case.windows[action.id]
        if (start is not None and case.now < start) or (end is not None and case.now >= end):
            return "schedule"
    if case.inventory:
        sku = action.metadata.get("sku")
        if isinstance(sku, int):
            sku = str(sku)
        if isinstance(sku, str):
            level = case.stock.get(sku)
            ok = case.inventory[2] == "in_stock" if level is None else level > case.inventory[1]
            if not ok:
                return "inventory"
    for name, when, test, exclude in case.rules:
        if when is not None and not WHENS[when](case.context):
            continue
        if TESTS[test](case.context, action) == exclude:
            return f"rule:{name}"
    if case.exposures is not None:
        for name, members, group, limit, win in case.caps:

            def count(aid: str, win: float = win) -> int:
                return sum(1 for t in (case.exposures or {}).get(aid, []) if t > case.now - win)

            if group is None and members is not None:
                if action.id in members and sum(count(m) for m in members) >= limit:
                    return f"cap:{name}"
            else:
                value = action.metadata.get("brand")
                same = [
                    a.id
                    for a in case.actions
                    if value is not None and a.metadata.get("brand") == value
                ]
                if same and sum(count(m) for m in same) >= limit:
                    return f"cap:{name}"
    return None


@settings(max_examples=300, deadline=None)
@given(cases(), st.data())
def test_apply_matches_the_reference(case: Case, data: st.DataObject) -> None:
    constraints = parse_constraints(case.body, [a.id for a in case.actions], LIMITS)
    subset = data.draw(st.lists(st.sampled_from(case.actions), max_size=len(case.actions)))
    # the whole catalog (twice: the second run uses the per-list cache), then a request's
    # own candidates (any order, repeats allowed) with the catalog as the group-cap universe
    for offered in (case.actions, case.actions, subset):
        result = apply(
            constraints,
            offered,
            case.context,
            case.now,
            case.exposures,
            case.stock,
            catalog_actions=case.actions,
        )
        expected: dict[str, list[str]] = {}
        kept = []
        for action in offered:
            reason = reference_reason(case, action)
            if reason is None:
                kept.append(action)
            else:
                expected.setdefault(reason, []).append(action.id)
        assert [a.id for a in result.actions] == [a.id for a in kept]
        assert result.removed == expected
        assert list(result.removed) == list(expected)  # reasons in order of first removal


@pytest.mark.parametrize(("ago", "capped"), [(60.0, False), (59.5, True), (-5.0, True)])
def test_cap_window_counts_exposures_after_now_minus_window(ago: float, capped: bool) -> None:
    c = parse(
        {"frequency_caps": [{"name": "h", "actions": ["hero-a"], "limit": 1, "window_seconds": 60}]}
    )
    a = Action(id="hero-a", features={})
    result = apply(c, [a], {}, 1000.0, {"hero-a": [1000.0 - ago]}, {})
    assert result.removed == ({"cap:h": ["hero-a"]} if capped else {})


def test_a_stock_replica_change_reaches_the_next_decision() -> None:
    """Out-of-stock positions are kept per stock version: every level the replica applies
    (and a key it forgets) must reach the very next apply."""
    constraints = parse({"inventory": {"sku_field": "sku"}})
    actions = [Action(f"a{i}", {}, {"sku": f"S{i}"}) for i in range(3)]
    mirror = Mirror("stock", 1, decode_stock)
    stock = StockView(mirror)

    def shown() -> list[str]:
        return [a.id for a in apply(constraints, actions, {}, 0.0, None, stock).actions]

    assert shown() == ["a0", "a1", "a2"]  # unknown SKUs count as in stock
    mirror.apply(0, 0, b"S1", encode_stock(0.0, 1.0))
    assert shown() == ["a0", "a2"]
    mirror.apply(0, 1, b"S1", encode_stock(4.0, 2.0))
    mirror.apply(0, 2, b"S2", encode_stock(0.0, 2.0))
    assert shown() == ["a0", "a1"]
    mirror.discard(b"S2")
    assert shown() == ["a0", "a1", "a2"]


def test_group_cap_counts_members_the_request_did_not_offer() -> None:
    c = parse(
        {"frequency_caps": [{"name": "b", "group": "brand", "limit": 2, "window_seconds": 60}]}
    )
    a = Action(id="hero-a", features={}, metadata={"brand": "x"})
    b = Action(id="hero-b", features={}, metadata={"brand": "x"})
    exposures = {"hero-b": [99.0, 98.0]}
    assert apply(c, [a], {}, 100.0, exposures, {}).actions == [a]
    result = apply(c, [a], {}, 100.0, exposures, {}, catalog_actions=[a, b])
    assert result.actions == [] and result.removed == {"cap:b": ["hero-a"]}
    assert apply(c, [a], {}, 100.0, None, {}, catalog_actions=[a, b]).actions == [a]


# --- adjust and fallback --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.floats(0, 10), min_size=1, max_size=3),
    floor=st.floats(0, 1),
    boost=st.dictionaries(st.sampled_from(IDS), st.floats(0.01, 100)),
    pinned=st.one_of(st.none(), st.sampled_from(IDS)),
)
def test_adjust_gives_an_exact_pmf(
    weights: list[float], floor: float, boost: dict[str, float], pinned: str | None
) -> None:
    eligible = [Action(id=i, features={}) for i in IDS[: len(weights)]]
    c = parse({"exploration_floor": floor, "boost": boost, "pinned": pinned})
    pmf = adjust(np.array(weights), eligible, c)
    assert pmf.shape == (len(weights),) and abs(pmf.sum() - 1.0) < 1e-12
    if pinned in {a.id for a in eligible}:
        assert list(pmf) == [1.0 if a.id == pinned else 0.0 for a in eligible]
    else:
        assert pmf.min() >= floor / len(weights) - 1e-15
        if floor > 1e-300:  # below that, floor/K underflows to 0.0
            assert pmf.min() > 0


def test_boost_multiplies_before_renormalising() -> None:
    eligible = [Action(id=i, features={}) for i in IDS[:2]]
    pmf = adjust([0.5, 0.5], eligible, parse({"boost": {"hero-b": 3.0}}))
    assert pmf.tolist() == pytest.approx([0.25, 0.75])


def test_adjust_refuses_a_pmf_of_the_wrong_length() -> None:
    with pytest.raises(InvalidInput) as info:
        adjust([1.0], [Action(id="a", features={}), Action(id="b", features={})], parse({}))
    assert info.value.field == "pmf"


def test_fallback() -> None:
    actions = [Action(id=i, features={}) for i in IDS]
    assert fallback(parse({"fallback": {"action": "offer-c"}}), actions) == actions[2]
    empty = parse({"fallback": {"empty": True, "reason": "sold out"}})
    assert fallback(empty, actions) is None and fallback_reason(empty) == "sold out"
    assert fallback(parse({}), actions) is None
    assert fallback_reason(parse({})) == "no action is eligible"
