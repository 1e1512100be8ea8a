"""Off-policy evaluation of candidate policies on a catalog's logged decisions.

An evaluation replays the training log (each decision joined with its reward, its exact
logged pmf and the features as used) in the order it was decided, asks every candidate
what it would have done on each row, and folds the rows into the estimators' tallies
(engine.ope) chunk by chunk, so a day of logs needs bounded memory.

Candidates (`parse_candidates`):

- `rule`: `uniform`, `first` or `priority` (as engine.failover's safe policies);
- `constraints`: the catalog's constraints replaced by these, with the logged policy kept:
  the counterfactual of a rule or schedule change. Rules and schedules are re-evaluated
  on each row's context and time; caps, inventory and the request's own narrowing are
  held as logged (their inputs, a user's exposures and the stock of every SKU, are not in
  the log). The candidate shows the logged pmf renormalised over what the new constraints
  keep. An action the new constraints would *add* had probability 0 in the log: the row's
  mass on it is unsupported, and an evaluation that needs it is refused with the reason;
- `learning`: a model with these learning settings, trained progressively on the log
  (each row predicted by the model of the rows before it, then learned): what the
  settings would have earned had they run (the policy adapter lives with the job, since
  the engine does not run VW).

Doubly robust uses a predictable reward model: per catalog action, the shrunk mean of the
rewards of the rows before (no row is predicted by a model that saw its reward).

May import: the standard library, numpy and the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from engine.actions import Action
from engine.catalog import Catalog
from engine.constraints import Constraints, apply
from engine.constraintspec import parse_constraints
from engine.errors import InvalidInput, LimitExceeded
from engine.failover import SAFE_POLICIES, Failover, SafeRanker, parse_failover
from engine.learning import Learning, parse_learning
from engine.limits import Limits
from engine.ope import Report, Tally, report, tally_pmf
from engine.records import TrainingExample
from engine.sampling import Pmf
from engine.validate import as_number, as_object, nested, no_unknown

MAX_CANDIDATES = 8
CHUNK = 4096
PRIOR_WEIGHT = 1.0  # the reward model's pseudo-rows at the overall mean, per action


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    kind: str  # rule | constraints | learning
    rule: Failover | None = None
    constraints: Constraints | None = None
    learning: Learning | None = None
    source: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Row:
    """One logged decision as the candidates see it."""

    example: TrainingExample
    actions: list[Action]  # the eligible actions, with the features joined as used
    catalog: Catalog  # the version it was decided with (over the request's own actions)


class RowPolicy(Protocol):
    def pmf(self, row: Row) -> Pmf:
        """The candidate's probabilities of the row's eligible actions; what they lack of
        1 is its mass on actions the logger could not show (unsupported)."""
        ...

    def after(self, row: Row) -> None:
        """Called once the row was scored: a learning candidate learns it here."""
        ...


@dataclass(frozen=True, slots=True)
class RulePolicy:
    rule: Failover

    def pmf(self, row: Row) -> Pmf:
        pmf, _ = SafeRanker(self.rule).ranked(row.example.context, row.actions)
        return pmf

    def after(self, row: Row) -> None:
        return None


class ConstraintsPolicy:
    """The logged policy under other rules and schedules (module docstring)."""

    def __init__(self, constraints: Constraints) -> None:
        self.changed = _rules_and_schedules(constraints)
        self.before: dict[int, Constraints] = {}  # per catalog version, built once

    def pmf(self, row: Row) -> Pmf:
        ex, catalog = row.example, row.catalog
        before = self.before.get(catalog.version)
        if before is None:
            before = self.before[catalog.version] = _rules_and_schedules(catalog.constraints)
        universe = catalog.actions
        old = {a.id for a in apply(before, universe, ex.context, ex.decided_ts, None, {}).actions}
        new = {
            a.id for a in apply(self.changed, universe, ex.context, ex.decided_ts, None, {}).actions
        }
        logged = np.asarray(ex.pmf, dtype=np.float64)
        keep = np.array([a in new for a in ex.eligible])
        added = len(new - old)  # shown only under the new constraints: never logged
        kept = logged * keep
        total = float(kept.sum())
        if total <= 0.0:  # nothing the logger showed survives: the log cannot say
            return np.zeros(len(ex.eligible))
        shown = int(keep.sum())
        unsupported = added / (shown + added) if added else 0.0  # as if spread evenly
        out: Pmf = kept / total * (1.0 - unsupported)
        return out

    def after(self, row: Row) -> None:
        return None


def _rules_and_schedules(c: Constraints) -> Constraints:
    return replace(c, caps=(), inventory=None, pinned=None)


@dataclass
class RewardModel:
    """Per catalog action, the mean reward of the rows before, shrunk to the overall mean."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    n: int = 0

    def predict(self, ids: Sequence[str]) -> list[float]:
        base = self.total / self.n if self.n else 0.0
        return [
            (self.sums.get(a, 0.0) + PRIOR_WEIGHT * base) / (self.counts.get(a, 0) + PRIOR_WEIGHT)
            for a in ids
        ]

    def learn(self, action: str, reward: float) -> None:
        self.sums[action] = self.sums.get(action, 0.0) + reward
        self.counts[action] = self.counts.get(action, 0) + 1
        self.total += reward
        self.n += 1


