"""The VW policy's parsed-example cache changes nothing but speed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import vowpalwabbit

from engine import vwformat
from engine.actions import Action, with_features
from engine.features import Features
from engine.learning import Exploration, Learning
from engine.sampling import ranking
from policies import vw
from policies.base import Example
from policies.vw import VWPolicy

ACTIONS = [Action(f"a{i}", {"banner": {"kind": f"k{i % 4}", "price": float(i)}}) for i in range(12)]
TWINS = [
    Action("twin-1", {"banner": {"kind": "same"}}),
    Action("twin-2", {"banner": {"kind": "same"}}),
]


def from_text(
    policy: VWPolicy, context: Features, eligible: list[Action]
) -> tuple[np.ndarray, np.ndarray]:
    """The same model, predicting from text with a fresh workspace: (pmf, estimated rewards)."""
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        with open(path, "wb") as f:
            f.write(policy.save())
        ws = vowpalwabbit.Workspace(f"{policy.args} -i {path}")
        lines = [
            vwformat.shared_line(context),
            *(vwformat.action_body(a.features, a.id) for a in eligible),
        ]
        examples = ws.parse(lines, vowpalwabbit.LabelType.CONTEXTUAL_BANDIT)
        out = np.asarray(ws.predict(examples), dtype=np.float64)
        estimates = np.array([-e.get_partial_prediction() for e in examples[1:]])
        ws.finish_example(examples)
        ws.finish()
        return out / out.sum(), estimates  # RegCB gives 1 to each action tied for the best
    finally:
        os.unlink(path)


@pytest.mark.parametrize("algorithm", ["regcbopt", "squarecb"])
@pytest.mark.parametrize("max_parsed", [20_000, 5])
def test_cached_predictions_equal_text_predictions(
    monkeypatch: pytest.MonkeyPatch, max_parsed: int, algorithm: str
) -> None:
    monkeypatch.setattr(vw, "MAX_PARSED", max_parsed)
    policy = VWPolicy(Learning(exploration=Exploration(algorithm)))
    rng = np.random.default_rng(3)
    for step in range(400):
        context: Features = {"user": {"segment": f"s{step % 3}"}}
        subset = [ACTIONS[i] for i in rng.permutation(12)[: int(rng.integers(1, 13))]]
        pmf = policy.distribution(context, subset)
        if step % 25 == 0:
            assert np.allclose(pmf, from_text(policy, context, subset)[0], atol=1e-7)
        chosen = int(rng.integers(len(subset)))
        reward = float(subset[chosen].features["banner"]["kind"] == f"k{step % 3}")
        policy.learn(Example(context, subset, chosen, float(pmf[chosen]), reward))
    assert len(policy._parsed) <= max(max_parsed, 12)
    policy.close()


def test_changing_action_features_keep_the_cache_bounded_and_predictions_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joined features (popularity) give an action a new body all the time: the cache
    evicts what it has not used lately, giving the examples back to VW, between learns,
    and predictions stay those of the text path (the soak found the unbounded cache)."""
    monkeypatch.setattr(vw, "MAX_PARSED", 40)
    policy = VWPolicy(Learning())
    rng = np.random.default_rng(8)
    before = resident_mb()
    for step in range(2000):
        context: Features = {"user": {"segment": f"s{step % 3}"}}
        views = float(rng.integers(10_000))  # new bodies nearly every time
        subset = [
            with_features(a, {"popularity": {"views_1h": views + i}})
            for i, a in enumerate(ACTIONS[: int(rng.integers(2, 13))])
        ]
        pmf = policy.distribution(context, subset)
        if step % 100 == 0:
            assert np.allclose(pmf, from_text(policy, context, subset)[0], atol=1e-7)
        chosen = int(rng.integers(len(subset)))
        policy.learn(Example(context, subset, chosen, float(pmf[chosen]), float(chosen == 0)))
        assert len(policy._parsed) <= 40
    # ~14,000 examples parsed at ~32 KB each inside VW: ~450 MB had they leaked
    grown = resident_mb() - before
    assert grown < 60, f"resident memory grew {grown:.0f} MB"
    policy.close()


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_actions_with_identical_features_stay_distinct() -> None:
    policy = VWPolicy(Learning())
    pmf = policy.distribution({}, TWINS)
    assert pmf.shape == (2,) and pmf.sum() == pytest.approx(1.0, abs=1e-6)
    assert len(policy._parsed) == 2
    policy.close()


