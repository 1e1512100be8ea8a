"""The simulated storefronts: known click models, seeded visitors, and the result views."""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
from collections import Counter
from dataclasses import replace

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import events, requests
from api.requests import BehaviourEvent
from engine.catalog import parse_catalog
from engine.constraints import apply
from engine.errors import InvalidInput
from engine.limits import Limits
from sim import answers
from sim.answers import FRESH, NO_SESSION, STALE
from sim.config import SimConfig
from sim.environments import (
    ENVIRONMENT_NAMES,
    environment,
    intent_env,
    segments50_env,
    segments_env,
)
from sim.plots import plot
from sim.report import summary
from sim.results import SimResult, _removals_by_window, _served_best_late, _windows
from sim.server import put_catalog
from sim.shop import Shop
from sim.shoppers import Shoppers, shopper_ids
from sim.simulate import _shoppers
from sim.storefront import (
    CAP_NAME,
    DEVICES,
    MAX_CAP,
    PAGES,
    SKU_FIELD,
    Action,
    Browsing,
    Environment,
    Segment,
    Visitor,
)
from sim.tally import NOT_SHOWN, Outcome, Tally

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DRAWS = 20_000
# chi-square critical values at p = 0.001 for 1..6 degrees of freedom
CHI2_CRITICAL = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}


SEGMENT_ENVS = ("segments", "segments50")  # the segment is in the context


@pytest.fixture(params=SEGMENT_ENVS)
def env(request: pytest.FixtureRequest) -> Environment:
    return environment(request.param, seed=0)


def test_registry_names_are_the_documented_ones() -> None:
    assert set(ENVIRONMENT_NAMES) == {"segments", "segments50", "intent"}
    assert [n for n in ENVIRONMENT_NAMES if environment(n).browsing is None] == list(SEGMENT_ENVS)


def test_ctr_matrix_is_strictly_inside_zero_one(env: Environment) -> None:
    matrix = env.matrix()
    assert matrix.shape == (len(env.segments), len(env.actions))
    assert np.all(matrix > 0.0)
    assert np.all(matrix < 1.0)


def test_best_action_is_the_argmax_of_each_segment_row(env: Environment) -> None:
    matrix = env.matrix()
    for i, segment in enumerate(env.segment_names):
        assert env.best_action(segment) == env.action_ids[int(np.argmax(matrix[i]))]


def test_best_ctr_beats_uniform_and_matches_the_weighted_rows(env: Environment) -> None:
    weights, matrix = env.weights(), env.matrix()
    assert env.best_ctr() == pytest.approx(float(weights @ matrix.max(axis=1)))
    assert env.uniform_ctr() == pytest.approx(float(weights @ matrix.mean(axis=1)))
    assert env.best_ctr() > env.uniform_ctr()


def test_segments_env_has_a_distinct_favourite_per_segment() -> None:
    env = segments_env()
    favourites = [env.best_action(s) for s in env.segment_names]
    assert len(env.segments) == 4
    assert len(set(favourites)) == 4
    matrix = env.matrix()
    assert np.all((matrix.max(axis=1) >= 0.25) & (matrix.max(axis=1) <= 0.30))
    others = np.sort(matrix, axis=1)[:, :-1]
    assert np.all((others >= 0.03) & (others <= 0.08))


def test_segments50_is_sparse_with_one_good_action_per_segment() -> None:
    env = segments50_env()
    matrix = env.matrix()
    assert matrix.shape == (5, 50)
    assert len({env.best_action(s) for s in env.segment_names}) == 5
    assert np.all((matrix.max(axis=1) >= 0.045) & (matrix.max(axis=1) <= 0.055))
    assert np.all(np.sort(matrix, axis=1)[:, :-1] <= 0.015)


@pytest.mark.parametrize("n_actions", [4, 6, 10])
def test_segments_env_extra_actions_are_never_a_favourite(n_actions: int) -> None:
    env = segments_env(n_actions=n_actions)
    assert len(env.actions) == n_actions
    assert [env.best_action(s) for s in env.segment_names] == list(env.action_ids[:4])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), name=st.sampled_from(ENVIRONMENT_NAMES))
def test_every_seed_gives_a_valid_environment(seed: int, name: str) -> None:
    env = environment(name, seed=seed)
    matrix = env.matrix()
    assert np.all((matrix > 0) & (matrix < 1))
    assert env.best_ctr() > env.uniform_ctr()


def test_same_seed_same_environment_other_seed_other_numbers() -> None:
    assert environment("segments", seed=3) == environment("segments", seed=3)
    assert environment("segments", seed=3).ctr != environment("segments", seed=4).ctr


def test_visitor_is_deterministic_for_a_seeded_rng(env: Environment) -> None:
    first = [env.visitor(np.random.default_rng(7)) for _ in range(3)]
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    assert [env.visitor(rng_a) for _ in range(50)] == [env.visitor(rng_b) for _ in range(50)]
    assert first[0] == first[1] == first[2]


