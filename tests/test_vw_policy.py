"""The VW policy's parsed-example cache changes nothing but speed."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import vowpalwabbit

from engine import vwformat
from engine.catalog import Action, Learning
from engine.features import Features
from policies import vw
from policies.base import Example
from policies.vw import VWPolicy

ACTIONS = [Action(f"a{i}", {"banner": {"kind": f"k{i % 4}", "price": float(i)}}) for i in range(12)]
TWINS = [
    Action("twin-1", {"banner": {"kind": "same"}}),
    Action("twin-2", {"banner": {"kind": "same"}}),
]


def from_text(policy: VWPolicy, context: Features, eligible: list[Action]) -> np.ndarray:
    """The same model, predicting from text with a fresh workspace."""
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        with open(path, "wb") as f:
            f.write(policy.save())
        ws = vowpalwabbit.Workspace(f"{policy.args} -i {path}")
        lines = [
            vwformat.shared_line(context),
            *(vwformat.action_body(a.features) for a in eligible),
        ]
        out = np.asarray(ws.predict(lines))
        ws.finish()
        return out
    finally:
        os.unlink(path)


@pytest.mark.parametrize("max_parsed", [20_000, 5])
def test_cached_predictions_equal_text_predictions(
    monkeypatch: pytest.MonkeyPatch, max_parsed: int
) -> None:
    monkeypatch.setattr(vw, "MAX_PARSED", max_parsed)
    policy = VWPolicy(Learning())
    rng = np.random.default_rng(3)
    for step in range(400):
        context: Features = {"user": {"segment": f"s{step % 3}"}}
        subset = [ACTIONS[i] for i in rng.permutation(12)[: int(rng.integers(1, 13))]]
        pmf = policy.distribution(context, subset)
        if step % 25 == 0:
            assert np.allclose(pmf, from_text(policy, context, subset), atol=1e-7)
        chosen = int(rng.integers(len(subset)))
        reward = float(subset[chosen].features["banner"]["kind"] == f"k{step % 3}")
        policy.learn(Example(context, subset, chosen, float(pmf[chosen]), reward))
    assert len(policy._parsed) <= max(max_parsed, 12)
    policy.close()


def test_actions_with_identical_features_stay_distinct() -> None:
    policy = VWPolicy(Learning())
    pmf = policy.distribution({}, TWINS)
    assert pmf.shape == (2,) and pmf.sum() == pytest.approx(1.0, abs=1e-6)
    assert len(policy._parsed) == 2
    policy.close()