def twins_learned(learning: Learning) -> tuple[np.ndarray, np.ndarray]:
    """The pmf for segments s0 and s1 after s0 clicked only twin-1 and s1 only twin-2."""
    policy = VWPolicy(learning)
    rng = np.random.default_rng(5)
    for step in range(600):
        segment = step % 2
        context: Features = {"user": {"segment": f"s{segment}"}}
        chosen = int(rng.integers(2))
        reward = float(chosen == segment)  # s0 clicks twin-1, s1 clicks twin-2
        policy.learn(Example(context, TWINS, chosen, 0.5, reward))
    first = policy.distribution({"user": {"segment": "s0"}}, TWINS)
    second = policy.distribution({"user": {"segment": "s1"}}, TWINS)
    policy.close()
    return first, second


def test_the_action_id_is_learned_so_twins_get_their_own_values() -> None:
    """Twins share every feature; only the id, crossed with the context (`ci`, a default
    interaction), tells them apart."""
    first, second = twins_learned(Learning())
    assert first[0] > 0.8 and second[1] > 0.8, (first, second)


def test_without_the_id_cross_twins_stay_alike_per_segment() -> None:
    first, second = twins_learned(Learning(interactions=("ca",)))
    assert np.allclose(first, second, atol=0.02), (first, second)


def test_regcb_learns_rewards_clipped_to_the_declared_range() -> None:
    """A revenue of 50 in a [0, 1] catalog teaches RegCB what a reward of 1 does."""
    learning = Learning(exploration=Exploration("regcbopt"), optimizer="adaptive")
    big, one = VWPolicy(learning), VWPolicy(learning)
    rng = np.random.default_rng(2)
    for step in range(300):
        context: Features = {"user": {"segment": f"s{step % 3}"}}
        chosen = int(rng.integers(len(ACTIONS)))
        hit = ACTIONS[chosen].features["banner"]["kind"] == f"k{step % 3}"
        for policy, value in ((big, 50.0), (one, 1.0)):
            reward = value if hit else 0.0
            policy.learn(Example(context, ACTIONS, chosen, 1 / len(ACTIONS), reward))
    probe: Features = {"user": {"segment": "s1"}}
    first, second = big.distribution(probe, ACTIONS), one.distribution(probe, ACTIONS)
    big.close()
    one.close()
    assert np.array_equal(first, second)
    assert ACTIONS[int(np.argmax(second))].features["banner"]["kind"] == "k1"


def weights(policy: VWPolicy) -> dict[int, float]:
    """Every non-zero weight of the model."""
    ws = policy._ws
    values = (ws.get_weight(i) for i in range(ws.num_weights()))
    return {i: w for i, w in enumerate(values) if w != 0.0}


@pytest.mark.parametrize("algorithm", sorted(vw.CHOSEN_ONLY))
@pytest.mark.parametrize("optimizer", ["coin", "adaptive"])
def test_learning_from_the_chosen_action_alone_gives_the_same_model(
    algorithm: str, optimizer: str
) -> None:
    """For these algorithms the other actions' lines are learned without features; the
    model must equal one learned from every line in full, weight for weight."""
    learning = Learning(exploration=Exploration(algorithm), optimizer=optimizer)
    fast, full = VWPolicy(learning), VWPolicy(learning)
    full._chosen_only = False
    rng = np.random.default_rng(11)
    for step in range(300):
        context: Features = {"user": {"segment": f"s{step % 3}", "age": float(step % 7)}}
        subset = [ACTIONS[i] for i in rng.permutation(12)[: int(rng.integers(1, 13))]]
        chosen = int(rng.integers(len(subset)))
        p = float(rng.uniform(0.05, 1.0))
        reward = float(subset[chosen].features["banner"]["kind"] == f"k{step % 3}")
        for policy in (fast, full):
            policy.learn(Example(context, subset, chosen, p, reward))
    learned = weights(full)
    assert len(learned) > 20 and weights(fast) == learned  # (saved files differ in statistics)
    for step in range(12):
        context = {"user": {"segment": f"s{step % 3}", "age": float(step % 7)}}
        assert np.array_equal(
            fast.distribution(context, ACTIONS), full.distribution(context, ACTIONS)
        )
    fast.close()
    full.close()