def test_visitor_context_is_json_and_names_its_segment(env: Environment) -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        visitor = env.visitor(rng)
        context = json.loads(json.dumps(visitor.context))
        assert context["user"]["segment"] == visitor.segment
        assert visitor.segment in env.segment_names
        assert visitor.user_id


def test_segment_frequencies_follow_the_weights(env: Environment) -> None:
    rng = np.random.default_rng(2024)
    counts = Counter(env.visitor(rng).segment for _ in range(DRAWS))
    observed = np.array([counts[s] for s in env.segment_names], dtype=np.float64)
    expected = env.weights() * DRAWS
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert chi2 < CHI2_CRITICAL[len(env.segments) - 1], (observed, expected)


def test_noise_features_vary_but_do_not_change_clicks(env: Environment) -> None:
    rng = np.random.default_rng(5)
    visitors = [env.visitor(rng) for _ in range(500)]
    devices = {v.context["user"]["device"] for v in visitors}  # type: ignore[index]
    pages = {v.context["page"] for v in visitors}
    assert len(devices) > 1 and len(pages) > 1
    segment = env.segment_names[0]
    for v in visitors:
        twin = Visitor(segment, v.user_id, v.context)
        probe = Visitor(segment, "probe", env.segment_context(segment))
        for action in env.action_ids[:5]:
            assert env.click_probability(twin, action) == env.click_probability(probe, action)


def test_segment_context_is_representative(env: Environment) -> None:
    for segment in env.segment_names:
        context = env.segment_context(segment)
        assert context["user"] == {"segment": segment, "device": "mobile"}
        assert json.loads(json.dumps(context)) == context


def test_click_probability_reads_the_matrix(env: Environment) -> None:
    matrix = env.matrix()
    for i, segment in enumerate(env.segment_names):
        visitor = Visitor(segment, "u1", env.segment_context(segment))
        for j, action in enumerate(env.action_ids):
            assert env.click_probability(visitor, action) == matrix[i, j]


def test_catalog_body_has_every_action_once_and_the_learning_block(env: Environment) -> None:
    body = json.loads(json.dumps(env.catalog_body("sim")))
    ids = [a["id"] for a in body["actions"]]
    assert len(ids) == len(env.actions) == len(set(ids))
    assert all(a["features"]["banner"]["theme"] for a in body["actions"])
    learning = body["learning"]
    assert learning["exploration"] == {"algorithm": "squarecb"}
    assert learning["interactions"] == ["ca", "ci"]
    assert learning["reward_wait_seconds"] > 0
    assert learning["default_reward"] == 0.0
    assert learning["aggregation"] == "earliest"


