"""Per catalog, the breaker between its model and its decisions, and the safe policy.

One serving process keeps one breaker per catalog (each process watches its own model
replica). `ranker` is what a decision asks: the replica's model behind the breaker, or a
refusing model while the replica cannot serve the catalog (its checkpoint was refused and
the training log is still replaying, or the saved model would not load).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from api.serving.replica import ModelReplica
from engine.breaker import Breaker
from engine.catalog import Catalog
from engine.decision import Decision
from engine.experiment import Arm, arm_model
from engine.failover import SafeRanker
from engine.policy import MODEL_ERRORS, Guarded, Ranker, Refusing

CAUSES = ("error", "breaker_open", "forced", "not_loaded")


class Failovers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.breakers: dict[str, Breaker] = {}
        self.guards: dict[str, Guarded] = {}
        self.counts: Counter[tuple[str, str]] = Counter()  # (catalog, cause) -> slots

    def breaker(self, catalog: Catalog, model: str | None = None) -> Breaker:
        """The breaker of the catalog's model, or of an arm's own `model`."""
        f = catalog.failover
        name = model or catalog.name
        b = self.breakers.get(name)
        if b is None:
            b = self.breakers[name] = Breaker(f.trip_after, f.cooldown_seconds)
        b.trip_after, b.cooldown_seconds = f.trip_after, f.cooldown_seconds  # follow edits
        return b

    def ranker(
        self, catalog: Catalog, replica: ModelReplica, arm: Arm | None = None
    ) -> tuple[Ranker, Ranker]:
        """The policy a decision of `catalog` (and of `arm`, in an experiment) asks, and
        its safe policy."""
        safe = SafeRanker(catalog.failover)
        if arm is not None and arm.rule is not None:  # a rule arm needs no model
            return SafeRanker(arm.rule, f"rule:{arm.rule.safe_policy}"), safe
        name = (
            catalog.name
            if arm is None or arm.kind == "catalog"
            else arm_model(catalog.name, arm.name)
        )
        why = replica.unavailable(catalog.name)
        if why is not None:
            return Refusing(catalog.learning.policy, why), safe
        try:
            model = (replica.arm_policy(catalog, arm) if arm else replica.policy(catalog)).policy
        except MODEL_ERRORS as exc:
            return Refusing(catalog.learning.policy, f"model could not be loaded: {exc}"), safe
        guard = self.guards.get(name)
        breaker, budget = self.breaker(catalog, name), catalog.failover.latency_budget_ms / 1000
        if guard is None or guard.model is not model:  # a new model: a new guard, same breaker
            guard = self.guards[name] = Guarded(model, breaker, budget, self.clock)
        guard.budget_seconds = budget  # follow catalog edits
        return guard, safe

    def count(self, catalog: str, decision: Decision) -> None:
        for f in decision.failures:
            self.counts[(catalog, f.cause)] += 1

    def force(self, catalog: Catalog, reason: str) -> None:
        self.breaker(catalog).force(reason, self.clock())

    def reset(self, catalog: Catalog) -> None:
        self.breaker(catalog).reset()

    def to_json(self, catalog: Catalog, replica: ModelReplica) -> dict[str, object]:
        guard = self.guards.get(catalog.name)
        return {
            "catalog": catalog.name,
            "settings": catalog.failover.to_json(),
            "breaker": self.breaker(catalog).to_json(self.clock()),
            "model": replica.unavailable(catalog.name) or "serving",
            "over_budget": guard.over_budget if guard else 0,
            "failovers": {c: self.counts[(catalog.name, c)] for c in CAUSES},
        }
