"""Uniform random over the eligible actions: the safe fallback and the baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.actions import Action
from engine.features import Features
from engine.sampling import Pmf
from policies.base import Example


class Uniform:
    name = "uniform"

    def __init__(self) -> None:
        self.learned = 0

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        return np.full(len(eligible), 1.0 / len(eligible))

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        return self.distribution(features, eligible), np.zeros(len(eligible))

    def learn(self, example: Example) -> None:
        self.learned += 1

    def save(self) -> bytes:
        return b""

    def close(self) -> None:
        return None
