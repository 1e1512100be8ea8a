"""The ground truth the tour measures the API against, from the storefront's click model.

Every decision the tour sends is kept as a `Shown`: the visitor's segment, the pmf the
API answered (over the eligible actions) and what was shown. Its true value is the
click model's expectation under that pmf, so the truth of an arm, of a candidate
evaluated on the log or of apprentice mode's policy is computed on the very decisions
the API saw, not on a fresh sample:

- an arm's mean over its first n decisions (what the live results estimate at n);
- a priority rule candidate: the click rate of its banner on each logged visitor;
- a `SegmentRule` (a constraints candidate that shows one segment only one banner):
  the logged pmf renormalised over what the rule keeps, as the evaluation defines it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.storefront import Environment


@dataclass(frozen=True, slots=True)
class Shown:
    """One decision as the tour keeps it."""

    segment: str
    pmf: Mapping[str, float]  # action id -> probability, over the eligible actions
    shown: str
    arm: str = ""
    clicked: bool = False
    model_choice: str | None = None  # apprentice mode: what the policy drew, not shown


def expected(env: Environment, row: Shown) -> float:
    """The click probability of the row's decision before it was drawn."""
    return math.fsum(p * ctr(env, row.segment, a) for a, p in row.pmf.items())


def ctr(env: Environment, segment: str, action: str) -> float:
    return env.ctr[env.segment_names.index(segment)][env.action_ids.index(action)]


def overall(env: Environment) -> list[tuple[str, float]]:
    """Every banner with its click rate over the whole traffic, best first."""
    values = env.weights() @ env.matrix()
    order = np.argsort(-values, kind="stable")
    return [(env.action_ids[int(j)], float(values[int(j)])) for j in order]


def marketer_banner(env: Environment) -> str:
    """A marketer's plausible guess: the banner that clicks best over all visitors."""
    return overall(env)[0][0]


def rule_value(env: Environment, banner: str, floor: float) -> float:
    """The population value of always showing `banner`, less the exploration floor's
    share spread evenly over every banner (the catalog applies it to a rule arm too)."""
    k = len(env.actions)
    spread = floor / k
    pmf = {a: spread for a in env.action_ids}
    pmf[banner] += 1.0 - floor
    rows = [Shown(s, pmf, banner) for s in env.segment_names]
    return math.fsum(w * expected(env, r) for w, r in zip(env.weights(), rows, strict=True))


def running_mean(values: Sequence[float], n: int) -> float:
    """The mean of the first n values (nan when n is 0)."""
    n = min(n, len(values))
    return math.fsum(values[:n]) / n if n > 0 else math.nan


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """A rule change: visitors of `segment` are shown only `action`."""

    name: str
    segment: str
    action: str

    def constraints(self, floor: float) -> dict[str, object]:
        """The catalog's constraints with this rule added (the candidate's body)."""
        rule = {
            "name": self.name,
            "when": f"context.user.segment == '{self.segment}'",
            "require": f"action.id == '{self.action}'",
        }
        return {"exploration_floor": floor, "rules": [rule]}

    def truth(self, env: Environment, rows: Sequence[Shown]) -> float:
        """The logged pmf renormalised over what the rule keeps, on every logged row; nan
        when a row of the segment never had the action (the log cannot say)."""
        values = []
        for row in rows:
            if row.segment != self.segment:
                values.append(expected(env, row))
            elif row.pmf.get(self.action, 0.0) > 0.0:
                values.append(ctr(env, row.segment, self.action))
            else:
                return math.nan
        return math.fsum(values) / len(values) if values else math.nan


def priority_truth(env: Environment, banner: str, rows: Sequence[Shown]) -> float:
    """Always `banner`, on every logged visitor."""
    if not rows:
        return math.nan
    return math.fsum(ctr(env, r.segment, banner) for r in rows) / len(rows)