def test_unknown_environment_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        environment("nope")
    assert "nope" in str(info.value)
    assert all(name in str(info.value) for name in ENVIRONMENT_NAMES)
    assert info.value.field == "env"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda env: env.best_action("martian"), "unknown segment 'martian'"),
        (lambda env: env.segment_context("martian"), "unknown segment 'martian'"),
        (
            lambda env: env.click_probability(Visitor("runner", "u", {}), "hero-nope"),
            "unknown action 'hero-nope'",
        ),
        (lambda env: env.catalog_body(""), "catalog name must be a non-empty"),
    ],
)
def test_lookups_of_unknown_names_raise_invalid_input(call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(segments_env())  # type: ignore[operator]


A = (Action("a", "running", 0.1), Action("b", "yoga", 0.1))
S = (Segment("x", 0.5), Segment("y", 0.5))
OK = ((0.1, 0.2), (0.3, 0.1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actions": ()}, "at least one action id"),
        ({"actions": (A[0], A[0])}, "action id 'a' appears more than once"),
        ({"segments": (Segment("x", 0.5), Segment("x", 0.5))}, "segment name 'x' appears"),
        ({"segments": (Segment("x", 0.5), Segment("y", 0.4))}, "weights must sum to 1, got 0.9"),
        ({"ctr": ((0.1, 0.2),)}, "ctr must have 2 rows"),
        ({"ctr": ((0.1, 0.2), (0.3,))}, r"row lengths \[2, 1\]"),
        ({"ctr": ((0.1, 0.0), (0.3, 0.1))}, r"ctr\[0\]\[1\] must be a probability in \(0, 1\)"),
        ({"ctr": ((0.1, 0.2), (1.0, 0.1))}, r"ctr\[1\]\[0\] .* got 1.0"),
        ({"ctr": ((0.1, float("nan")), (0.3, 0.1))}, r"ctr\[0\]\[1\] .* got nan"),
        ({"reward_wait_seconds": 0.0}, "reward_wait_seconds must be a finite number > 0"),
    ],
)
def test_environment_rejects_broken_values(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "t", "actions": A, "segments": S, "ctr": OK, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        Environment(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Action("", "running", 0.1), "action id must be a non-empty string"),
        (lambda: Action("a", "running", 1.0), "discount must be in \\[0, 1\\), got 1.0"),
        (lambda: Segment("x", 0.0), "weight must be a finite number > 0, got 0.0"),
        (lambda: segments_env(n_actions=3), "n_actions must be between 4 and 10"),
        (lambda: segments_env(seed=-1), "seed must be an integer >= 0, got -1"),
        (lambda: SimConfig(base_url="localhost:8000"), "base_url must start with http"),
        (lambda: SimConfig(base_url="http://x", env="moon"), "env must be one of segments"),
        (lambda: SimConfig(base_url="http://x", decisions=0), "decisions must be an integer >= 1"),
        (lambda: SimConfig(base_url="http://x", concurrency=0), "concurrency must be"),
        (lambda: SimConfig(base_url="http://x", api_key=""), "api_key must be None"),
    ],
)
def test_values_are_validated_with_clear_messages(build: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build()  # type: ignore[operator]


def _result() -> SimResult:
    return SimResult(
        ctr_by_window=[(200, 0.105), (400, 0.162), (600, 0.231), (650, 0.246)],
        overall_ctr=0.1717,
        best_ctr=0.2788,
        uniform_ctr=0.1080,
        best_action_probability={"runner": 0.91, "yogi": 0.85, "hiker": 0.88, "sale": 0.7},
        decisions=650,
        clicks=112,
        elapsed_s=3.2,
        decide_latency_ms_p50=1.4,
        decide_latency_ms_p99=6.8,
        n_actions=4,
    )


def test_plot_writes_a_png(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out" / "sim.png"
    written = plot(_result(), target, "segments: Loopwise vs oracle")
    assert written == target
    data = target.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000


def test_plot_copes_with_an_empty_result(tmp_path: pathlib.Path) -> None:
    empty = SimResult([], 0.0, 0.0, 0.0, {}, 0, 0, 0.0, 0.0, 0.0, 0)
    assert plot(empty, tmp_path / "empty.png", "empty").read_bytes().startswith(PNG_MAGIC)


def test_summary_mentions_the_ctr_numbers() -> None:
    text = summary(_result())
    for number in ("0.172", "0.279", "0.108", "0.246", "650", "112"):
        assert number in text
    assert "runner 0.91" in text
    assert "1/K = 0.250" in text
    assert len(text.splitlines()) >= 3


# --- under constraints: stock and frequency caps -------------------------------------------


def _parsed(env: Environment, **options: object):  # type: ignore[no-untyped-def]
    body = json.loads(json.dumps(env.catalog_body("sim", **options)))  # type: ignore[arg-type]
    return body, parse_catalog("sim", body, Limits(), version=1, now=0.0)


def test_catalog_body_without_options_has_no_constraints(env: Environment) -> None:
    body, catalog = _parsed(env)
    assert "constraints" not in body
    assert all(set(a["metadata"]) == {"title", "simulation", "catalog"} for a in body["actions"])
    assert catalog.constraints.inventory is None and catalog.constraints.caps == ()


def test_catalog_body_with_stock_and_cap_is_a_valid_catalog(env: Environment) -> None:
    body, catalog = _parsed(env, inventory=True, cap=3)
    assert set(body["constraints"]) == {"inventory", "frequency_caps"}
    inventory = catalog.constraints.inventory
    assert inventory is not None and inventory.sku_field == SKU_FIELD
    assert inventory.threshold == 0.0 and inventory.unknown == "in_stock"
    skus = [inventory.sku(a) for a in catalog.actions]
    assert skus == [env.sku("sim", a) for a in env.action_ids]
    assert len(set(skus)) == len(skus)
    (cap,) = catalog.constraints.caps
    assert (cap.name, cap.limit, cap.window_seconds) == (CAP_NAME, 3, 3600.0)


@pytest.mark.parametrize(("inventory", "cap"), [(True, None), (False, 2)])
def test_catalog_body_with_one_option_has_only_its_constraint(
    inventory: bool, cap: int | None
) -> None:
    body, catalog = _parsed(segments_env(), inventory=inventory, cap=cap)
    assert set(body["constraints"]) == ({"inventory"} if inventory else {"frequency_caps"})
    assert (catalog.constraints.inventory is not None) is inventory
    assert len(catalog.constraints.caps) == (cap is not None)
    has_sku = [SKU_FIELD in a["metadata"] for a in body["actions"]]
    assert all(has_sku) if inventory else not any(has_sku)


def test_the_constraints_remove_sold_out_and_capped_actions_one_by_one() -> None:
    env = segments_env()
    _, catalog = _parsed(env, inventory=True, cap=2)
    a, b, c, d = env.action_ids
    stock = {env.sku("sim", a): 0.0, env.sku("sim", b): 1.0}  # c, d: unknown = in stock
    now = 10_000.0
    seen = {b: [now - 10, now - 20], c: [now - 10, now - 4000], d: [now - 1]}
    out = apply(catalog.constraints, catalog.actions, {}, now, seen, stock)
    assert [x.id for x in out.actions] == [c, d]  # c: one exposure in the hour, d: one
    assert out.removed == {"inventory": [a], f"cap:{CAP_NAME}": [b]}
    fresh = apply(catalog.constraints, catalog.actions, {}, now, {}, stock)
    assert [x.id for x in fresh.actions] == [b, c, d]


@pytest.mark.parametrize("cap", [0, MAX_CAP + 1, True])
def test_catalog_body_refuses_a_bad_cap(cap: int) -> None:
    with pytest.raises(InvalidInput, match="cap must be an integer in"):
        segments_env().catalog_body("sim", cap=cap)


def test_the_largest_cap_is_one_a_catalog_accepts() -> None:
    _, catalog = _parsed(segments_env(), cap=MAX_CAP)
    assert catalog.constraints.caps[0].limit == MAX_CAP


@pytest.mark.parametrize("users", [4, 7, 200, 1001])
def test_user_pool_splits_users_by_weight_with_one_per_segment(users: int) -> None:
    env = segments_env()
    sizes = env.user_pool(users)
    assert sum(sizes) == users and min(sizes) >= 1
    expected = env.weights() * users
    assert all(abs(n - e) <= 1.5 for n, e in zip(sizes, expected, strict=True))


def test_visitors_from_a_pool_come_back_and_keep_their_segment(env: Environment) -> None:
    rng = np.random.default_rng(3)
    visitors = [env.visitor(rng, users=40) for _ in range(2000)]
    ids = {v.user_id for v in visitors}
    assert len(ids) <= 40
    assert len(ids) >= 35  # 2000 draws reach (nearly) all of them
    segment_of = {v.user_id: v.segment for v in visitors}
    assert all(segment_of[v.user_id] == v.segment for v in visitors)


def test_a_visitor_without_a_pool_is_drawn_as_before() -> None:
    env = segments_env()
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert [env.visitor(rng_a) for _ in range(20)] == [env.visitor(rng_b, None) for _ in range(20)]


@pytest.mark.parametrize("users", [3, 0, 100_001])
def test_user_pool_refuses_too_few_or_too_many(users: int) -> None:
    with pytest.raises(InvalidInput, match="users must be"):
        segments_env().user_pool(users)


def test_best_available_is_the_best_remaining_action() -> None:
    env = segments_env()
    best = env.best_action("runner")
    assert env.best_available("runner", env.action_ids) == best
    rest = [a for a in env.action_ids if a != best]
    expected = max(rest, key=lambda a: env.click_probability(Visitor("runner", "u", {}), a))
    assert env.best_available("runner", rest) == expected
    assert env.best_available("runner", []) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stock": 0}, "stock must be an integer >= 1"),
        ({"stock": 1.5}, "stock must be an integer >= 1"),
        ({"stock": 2_000_000_000}, "stock must be at most"),
        ({"restock_after": 5.0}, "restock_after needs stock"),
        ({"stock": 10, "restock_after": 0.0}, "restock_after must be a finite number"),
        ({"stock": 10, "restock_after": float("nan")}, "restock_after must be a finite"),
        ({"stock": 10, "restock_after": "5"}, "restock_after must be a number"),
        ({"cap": 0}, "cap must be an integer >= 1"),
        ({"cap": True}, "cap must be an integer >= 1"),
        ({"cap": 2_000_000}, "cap must be at most"),
        ({"cap": MAX_CAP + 1}, f"cap must be at most {MAX_CAP}"),
        ({"cap": 3, "users": 0}, "users must be an integer >= 1"),
        ({"cap": 3, "users": 3}, r"users must be an integer >= 4 \(one per segment"),
        ({"env": "segments50", "users": 4}, "users must be an integer >= 5"),
        ({"users": 100_001}, "users must be at most"),
    ],
)
def test_constraint_options_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SimConfig(base_url="http://x", **kwargs)  # type: ignore[arg-type]


