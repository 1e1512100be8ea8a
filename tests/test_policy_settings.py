"""LinUCB and Thompson as policies a catalog names: their settings validated and resolved
(engine.learning), built, keyed and loaded back from saved bytes (policies.registry)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.actions import Action
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.features import Features
from engine.learning import (
    Learning,
    LinUCBSettings,
    learning_json,
    parse_learning,
)
from engine.limits import Limits
from policies.base import Example
from policies.linucb import LinUCB
from policies.registry import build, continues, model_key
from policies.thompson import Thompson

ACTIONS = tuple(Action(f"a{i}", {"banner": {"i": i}}) for i in range(4))
CONTEXTS: tuple[Features, ...] = (
    {"user": {"segment": "runner", "age": 31.0}},
    {"user": {"segment": "hiker", "age": 54.0}},
)


def parse(body: object) -> Learning:
    return parse_learning(body, Limits())


def test_each_policy_resolves_every_setting_and_reads_its_json_back() -> None:
    lin = parse({"policy": "linucb", "linucb": {"alpha": 2, "dim": 32.0}})
    assert lin.linucb == LinUCBSettings(alpha=2.0, epsilon=0.05, dim=32, ridge=1.0)
    shown = learning_json(lin)
    assert shown == {
        "policy": "linucb",
        "linucb": {"alpha": 2.0, "epsilon": 0.05, "dim": 32, "ridge": 1.0},
        "reward_wait_seconds": 10.0,
        "default_reward": 0.0,
        "aggregation": "earliest",
    }
    thompson = parse({"policy": "thompson", "aggregation": "sum"})
    assert learning_json(thompson)["thompson"] == {"draws": 512, "smoothing": 0.5}
    for learning in (lin, thompson):
        again = parse(learning_json(learning))
        assert again == learning and model_key(again) == model_key(learning)


LIN, TS = {"policy": "linucb"}, {"policy": "thompson"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**LIN, "linucb": {"alpha": -1}}, "learning.linucb.alpha", "[0, 1000]"),
        ({**LIN, "linucb": {"epsilon": 0}}, "learning.linucb.epsilon", "[0.001, 1]"),
        ({**LIN, "linucb": {"dim": 256}}, "learning.linucb.dim", "[2, 128]"),
        ({**LIN, "linucb": {"dim": 8.5}}, "learning.linucb.dim", "whole number"),
        ({**LIN, "linucb": {"ridge": "1"}}, "learning.linucb.ridge", "a number"),
        ({**LIN, "linucb": {"gamma": 1}}, "learning.linucb.gamma", "not a known"),
        ({**LIN, "linucb": [1]}, "learning.linucb", "an object"),
        ({**TS, "thompson": {"draws": 0}}, "learning.thompson.draws", "[1, 4096]"),
        ({**TS, "thompson": {"smoothing": 0}}, "learning.thompson.smoothing", "[0.001, 1e+06]"),
        ({**LIN, "exploration": {}}, "learning.exploration", "policy 'vw'"),
        ({**TS, "interactions": ["ca"]}, "learning.interactions", "takes learning.thompson"),
        ({**LIN, "optimizer": "coin"}, "learning.optimizer", "policy 'vw'"),
        ({"linucb": {"alpha": 1}}, "learning.linucb", "only with policy 'linucb'"),
        ({**LIN, "thompson": {}}, "learning.thompson", "not 'linucb'"),
    ],
)
def test_bad_settings_name_their_field(body: object, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert caught.value.field == field and words in caught.value.detail, caught.value.detail


def test_the_model_key_changes_with_every_setting_and_only_then() -> None:
    keys = {
        model_key(parse(body))
        for body in (
            {"policy": "linucb"},
            {"policy": "linucb", "linucb": {"alpha": 0.5}},
            {"policy": "linucb", "linucb": {"epsilon": 0.1}},
            {"policy": "linucb", "linucb": {"dim": 32}},
            {"policy": "linucb", "linucb": {"ridge": 2}},
            {"policy": "thompson"},
            {"policy": "thompson", "thompson": {"draws": 256}},
            {"policy": "thompson", "thompson": {"smoothing": 1}},
            {"policy": "uniform"},
            {},
        )
    }
    assert len(keys) == 10
    same = parse({"policy": "linucb", "linucb": {"alpha": 1, "dim": 64.0}, "aggregation": "sum"})
    assert continues(model_key(parse({"policy": "linucb"})), model_key(same))
    assert not continues(model_key(parse({"policy": "linucb"})), model_key(parse({})))


def learned(learning: Learning, n: int = 60) -> LinUCB | Thompson:
    policy = build(learning)
    assert isinstance(policy, LinUCB | Thompson)
    for i in range(n):
        context, chosen = CONTEXTS[i % 2], i % len(ACTIONS)
        reward = 0.4 * chosen + (1.0 if chosen == 1 + i % 2 else 0.0)  # > 1 for Thompson
        policy.learn(Example(context, ACTIONS, chosen, 0.25, reward))
    return policy


SETTINGS = [
    {"policy": "linucb", "linucb": {"alpha": 0.5, "epsilon": 0.1, "dim": 16, "ridge": 2.0}},
    {"policy": "thompson", "thompson": {"draws": 128, "smoothing": 0.25}},
]


@pytest.mark.parametrize("body", SETTINGS, ids=["linucb", "thompson"])
def test_a_saved_model_loads_back_to_the_same_pmf(body: dict[str, object]) -> None:
    learning = parse(body)
    policy = learned(learning)
    assert policy.name == body["policy"] and policy.learned == 60
    if isinstance(policy, LinUCB):
        assert (policy.dim, policy.alpha, policy.epsilon, policy.ridge) == (16, 0.5, 0.1, 2.0)
    else:
        assert (policy.draws, policy.smoothing) == (128, 0.25)
    loaded = build(learning, policy.save(), policy.learned)
    assert loaded.learned == 60
    for context in CONTEXTS:
        for eligible in (ACTIONS, ACTIONS[1:3]):
            pmf = policy.distribution(context, eligible)
            assert np.array_equal(loaded.distribution(context, eligible), pmf)
            assert not np.allclose(pmf, 1 / len(eligible))  # it did learn something
    example = Example(CONTEXTS[0], ACTIONS, 2, 0.25, 1.0)
    policy.learn(example)
    loaded.learn(example)  # and learns on as the original does
    assert loaded.save() == policy.save()
    fresh = build(learning).distribution(CONTEXTS[0], ACTIONS)
    assert not np.array_equal(fresh, loaded.distribution(CONTEXTS[0], ACTIONS))


def test_thompson_learns_rewards_clipped_to_one_and_linucb_as_given() -> None:
    thompson, lin = parse({"policy": "thompson"}), parse({"policy": "linucb"})
    assert thompson.learned_reward(30.0) == 1.0 and thompson.learned_reward(-2.0) == 0.0
    assert lin.learned_reward(30.0) == 30.0
    big, one = build(thompson), build(thompson)
    big.learn(Example(CONTEXTS[0], ACTIONS, 0, 0.25, 30.0))
    one.learn(Example(CONTEXTS[0], ACTIONS, 0, 0.25, 1.0))
    assert big.save() == one.save()


@pytest.mark.parametrize("body", SETTINGS, ids=["linucb", "thompson"])
@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "other"], ids=["garbage", "truncated", "other-policy"]
)
def test_bytes_that_are_not_the_policys_saved_model_are_refused(
    body: dict[str, object], damage: str
) -> None:
    learning = parse(body)
    saved = learned(learning).save()
    other = SETTINGS[1] if body is SETTINGS[0] else SETTINGS[0]
    data = {
        "garbage": b"\x00not a model",
        "truncated": saved[: len(saved) // 2],
        "other": learned(parse(other)).save(),
    }[damage]
    with pytest.raises(CorruptCheckpoint):
        build(learning, data, 60)


def test_a_linucb_model_of_another_dim_is_refused() -> None:
    saved = learned(parse({"policy": "linucb", "linucb": {"dim": 16}})).save()
    with pytest.raises(CorruptCheckpoint, match="dim 32"):
        build(parse({"policy": "linucb", "linucb": {"dim": 32}}), saved, 60)
