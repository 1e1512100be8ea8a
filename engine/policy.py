"""The policy step of a decision: what engine.decide asks of a policy, the guard that
watches the model's answers, and the safe answer when the model cannot give one.

A policy that raises (a broken model, a NaN estimate), that is not loaded, or whose
breaker is open (engine.breaker) must not fail the request: the catalog's safe policy
(engine.failover) decides over the same eligible actions, the slot is marked as a
fallback, and the reason is kept on the decision for the caller to log, count and answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.actions import Action
from engine.breaker import Breaker, Unavailable
from engine.errors import EngineError
from engine.features import Features
from engine.sampling import Pmf, normalise

# what a model may raise that a decision survives; anything else is a bug and surfaces
MODEL_ERRORS = (EngineError, RuntimeError, ValueError, ArithmeticError)


class Ranker(Protocol):
    """The part of a policy a decision uses (policies.base.Policy adds learning)."""

    @property
    def name(self) -> str: ...

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
    cause: str | None = None  # the failure's kind: error, breaker_open, forced, not_loaded


class Uniform:
    """Every eligible action equally likely: the safe policy when a catalog names none."""

    name = "uniform"

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        n = len(eligible)
        return np.full(n, 1.0 / n), np.zeros(n)


UNIFORM = Uniform()


def scored(
    policy: Ranker, context: Features, actions: Sequence[Action], safe: Ranker = UNIFORM
) -> Scored:
    """The policy's normalised pmf and scores, or the safe policy's if it cannot answer."""
    try:
        pmf, scores = policy.ranked(context, actions)
        return Scored(normalise(pmf), _finite(scores), policy.name)
    except Unavailable as exc:
        failure, cause = exc.detail, exc.cause
    except MODEL_ERRORS as exc:
        failure, cause = f"policy {policy.name} failed: {exc}", "error"
    pmf, scores = safe.ranked(context, actions)
    return Scored(normalise(pmf), _finite(scores), safe.name, failure, cause)


@dataclass
class Guarded:
    """A model asked through its breaker: it times each answer against the budget,
    checks it, and reports good and bad answers to the breaker. Raises Unavailable when
    the model is not asked or failed, so `scored` answers with the safe policy."""

    model: Ranker
    breaker: Breaker
    budget_seconds: float
    clock: Callable[[], float]  # monotonic seconds
    over_budget: int = 0  # answers used although over budget

    @property
    def name(self) -> str:
        return self.model.name

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        started = self.clock()
        self.breaker.check(started)
        try:
            pmf, scores = self.model.ranked(features, eligible)
            pmf, scores = normalise(pmf), _finite(scores)
        except MODEL_ERRORS as exc:
            self.breaker.bad(f"{type(exc).__name__}: {exc}", self.clock())
            raise Unavailable(f"policy {self.name} failed: {exc}", cause="error") from exc
        spent = self.clock() - started
        if spent > self.budget_seconds:
            self.over_budget += 1
            self.breaker.bad(
                f"answered in {spent * 1000:.2f} ms, over the latency budget of "
                f"{self.budget_seconds * 1000:g} ms",
                started + spent,
            )
        else:
            self.breaker.good()
        return pmf, scores


@dataclass(frozen=True, slots=True)
class Refusing:
    """A model that cannot be asked at all (not loaded): every answer is Unavailable."""

    name: str
    reason: str

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        raise Unavailable(self.reason, cause="not_loaded")


def _finite(scores: Sequence[float] | Pmf) -> Pmf:
    out = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise Unavailable(f"the policy scored an action {out!r}", cause="error")
    return out