def test_constraint_options_and_the_user_pool() -> None:
    plain = SimConfig(base_url="http://x")
    assert not plain.constrained and plain.user_pool is None
    capped = SimConfig(base_url="http://x", cap=3)
    assert capped.constrained and capped.user_pool == 200
    stocked = SimConfig(base_url="http://x", stock=150, restock_after=2.5, users=50)
    assert stocked.constrained and stocked.user_pool == 50
    assert SimConfig(base_url="http://x", users=10).user_pool == 10


def test_the_shop_ledger_sells_out_restocks_and_stamps_in_order() -> None:
    shop = Shop({"a": "sim:a", "b": "sim:b"}, initial=2, restock_after=None)
    first, second = shop.buy("a"), shop.buy("a")
    assert first is not None and second is not None
    assert (first[0], second[0]) == (1, 0) and second[1] > first[1]
    assert shop.buy("a") is None and shop.oversold == 1 and shop.purchases == 2
    assert shop.in_stock() == {"b"}
    level, ts = shop.restock("a")
    assert level == 2 and ts > second[1] and shop.in_stock() == {"a", "b"}
    assert shop.event("a", 0, 1.0) == {"type": "inventory", "sku": "sim:a", "level": 0, "ts": 1.0}


def test_nothing_eligible_and_removed_counts_are_read_from_a_response() -> None:
    env = segments_env()
    empty = {
        "event_id": "e1",
        "ranking": [],
        "chosen": None,
        "fallback": False,
        "reason": "no action is eligible",
        "removed": {"inventory": 1, "cap:x": 3},
    }
    assert answers.chosen(empty, env) is None
    assert answers.removed(empty) == {"inventory": 1, "cap:x": 3}
    shown = {
        "event_id": "e2",
        "chosen": {"id": env.action_ids[0], "probability": 1.0},
        "ranking": [{"id": env.action_ids[0], "probability": 1.0}],
        "removed": {},
    }
    assert answers.chosen(shown, env) == ("e2", env.action_ids[0])
    assert answers.removed(shown) == {} and answers.removed({}) == {}


