"""Shaping the policy's pmf before sampling: a pinned action, boosts, the exploration floor.

The policy's distribution over the eligible actions goes in; out comes the exact pmf that
engine.sampling samples from, so the logged probability is the probability of what was
shown (never a sampled action replaced afterwards).

May import: numpy, engine.actions, engine.constraints, engine.errors and engine.sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.actions import Action
from engine.constraints import Constraints
from engine.errors import InvalidInput
from engine.sampling import Pmf, normalise


def adjust(pmf: Pmf | Sequence[float], eligible: Sequence[Action], constraints: Constraints) -> Pmf:
    """Pinned (one-hot if eligible), then boosts, then the exploration floor: an exact pmf."""
    weights = np.asarray(pmf, dtype=np.float64)
    if weights.shape != (len(eligible),):
        raise InvalidInput(
            f"the pmf has shape {weights.shape}, expected ({len(eligible)},) for the eligible "
            "actions",
            field="pmf",
        )
    ids = [a.id for a in eligible]
    if constraints.pinned is not None and constraints.pinned in ids:
        one_hot = np.zeros(len(ids), dtype=np.float64)
        one_hot[ids.index(constraints.pinned)] = 1.0
        return one_hot
    if constraints.boost:
        factors = np.array([constraints.boost.get(i, 1.0) for i in ids], dtype=np.float64)
        weights = weights * factors
    return normalise(weights, floor=constraints.exploration_floor)
