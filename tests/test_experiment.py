"""Experiments in the engine: parsing with field paths, sticky seeded assignment by share,
and the live results with their guardrail (engine.experiment, engine.results)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from engine.catalog import parse_catalog
from engine.errors import InvalidInput
from engine.experiment import Experiment, assign, parse_experiment
from engine.limits import Limits
from engine.records import TrainingExample
from engine.results import Results

IDS = ["a", "b", "c"]


def experiment(**extra: object) -> Experiment:
    body = {
        "name": "hero",
        "seed": 7,
        "arms": [
            {"name": "model", "share": 0.5},
            {"name": "rule", "share": 0.3, "policy": {"rule": "priority", "priority": ["b"]}},
            {
                "name": "eps",
                "share": 0.2,
                "policy": {"learning": {"exploration": {"algorithm": "epsilon"}}},
            },
        ],
        **extra,
    }
    parsed = parse_experiment(body, IDS, Limits())
    assert parsed is not None
    return parsed


def test_assignment_is_sticky_seeded_and_follows_the_shares() -> None:
    e = experiment()
    users = [f"u{i}" for i in range(20_000)]
    arms = [assign(e, u).arm.name for u in users]
    assert arms == [assign(e, u).arm.name for u in users]  # sticky
    counts = Counter(arms)
    expected = [0.5 * len(users), 0.3 * len(users), 0.2 * len(users)]
    p = stats.chisquare([counts["model"], counts["rule"], counts["eps"]], expected).pvalue
    assert p > 1e-4, counts
    other = parse_experiment({**e.to_json(), "seed": 8}, IDS, Limits())
    assert other is not None
    moved = sum(a != assign(other, u).arm.name for u, a in zip(users, arms, strict=True))
    assert moved > 0.3 * len(users)  # another seed, another assignment
    assert assign(e, "u1").probability == pytest.approx(
        {"model": 0.5, "rule": 0.3, "eps": 0.2}[arms[1]]
    )


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50, unique=True))
def test_pausing_an_arm_moves_only_its_own_users(users: list[str]) -> None:
    """Found by this test: slicing the unit interval by share moved other arms' users
    when one arm paused; rendezvous hashing does not."""
    e = experiment()
    body = e.to_json()
    body["arms"][2]["paused"] = True  # type: ignore[index]
    paused = parse_experiment(body, IDS, Limits())
    assert paused is not None
    for u in users:
        before, after = assign(e, u), assign(paused, u)
        assert after.arm.name != "eps"
        if before.arm.name != "eps":
            assert after.arm.name == before.arm.name
        assert after.probability == pytest.approx(after.arm.share / 0.8)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50, unique=True))
def test_raising_a_share_moves_users_only_to_that_arm(users: list[str]) -> None:
    e = experiment()
    body = e.to_json()
    body["arms"][1]["share"] = 0.9  # type: ignore[index]
    raised = parse_experiment(body, IDS, Limits())
    assert raised is not None
    for u in users:
        before, after = assign(e, u).arm.name, assign(raised, u).arm.name
        assert after == before or after == "rule"


def test_every_arm_stopped_or_paused_leaves_control() -> None:
    e = experiment()
    assert assign(e, "u", stopped={"model", "rule", "eps"}).arm.name == "model"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"arms": [{"name": "x"}]}, "experiment.arms"),
        ({"control": "nobody"}, "experiment.control"),
        ({"arms": [{"name": "x"}, {"name": "x"}]}, "experiment.arms[1].name"),
        ({"arms": [{"name": "x"}, {"name": "y", "share": -1}]}, "experiment.arms[1].share"),
        ({"arms": [{"name": "x"}, {"name": "y", "policy": "best"}]}, "experiment.arms[1].policy"),
        (
            {
                "arms": [
                    {"name": "x"},
                    {"name": "y", "policy": {"rule": "priority", "priority": ["zz"]}},
                ]
            },
            "experiment.arms[1].policy.priority[0]",
        ),
        (
            {
                "arms": [
                    {"name": "x"},
                    {"name": "y", "policy": {"learning": {"exploration": {"algorithm": "magic"}}}},
                ]
            },
            "experiment.arms[1].policy.learning.exploration.algorithm",
        ),
        ({"guardrail": {"min_decisions": 5}}, "experiment.guardrail.min_difference"),
        ({"reward_range": [1, 0]}, "experiment.reward_range"),
        ({"alpha": 0.7}, "experiment.alpha"),
        ({"arms": [{"name": "x"}, {"name": "y", "paused": "yes"}]}, "experiment.arms[1].paused"),
    ],
)
def test_bad_experiments_name_their_field(change: dict[str, object], field: str) -> None:
    body = {**experiment().to_json(), **change}
    with pytest.raises(InvalidInput) as caught:
        parse_experiment(body, IDS, Limits())
    assert caught.value.field == field, caught.value.detail


def test_a_catalog_round_trips_its_experiment() -> None:
    body = {"actions": [{"id": i} for i in IDS], "experiment": experiment().to_json()}
    c = parse_catalog("shop", body, Limits(), version=1, now=0.0)
    again = parse_catalog("shop", c.to_json(), Limits(), version=2, now=0.0)
    assert c.experiment is not None and again.experiment is not None
    assert c.experiment.to_json() == experiment().to_json()
    assert again.experiment.to_json() == c.experiment.to_json()  # every setting resolved


def example(n: int, arm: str, reward: float) -> TrainingExample:
    return TrainingExample(
        event_id=f"e{n}",
        catalog="shop",
        catalog_version=1,
        context={},
        eligible=IDS,
        chosen=0,
        probability=1.0,
        reward=reward,
        rewards=1,
        reason="reward",
        decided_ts=float(n),
        emitted_ts=float(n),
        experiment="hero",
        arm=arm,
        arm_probability=0.5,
    )


def test_results_count_each_arm_and_the_guardrail_stops_a_worse_one() -> None:
    e = experiment(guardrail={"min_difference": -0.05, "min_decisions": 100})
    results = Results()
    rng = np.random.default_rng(3)
    for n in range(1, 3001):
        arm = ("model", "rule", "eps")[n % 3]
        rate = {"model": 0.5, "rule": 0.2, "eps": 0.5}[arm]  # the rule is far worse
        results.observe(example(n, arm, float(rng.random() < rate)), e)
    report = results.report("shop", e)
    rows = {r["arm"]: r for r in report["arms"]}  # type: ignore[union-attr]
    assert rows["rule"]["status"] == "stopped" and rows["eps"]["status"] == "running"
    assert results.stopped("shop", e) == {"rule"}
    assert rows["model"]["decisions"] == 1000
    assert rows["model"]["low"] < 0.5 < rows["model"]["high"]
    diff = rows["eps"]["difference"]
    assert diff["low"] < 0.0 < diff["high"]  # no difference there
    assert rows["model"]["series"] and rows["model"]["series"][-1][1] <= 1000
    kept = e.to_json()
    kept["arms"][1]["keep_running"] = True  # type: ignore[index]
    resumed = parse_experiment(kept, IDS, Limits())
    assert resumed is not None and results.stopped("shop", resumed) == frozenset()
    again = Results.decode(results.encode())
    assert again.report("shop", e) == report


def test_rewards_outside_the_range_are_clipped_and_counted() -> None:
    e = experiment()
    results = Results()
    results.observe(example(1, "model", 7.0), e)
    results.observe(example(2, "model", -1.0), e)
    row = results.report("shop", e)["arms"][0]  # type: ignore[index]
    assert row["clipped"] == 2 and row["mean"] == 0.5