def test_windows_count_ctr_per_banner_shown_and_sum_removals() -> None:
    clicked = [True, False, False, False, True, False]
    shown = [True, True, False, False, True, True]
    assert _windows(clicked, 2) == [(2, 0.5), (4, 0.0), (6, 0.5)]
    assert _windows(clicked, 2, shown) == [(2, 0.5), (6, 0.5)]  # 3-4 showed nothing
    removed = [{"inventory": 1}, {}, {"inventory": 2, "cap:x": 1}, {"cap:x": 4}]
    assert _removals_by_window(removed, 3) == [(3, {"inventory": 3, "cap:x": 1}), (4, {"cap:x": 4})]


def _constrained_result() -> SimResult:
    base = _result()
    base.constrained, base.stock, base.cap, base.users = True, 150, 3, 200
    base.shown, base.nothing_eligible = 600, 50
    base.removed = {"cap:per-action-hourly": 900, "inventory": 310}
    base.removed_by_window = [
        (200, {"cap:per-action-hourly": 100}),
        (400, {"cap:per-action-hourly": 300, "inventory": 60}),
        (600, {"cap:per-action-hourly": 380, "inventory": 200}),
        (650, {"cap:per-action-hourly": 120, "inventory": 50}),
    ]
    base.nothing_by_window = [(200, 0), (400, 10), (600, 30), (650, 10)]
    base.eligible_best_ctr, base.eligible_uniform_ctr = 0.21, 0.09
    base.eligible_best_by_window = [(200, 0.27), (400, 0.24), (600, 0.18), (650, 0.17)]
    base.best_in_stock_action = {"runner": "hero-yoga", "yogi": "hero-yoga", "hiker": None}
    base.best_in_stock_probability = {"runner": 0.4, "yogi": 0.88, "hiker": 0.0}
    base.probe_top_action = {"runner": "hero-yoga", "yogi": "hero-yoga", "hiker": None}
    base.overall_best_action = {"runner": "hero-running", "yogi": "hero-yoga", "hiker": "h"}
    base.stock_outs = [(350, "hero-running"), (520, "hero-outdoor")]
    base.sold_out_at_end = ["hero-outdoor", "hero-running"]
    base.purchases, base.oversold, base.n_in_stock = 300, 2, 2
    return base


