"""A catalog's failover settings and its safe policy: what answers when the model cannot.

The safe policy is a rule the marketer trusts without any learning: `uniform` (every
eligible action equally likely, which also keeps every action's probability above zero
for off-policy evaluation), `first` (the first eligible action in catalog order) or
`priority` (the first eligible action of the marketer's list, then the rest in catalog
order). The last two log probability 1 for what they show. engine.breaker decides when
the safe policy answers; the constraints have removed the ineligible actions before either
policy is asked, so a failover never shows what a rule forbids.

May import: the standard library, numpy, and engine.actions / errors / limits / policy's
Ranker types / sampling / validate.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np

from engine.actions import Action
from engine.errors import InvalidInput
from engine.features import Features
from engine.limits import Limits
from engine.sampling import Pmf
from engine.validate import as_number, as_object, known_ids, no_unknown, one_of

SAFE_POLICIES = ("uniform", "first", "priority")
# name -> (default, minimum, maximum)
BOUNDS: dict[str, tuple[float, float, float]] = {
    "latency_budget_ms": (50.0, 0.001, 60_000.0),
    "trip_after": (5, 1, 10_000),
    "cooldown_seconds": (30.0, 0.1, 86_400.0),
}


@dataclass(frozen=True, slots=True)
class Failover:
    """When a catalog's decisions leave the model, and for what."""

    safe_policy: str = "uniform"
    priority: tuple[str, ...] = ()  # the order of `priority`, action ids
    latency_budget_ms: float = BOUNDS["latency_budget_ms"][0]  # per policy answer
    trip_after: int = int(BOUNDS["trip_after"][0])  # bad answers in a row that open the breaker
    cooldown_seconds: float = BOUNDS["cooldown_seconds"][0]  # open this long, then one try

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "safe_policy": self.safe_policy,
            "latency_budget_ms": self.latency_budget_ms,
            "trip_after": self.trip_after,
            "cooldown_seconds": self.cooldown_seconds,
        }
        if self.safe_policy == "priority":
            out["priority"] = list(self.priority)
        return out


DEFAULT_FAILOVER = Failover()


def parse_failover(body: object, action_ids: Sequence[str], limits: Limits) -> Failover:
    """Validate a catalog's `failover` object; every error names its field."""
    if body is None:
        return DEFAULT_FAILOVER
    obj = as_object(body, "failover")
    no_unknown(obj, {"safe_policy", "priority", *BOUNDS}, "failover.")
    safe = one_of(obj.get("safe_policy", "uniform"), SAFE_POLICIES, "failover.safe_policy")
    priority = _priority(obj.get("priority"), safe, known_ids(action_ids))
    values: dict[str, float] = {}
    for name, (default, low, high) in BOUNDS.items():
        where = f"failover.{name}"
        value = as_number(obj.get(name, default), limits, where)
        if not low <= value <= high:
            raise InvalidInput(f"{where} must be between {low:g} and {high:g}", field=where)
        if name == "trip_after" and value != int(value):
            raise InvalidInput(f"{where} must be a whole number", field=where)
        values[name] = value
    return Failover(
        safe_policy=safe,
        priority=priority,
        latency_budget_ms=values["latency_budget_ms"],
        trip_after=int(values["trip_after"]),
        cooldown_seconds=values["cooldown_seconds"],
    )


def _priority(raw: object, safe: str, known: Container[str]) -> tuple[str, ...]:
    if raw is None:
        if safe == "priority":
            raise InvalidInput(
                "failover.priority is required when safe_policy is priority: the action ids "
                "in the order the safe policy prefers them",
                field="failover.priority",
            )
        return ()
    if safe != "priority":
        raise InvalidInput(
            f"failover.priority applies only to safe_policy priority, not {safe}",
            field="failover.priority",
        )
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            "failover.priority must be a non-empty array of action ids", field="failover.priority"
        )
    out: list[str] = []
    for i, action_id in enumerate(raw):
        where = f"failover.priority[{i}]"
        if not isinstance(action_id, str) or action_id not in known:
            raise InvalidInput(
                f"{where} {action_id!r} is not an action of the catalog", field=where
            )
        if action_id in out:
            raise InvalidInput(f"{where} {action_id!r} appears twice", field=where)
        out.append(action_id)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SafeRanker:
    """The safe policy as engine.policy.Ranker: a pmf and scores over the eligible actions."""

    failover: Failover
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"safe:{self.failover.safe_policy}")

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        n = len(eligible)
        if self.failover.safe_policy == "uniform":
            return np.full(n, 1.0 / n), np.zeros(n)
        order = self._order(eligible)
        scores = np.empty(n)
        scores[order] = -np.arange(n, dtype=np.float64)  # earlier in the order scores higher
        pmf = np.zeros(n)
        pmf[order[0]] = 1.0
        return pmf, scores

    def _order(self, eligible: Sequence[Action]) -> list[int]:
        """Indices of `eligible` in the safe policy's order: the priority list's actions
        first (in its order), then the others as they came (catalog order)."""
        if self.failover.safe_policy == "first":
            return list(range(len(eligible)))
        rank = {a: k for k, a in enumerate(self.failover.priority)}
        last = len(rank)
        return sorted(range(len(eligible)), key=lambda i: (rank.get(eligible[i].id, last), i))