class Evaluation:
    """Folds rows, in decision order, into one tally per candidate."""

    def __init__(self, policies: dict[str, RowPolicy], alpha: float = 0.05) -> None:
        self.policies = policies
        self.alpha = alpha
        self.tallies = {name: Tally() for name in policies}
        self.rewards = RewardModel()
        self.rows = 0
        self._chunk: dict[str, list[Pmf]] = {name: [] for name in policies}
        self._logged: list[tuple[Pmf, int, float, float, list[float]]] = []

    def add(self, row: Row) -> None:
        ex = row.example
        qhat = self.rewards.predict(ex.eligible)  # before this row's reward
        for name, policy in self.policies.items():
            self._chunk[name].append(policy.pmf(row))
            policy.after(row)
        self._logged.append(
            (np.asarray(ex.pmf, dtype=np.float64), ex.chosen, ex.probability, ex.reward, qhat)
        )
        self.rewards.learn(ex.eligible[ex.chosen], ex.reward)
        self.rows += 1
        if len(self._logged) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._logged:
            return
        width = max(len(p) for p, *_ in self._logged)
        n = len(self._logged)
        logged, qhat = np.zeros((n, width)), np.zeros((n, width))
        chosen = np.array([c for _, c, *_ in self._logged])
        p_log = np.array([p for _, _, p, *_ in self._logged])
        reward = np.array([r for *_, r, _ in self._logged])
        for i, (pmf, *_, q) in enumerate(self._logged):
            logged[i, : len(pmf)] = pmf
            qhat[i, : len(q)] = q
        for name, answers in self._chunk.items():
            candidate = np.zeros((n, width))
            for i, pmf in enumerate(answers):
                candidate[i, : len(pmf)] = pmf
            # the candidate's unsupported mass is what its row lacks of 1 (tally_pmf)
            t = tally_pmf(reward, p_log, chosen, candidate, qhat=qhat, logged_pmf=logged)
            self.tallies[name] = self.tallies[name] + t
            answers.clear()
        self._logged.clear()

    def reports(self) -> dict[str, Report]:
        self.flush()
        return {name: report(t, alpha=self.alpha) for name, t in self.tallies.items()}


def parse_candidates(body: object, catalog: Catalog, limits: Limits) -> tuple[Candidate, ...]:
    """Validate the candidates of an evaluation request; errors name their field."""
    if not isinstance(body, list) or not body:
        raise InvalidInput("candidates must be a non-empty array", field="candidates")
    if len(body) > MAX_CANDIDATES:
        raise LimitExceeded(
            f"candidates has {len(body)} entries, more than the limit of {MAX_CANDIDATES}",
            field="candidates",
        )
    ids = [a.id for a in catalog.actions]
    out: list[Candidate] = []
    for i, raw in enumerate(body):
        candidate = _candidate(raw, f"candidates[{i}]", ids, limits)
        if any(c.name == candidate.name for c in out):
            raise InvalidInput(
                f"candidates[{i}].name {candidate.name!r} appears twice",
                field=f"candidates[{i}].name",
            )
        out.append(candidate)
    return tuple(out)


def _candidate(raw: object, where: str, ids: list[str], limits: Limits) -> Candidate:
    obj = as_object(raw, where)
    no_unknown(obj, {"name", "rule", "priority", "constraints", "learning"}, f"{where}.")
    name = obj.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise InvalidInput(f"{where}.name must be 1-64 characters", field=f"{where}.name")
    kinds = [k for k in ("rule", "constraints", "learning") if k in obj]
    if len(kinds) != 1:
        raise InvalidInput(f"{where} needs exactly one of rule, constraints, learning", field=where)
    source = dict(obj)
    if kinds == ["rule"]:
        if obj["rule"] not in SAFE_POLICIES:
            raise InvalidInput(
                f"{where}.rule must be one of {', '.join(SAFE_POLICIES)}", field=f"{where}.rule"
            )
        spec = {
            "safe_policy": obj["rule"],
            **({"priority": obj["priority"]} if "priority" in obj else {}),
        }
        rule = nested(lambda: parse_failover(spec, ids, limits), where, "failover.")
        return Candidate(name, "rule", rule=rule, source=source)
    if kinds == ["constraints"]:
        c = nested(lambda: parse_constraints(obj["constraints"], ids, limits), where)
        return Candidate(name, "constraints", constraints=c, source=source)
    learning = nested(lambda: parse_learning(obj["learning"], limits), where)
    return Candidate(name, "learning", learning=learning, source=source)


def parse_window(body: dict[str, object], limits: Limits, now: float) -> tuple[float, float]:
    """`since` and `until` (epoch seconds); by default the last 24 hours."""
    since = as_number(body.get("since", now - 86_400.0), limits, "since")
    until = as_number(body.get("until", now), limits, "until")
    if not since < until:
        raise InvalidInput(f"since ({since:g}) must be before until ({until:g})", field="since")
    return since, until
