"""The one interface every policy implements, and what it learns from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.actions import Action
from engine.features import Features
from engine.policy import Ranker
from engine.sampling import Pmf


@dataclass(frozen=True, slots=True)
class Example:
    """One logged decision with its joined reward, ready to learn from."""

    context: Features
    actions: Sequence[Action]
    chosen: int
    probability: float
    reward: float


class Policy(Ranker, Protocol):
    """A policy engine.decide can ask (`ranked`), that learns and can be saved."""

    learned: int

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        """A pmf over `eligible`, in its order; entries are > 0 where the policy explores."""
        ...

    def learn(self, example: Example) -> None: ...

    def save(self) -> bytes:
        """The model as bytes (empty for a stateless policy)."""
        ...

    def close(self) -> None: ...
