"""The simulated storefronts: known click models, seeded visitors, and the result views."""

from __future__ import annotations

import json
import pathlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.simulate import SimConfig, SimResult, plot, summary
from engine.errors import InvalidInput
from engine.simulation import (
    ENVIRONMENT_NAMES,
    Action,
    Environment,
    Segment,
    Visitor,
    environment,
    segments50_env,
    segments_env,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DRAWS = 20_000
# chi-square critical values at p = 0.001 for 1..6 degrees of freedom
CHI2_CRITICAL = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}


@pytest.fixture(params=ENVIRONMENT_NAMES)
def env(request: pytest.FixtureRequest) -> Environment:
    return environment(request.param, seed=0)


def test_registry_names_are_the_documented_ones() -> None:
    assert set(ENVIRONMENT_NAMES) == {"segments", "segments50"}


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
    assert learning["interactions"] == ["ca"]
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
