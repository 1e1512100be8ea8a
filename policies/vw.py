"""The Vowpal Wabbit contextual bandit (`cb_explore_adf`): the only vowpalwabbit import.

Examples are built by `engine.vwformat` (escaped, so no user byte changes structure);
action lines are built once per catalog version and cached on the Action. The reward ->
cost sign flip happens here, once: VW minimises cost, Loopwise maximises reward.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
import vowpalwabbit

from engine import vwformat
from engine.catalog import Action, Learning
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.features import Features
from engine.sampling import Pmf
from policies.base import Example


class VWPolicy:
    def __init__(self, learning: Learning, model: bytes = b"", learned: int = 0) -> None:
        self.args = learning.vw_args()
        self.name = f"vw:{learning.exploration.algorithm}"
        self.learned = learned
        self._ws = _workspace(self.args, model)

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        lines = [vwformat.shared_line(features), *(action_body(a) for a in eligible)]
        probabilities = self._ws.predict(lines)
        pmf = np.asarray(probabilities, dtype=np.float64)
        if pmf.shape != (len(eligible),):
            raise InvalidInput(
                f"VW returned {pmf.size} probabilities for {len(eligible)} actions",
                field="eligible",
            )
        return pmf

    def learn(self, example: Example) -> None:
        label = vwformat.cb_label(cost_of(example.reward), example.probability)
        lines = [vwformat.shared_line(example.context)]
        for i, action in enumerate(example.actions):
            body = action_body(action)
            lines.append(vwformat.labeled(body, label if i == example.chosen else None))
        self._ws.learn(lines)
        self.learned += 1

    def save(self) -> bytes:
        fd, path = tempfile.mkstemp(prefix="loopwise-vw-", suffix=".model")
        os.close(fd)
        try:
            self._ws.save(path)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)

    def close(self) -> None:
        self._ws.finish()


def cost_of(reward: float) -> float:
    """VW minimises cost; Loopwise maximises reward. The one place the sign flips."""
    return -reward


def action_body(action: Action) -> str:
    return action.vw_body or vwformat.action_body(action.features)


def _workspace(args: str, model: bytes) -> vowpalwabbit.Workspace:
    if not model:
        return vowpalwabbit.Workspace(args)
    fd, path = tempfile.mkstemp(prefix="loopwise-vw-", suffix=".model")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        try:
            return vowpalwabbit.Workspace(f"{args} -i {path}")
        except RuntimeError as exc:
            raise CorruptCheckpoint(f"VW refused the saved model: {exc}") from exc
    finally:
        os.unlink(path)