def test_plot_with_the_removals_panel_writes_a_png(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "constrained.png"
    plain = plot(_result(), tmp_path / "plain.png", "plain").read_bytes()
    data = plot(_constrained_result(), target, "under stock and caps").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert len(data) > len(plain)  # a third panel


def test_plot_copes_with_a_constrained_run_that_removed_nothing(tmp_path: pathlib.Path) -> None:
    empty = SimResult([], 0.0, 0.0, 0.0, {}, 0, 0, 0.0, 0.0, 0.0, 0, constrained=True)
    assert plot(empty, tmp_path / "e.png", "empty").read_bytes().startswith(PNG_MAGIC)


def test_summary_mentions_stock_outs_and_cap_removals() -> None:
    text = summary(_constrained_result())
    assert "nothing eligible (chosen: null): 50 of 650" in text
    assert "cap:per-action-hourly 900" in text and "inventory 310" in text
    assert "cap removals 900" in text
    assert "stock-outs: 2 (hero-running at decision 350, hero-outdoor at decision 520)" in text
    assert "300 purchases" in text and "2 clicks on banners already sold out" in text
    assert "oracle among the eligible actions 0.210 (last window 0.170)" in text
    assert "uniform among them 0.090" in text
    assert (
        "runner->hero-yoga 0.40 (top, hero-running sold out)" in text
        and "hiker: nothing in stock" in text
    )
    assert "stock 150 per banner (no restock), cap 3 per banner per user per 1 h" in text


def test_summary_of_a_plain_run_has_no_constraint_lines() -> None:
    assert "nothing eligible" not in summary(_result())
    assert len(summary(_result()).splitlines()) == 4


@pytest.mark.parametrize("floor", [-0.1, 1.5])
def test_sim_config_refuses_an_exploration_floor_outside_0_1(floor: float) -> None:
    with pytest.raises(InvalidInput) as info:
        SimConfig(base_url="http://127.0.0.1:1", exploration_floor=floor)
    assert info.value.field == "exploration_floor"


def test_sim_config_refuses_an_empty_exploration_name() -> None:
    with pytest.raises(InvalidInput) as info:
        SimConfig(base_url="http://127.0.0.1:1", exploration="")
    assert info.value.field == "exploration"


def test_served_best_late_counts_each_segments_second_half_only() -> None:
    tally = Tally(8)
    # the first half is never best and must not count; a decision that showed nothing neither
    plan = [Outcome(False, segment="a")] * 4 + [
        Outcome(False, segment="a", served_best=True),
        Outcome(False, segment="a"),
        Outcome(False, segment="b", served_best=True),
        replace(NOT_SHOWN, segment="c"),
    ]
    for outcome in plan:
        index = tally.claim()
        assert index is not None
        tally.record(index, outcome)
    assert _served_best_late(tally) == {"a": 0.5, "b": 1.0}
    text = summary(replace(_result(), served_best_late={"a": 0.75, "b": 0.5}))
    assert "served its best banner in the second half: a 0.75, b 0.50" in text


# --- the intent storefront: sessions, behaviour, a context that hides the intent -----------


def _visits(seed: int, n: int, users: int = 20) -> list[Visitor]:
    env = intent_env()
    rng = np.random.default_rng(seed)
    shoppers = Shoppers(env, shopper_ids(users), rng)
    return [shoppers.visit(rng) for _ in range(n)]


def test_intent_env_clicks_the_intents_banner_at_0_3_and_the_others_at_0_05() -> None:
    env = intent_env()
    assert env.segment_names == ("running", "yoga", "outdoor")
    assert env.action_ids == ("hero-running", "hero-yoga", "hero-outdoor")
    assert np.allclose(env.weights(), 1 / 3)
    matrix = env.matrix()
    assert np.all((np.diag(matrix) >= 0.28) & (np.diag(matrix) <= 0.32))
    off_diagonal = matrix[~np.eye(3, dtype=bool)]
    assert np.all((off_diagonal >= 0.04) & (off_diagonal <= 0.06))
    for i, intent in enumerate(env.segment_names):
        assert env.best_action(intent) == f"hero-{intent}"
        visit = Visitor(intent, "u", env.segment_context(intent))
        assert [env.click_probability(visit, a) for a in env.action_ids] == list(matrix[i])
    rng = np.random.default_rng(1)  # the clicks a simulator draws from it
    yoga = Visitor("yoga", "u", {})
    for action, expected in (("hero-yoga", matrix[1, 1]), ("hero-running", matrix[1, 0])):
        rate = np.mean(rng.random(DRAWS) < env.click_probability(yoga, action))
        assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / DRAWS)
    assert env.best_ctr() == pytest.approx(float(np.diag(matrix).mean()))


@pytest.mark.parametrize("n_intents", [2, 4, 6])
def test_intent_env_takes_2_to_6_intents(n_intents: int) -> None:
    env = intent_env(n_intents=n_intents, seed=5)
    assert len(env.actions) == len(env.segments) == n_intents
    assert [env.best_action(i) for i in env.segment_names] == list(env.action_ids)


def test_intent_catalog_is_valid_and_explores_epsilon_greedy() -> None:
    body, catalog = _parsed(intent_env())
    assert body["learning"]["exploration"] == {"algorithm": "epsilon", "epsilon": 0.1}
    assert catalog.learning.exploration.value("epsilon") == 0.1
    assert "features" not in body  # the catalog's default features: the store is on


