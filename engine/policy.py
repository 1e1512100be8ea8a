"""The policy step of a decision: what engine.decide asks of a policy, and the safe
answer when the policy fails.

A policy that raises (a broken model, a NaN estimate) must not fail the request: the
decision is made by the uniform policy over the same eligible actions, marked as a
fallback, and the failure is reported on the decision for the caller to log and count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.actions import Action
from engine.errors import EngineError
from engine.features import Features
from engine.sampling import Pmf, normalise

SAFE_POLICY = "uniform"


class Ranker(Protocol):
    """The part of a policy a decision uses (policies.base.Policy adds learning)."""

    name: str

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        """The pmf over `eligible`, in its order, and a score per action, higher for an
        action the policy rates better: a ranking orders by probability, then by score
        (RegCB's pmf is one-hot, and the actions after the chosen one are still ranked by
        their estimated reward)."""
        ...


@dataclass(frozen=True, slots=True)
class Scored:
    pmf: Pmf
    scores: Pmf
    policy: str  # the policy that answered
    failure: str | None = None  # why the asked policy did not


def scored(policy: Ranker, context: Features, actions: Sequence[Action]) -> Scored:
    """The policy's normalised pmf and scores, or the safe policy's if it fails."""
    try:
        pmf, scores = policy.ranked(context, actions)
        return Scored(normalise(pmf), np.asarray(scores, dtype=np.float64), policy.name)
    except (EngineError, RuntimeError, ValueError) as exc:
        uniform = np.full(len(actions), 1.0 / len(actions))
        failure = f"policy {policy.name} failed: {exc}"
        return Scored(uniform, np.zeros(len(actions)), SAFE_POLICY, failure)