def test_cover_learns_from_every_action_line() -> None:
    """Cover estimates every action's cost, so its examples keep all features."""
    learning = Learning(exploration=Exploration("cover"))
    assert learning.exploration.algorithm not in vw.CHOSEN_ONLY
    fast, full = VWPolicy(learning), VWPolicy(learning)
    fast._chosen_only = True  # what the shortcut would do to cover
    for step in range(200):
        context: Features = {"user": {"segment": f"s{step % 3}"}}
        chosen = step % 12
        reward = float(ACTIONS[chosen].features["banner"]["kind"] == f"k{step % 3}")
        for policy in (fast, full):
            policy.learn(Example(context, ACTIONS, chosen, 0.1, reward))
    assert weights(fast) != weights(full)
    fast.close()
    full.close()


def saved(ws: vowpalwabbit.Workspace) -> bytes:
    fd, path = tempfile.mkstemp(suffix=".model")
    os.close(fd)
    try:
        ws.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


@pytest.mark.parametrize("algorithm", ["squarecb", "cover", "regcbopt"])
def test_learning_makes_the_model_pyvw_makes_statistics_included(algorithm: str) -> None:
    """VWPolicy learns through VW's native calls without pyvw's Python wrappers; the saved
    model (weights and the statistics finishing each example updates) must be the one
    `Workspace.learn` makes from the same lines."""
    learning = Learning(exploration=Exploration(algorithm))
    policy, reference = VWPolicy(learning), vowpalwabbit.Workspace(vw.vw_args(learning))
    rng = np.random.default_rng(5)
    for step in range(200):
        context: Features = {"user": {"segment": f"s{step % 3}", "age": float(step % 7)}}
        subset = [ACTIONS[i] for i in rng.permutation(12)[: int(rng.integers(1, 13))]]
        chosen = int(rng.integers(len(subset)))
        p, reward = float(rng.uniform(0.05, 1.0)), float(rng.random() < 0.3)
        example = Example(context, subset, chosen, p, reward)
        policy.learn(example)
        reference.learn(policy.lines(example))
    assert policy.save() == saved(reference)
    policy.close()
    reference.finish()


@pytest.mark.parametrize("algorithm", ["regcbopt", "squarecb"])
def test_only_regcb_learns_without_importance_weights(algorithm: str) -> None:
    """RegCB is a plain regression on the chosen action: the logged probability (below 1
    only through a floor or a boost) must not scale its update; squarecb's MTR does."""
    saved: list[bytes] = []
    for probability in (0.1, 1.0):
        policy = VWPolicy(Learning(exploration=Exploration(algorithm)))
        for step in range(20):
            context: Features = {"user": {"segment": f"s{step % 2}"}}
            chosen = step % 3
            example = Example(context, ACTIONS[:3], chosen, probability, float(chosen == step % 2))
            policy.learn(example)
        saved.append(policy.save())
        policy.close()
    assert (saved[0] == saved[1]) == (algorithm == "regcbopt")


@pytest.mark.parametrize("algorithm", ["regcbopt", "squarecb"])
def test_ranked_scores_are_the_estimated_rewards_and_order_the_tail(algorithm: str) -> None:
    """Four actions paying 1, 0.6, 0.3 and 0: after learning, the scores are VW's own
    estimates (as a fresh workspace predicting from text reads them) and rank the actions
    by what they pay, though RegCB's pmf gives every action but one a probability of 0."""
    pays = {"a0": 1.0, "a1": 0.6, "a2": 0.3, "a3": 0.0}
    actions = [Action(i, {"banner": {"kind": i}}) for i in pays]
    policy = VWPolicy(Learning(exploration=Exploration(algorithm)))
    for step in range(400):
        chosen = step % 4
        policy.learn(Example({}, actions, chosen, 0.25, pays[actions[chosen].id]))
    pmf, scores = policy.ranked({}, actions)
    assert np.allclose(pmf, policy.distribution({}, actions))
    assert ranking(pmf, scores) == [0, 1, 2, 3], (pmf, scores)
    if algorithm == "regcbopt":  # a plain regression; squarecb's weighs by 1/probability
        assert np.allclose(scores, list(pays.values()), atol=0.05), scores
    assert np.allclose(scores, from_text(policy, {}, actions)[1], atol=1e-6)
    policy.close()