def test_intent_context_says_nothing_of_the_intent() -> None:
    visits = _visits(0, 6000, users=200)
    env = intent_env()
    for v in visits[:200]:
        user = v.context["user"]
        assert set(v.context) == {"user", "page"} and isinstance(user, dict)
        assert set(user) == {"device"} and user["device"] in DEVICES
        assert json.loads(json.dumps(v.context)) == v.context
    assert len({json.dumps(env.segment_context(i)) for i in env.segment_names}) == 1
    # device and page are independent of the intent (chi-square at p = 0.001)
    for key, values in (("page", PAGES), ("device", DEVICES)):
        table = np.zeros((len(values), len(env.segments)))
        for v in visits:
            value = v.context[key] if key == "page" else v.context["user"][key]  # type: ignore[index]
            table[values.index(value), env.segment_names.index(v.segment)] += 1
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        chi2 = float(np.sum((table - expected) ** 2 / expected))
        assert chi2 < CHI2_CRITICAL[(len(values) - 1) * (len(env.segments) - 1)], (key, table)


def test_shoppers_are_deterministic_under_a_seed() -> None:
    assert _visits(4, 300) == _visits(4, 300)
    assert _visits(4, 300) != _visits(5, 300)


def test_a_session_keeps_its_intent_and_the_next_session_changes_it() -> None:
    browsing = Browsing()
    visits = _visits(2, 3000)
    by_user: dict[str, list[Visitor]] = {}
    for v in visits:
        by_user.setdefault(v.user_id, []).append(v)
    sessions = 0
    for user, mine in by_user.items():
        runs: list[list[Visitor]] = []
        for v in mine:
            if not runs or runs[-1][0].session_id != v.session_id:
                runs.append([])
            runs[-1].append(v)
        ids = [r[0].session_id for r in runs]
        assert len(set(ids)) == len(ids), "a session never comes back"
        for run in runs:
            assert len({v.segment for v in run}) == 1, "one intent per session"
            assert len(run) <= browsing.visits[1]
            views = [len(v.behaviour) for v in run]
            assert all(browsing.views[0] <= n <= browsing.views[1] for n in views)
            assert [v.session_events for v in run] == list(np.cumsum(views))
        for before, after in itertools.pairwise(runs):
            assert before[0].segment != after[0].segment, f"{user} kept an intent in a new session"
            assert len(before) >= browsing.visits[0]
        sessions += len(runs)
    assert sessions > 3000 / browsing.visits[1]
    assert Counter(v.segment for v in visits).keys() == set(intent_env().segment_names)


def test_a_visits_behaviour_is_views_of_its_intent_the_server_accepts() -> None:
    for v in _visits(3, 200):
        assert v.session_id is not None and v.session_id.startswith(v.user_id)
        for raw in v.behaviour:
            typed = requests.convert(json.loads(json.dumps(raw)), BehaviourEvent)
            event = events.observed(typed, Limits(), "", 1e9)
            assert event.kind == "product_view"
            assert (event.user_id, event.session_id) == (v.user_id, v.session_id)
            assert event.product is not None and event.product.category == v.segment
            assert event.device == v.context["user"]["device"]  # type: ignore[index]


def test_workers_play_disjoint_users_that_together_are_the_pool() -> None:
    env = intent_env()
    rngs = [np.random.default_rng(i) for i in range(8)]
    shoppers = _shoppers(env, rngs, 50, "sim-x-")
    users = [{s.visit(r).user_id for _ in range(400)} for s, r in zip(shoppers, rngs, strict=True)]  # type: ignore[union-attr]
    assert all(a.isdisjoint(b) for i, a in enumerate(users) for b in users[i + 1 :])
    assert set().union(*users) == set(shopper_ids(50, "sim-x-"))
    assert _shoppers(segments_env(), rngs, 50, "") == [None] * 8


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        (lambda: intent_env(n_intents=1), "n_intents", "between 2 and 6, got 1"),
        (lambda: intent_env(n_intents=7), "n_intents", "between 2 and 6, got 7"),
        (lambda: intent_env(n_intents=True), "n_intents", "must be an integer"),
        (lambda: intent_env(seed=-1), "seed", "seed must be an integer >= 0"),
        (lambda: Browsing(users=0), "users", r"users must be an integer in \[1, 100000\]"),
        (lambda: Browsing(visits=(0, 2)), "visits", "1 <= low <= high <= 100, got"),
        (lambda: Browsing(visits=(3, 2)), "visits", r"got \(3, 2\)"),
        (lambda: Browsing(views=(1, 21)), "views", "high <= 20"),
        (lambda: Browsing(views=[1, 2]), "views", "a \\(low, high\\) pair"),  # type: ignore[arg-type]
        (lambda: Browsing(products=0), "products", "products must be an integer"),
        (lambda: Shoppers(segments_env(), ["u"], np.random.default_rng()), "env", "no sessions"),
        (lambda: Shoppers(intent_env(), [], np.random.default_rng()), "users", "at least one"),
        (
            lambda: Shoppers(intent_env(), ["u", "u"], np.random.default_rng()),
            "user id",
            "user id 'u' appears more than once",
        ),
        (lambda: intent_env().visitor(np.random.default_rng()), "env", "draw its visits"),
        (
            lambda: intent_env().views(np.random.default_rng(), "golf", "u", "s", 1),
            "segment",
            "unknown segment 'golf'",
        ),
        (
            lambda: intent_env().views(np.random.default_rng(), "yoga", "u", "s", 0),
            "n",
            r"n must be an integer in \[1, 20\]",
        ),
        (
            lambda: segments_env().views(np.random.default_rng(), "runner", "u", "s", 1),
            "env",
            "has no sessions",
        ),
        (lambda: shopper_ids(0), "users", "users must be an integer in"),
        (lambda: SimConfig(base_url="http://x", dwell_s=-1.0), "dwell_s", r"in \[0, 60\]"),
        (lambda: SimConfig(base_url="http://x", dwell_s=float("nan")), "dwell_s", "got nan"),
        (lambda: SimConfig(base_url="http://x", dwell_s="1"), "dwell_s", "a number"),  # type: ignore[arg-type]
        (lambda: SimConfig(base_url="http://x", env="intent", cap=2), "env", "stock or caps"),
        (
            lambda: SimConfig(base_url="http://x", env="intent", users=10, concurrency=16),
            "users",
            r"at least concurrency \(16\)",
        ),
    ],
)
def test_bad_intent_inputs_name_their_field(build: object, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field


def test_sim_config_for_the_intent_storefront() -> None:
    config = SimConfig(base_url="http://x", env="intent")
    assert config.user_pool == Browsing().users and config.feature_store
    assert SimConfig(base_url="http://x", env="intent", users=30).user_pool == 30
    off = SimConfig(base_url="http://x", env="intent", feature_store=False, dwell_s=0.5)
    assert not off.feature_store and off.dwell_s == 0.5


def test_the_catalog_without_the_store_declares_no_features() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"name": "c"})

    async def put(feature_store: bool) -> None:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            await put_catalog(client, "c", intent_env(), feature_store=feature_store)

    asyncio.run(put(True))
    asyncio.run(put(False))
    assert "features" not in bodies[0] and bodies[1]["features"] == []


def _answer(features: dict[str, object] | None) -> dict[str, object]:
    out: dict[str, object] = {"event_id": "e", "chosen": {"id": "hero-yoga"}}
    if features is not None:
        out["features"] = features
    return out


def test_a_decisions_features_tell_whether_it_saw_the_visits_own_views() -> None:
    visit = Visitor("yoga", "u", {}, "u-s0001", (), session_events=3)
    context: dict[str, object] = {"context": {"page": "home"}}
    session = {"views_5m.yoga": 3.0, "depth": 3.0}
    assert answers.seen(_answer({**context, "session_features": session}), visit) == (FRESH, True)
    older = {**session, "depth": 2.0}
    assert answers.seen(_answer({**context, "session_features": older}), visit) == (STALE, True)
    user_only = {**context, "user_features": {"views_1h.running": 4.0}}
    assert answers.seen(_answer(user_only), visit) == (NO_SESSION, True)
    assert answers.seen(_answer(context), visit) == (NO_SESSION, False)
    assert answers.seen(_answer(None), visit) == (NO_SESSION, False)


def _behaviour_result(feature_store: bool) -> SimResult:
    base = _result()
    base.env, base.users, base.feature_store, base.dwell_s = "intent", 200, feature_store, 0.5
    base.best_action_probability = {"running": 0.93, "yoga": 0.9, "outdoor": 0.88}
    base.n_actions, base.events_posted = 3, 975
    base.event_latency_ms_p50, base.event_latency_ms_p99 = 3.2, 40.0
    base.fresh, base.stale, base.no_session = (600, 30, 20) if feature_store else (0, 0, 650)
    base.joined = 650 if feature_store else 0
    base.fresh_by_window = [(200, 0.9), (400, 0.93), (600, 0.95), (650, 0.9)]
    base.expected_ctr_by_window = [(200, 0.15), (400, 0.2), (600, 0.24), (650, 0.25)]
    base.expected_ctr, base.store_ready_s = 0.21, 6.2 if feature_store else None
    base.probes, base.probe_fresh = 60, 60 if feature_store else 0
    return base


def test_summary_and_plot_of_an_intent_run(tmp_path: pathlib.Path) -> None:
    on, off = summary(_behaviour_result(True)), summary(_behaviour_result(False))
    assert "feature store on (the catalog's features); 200 returning users; 975" in on
    assert "the visit's own views: 600 (92%)" in on and "earlier views: 30 (5%)" in on
    assert "nothing of the session: 20 (3%); any stored feature: 650" in on
    assert "expected CTR (click model) 0.210, 0.250 in the last window" in on
    assert "a first view reached the server in 6.2 s" in on and "60 of 60" in on
    assert 'feature store off ("features": [])' in off and "any stored feature: 0" in off
    for name, result in (("on", _behaviour_result(True)), ("off", _behaviour_result(False))):
        data = plot(result, tmp_path / f"{name}.png", name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
