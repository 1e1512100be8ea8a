"""What apprentice mode reports: how often the policy would have chosen what the
storefront chose, and what the policy would have earned against the baseline.

In apprentice (and logging) mode the storefront's own choice, the baseline, is shown with
probability 1 and the policy's draw is logged beside it. The baseline's mean reward is
measured directly. The policy's value is only partly identified: where it agreed with the
baseline its reward is the one observed; where it did not, the log says nothing (the
baseline gave its choice probability 0). So the report gives the range every value
consistent with the log lies in: the observed reward where they agree plus the lowest,
or the highest, reward of the declared range where they do not. Each of these means has
an anytime-valid interval (engine.sequential), each at alpha / 3.

May import: the standard library and engine.errors / records / sequential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.errors import CorruptCheckpoint, InvalidInput
from engine.records import TrainingExample
from engine.sequential import Mean


@dataclass
class Apprentice:
    """One catalog's apprentice tallies, over rewards clipped to [lo, hi]."""

    agreed: Mean  # 1 when the policy's draw was the baseline
    baseline: Mean  # the reward of the baseline, as shown
    low: Mean  # the policy's reward where it agreed, else lo
    high: Mean  # the policy's reward where it agreed, else hi

    @classmethod
    def start(cls, lo: float, hi: float, alpha: float = 0.05) -> Apprentice:
        a = alpha / 3.0
        return cls(Mean(0.0, 1.0, a), Mean(lo, hi, a), Mean(lo, hi, a), Mean(lo, hi, a))

    def observe(self, ex: TrainingExample) -> None:
        lo, hi = self.baseline.lo, self.baseline.hi
        reward = min(max(ex.reward, lo), hi)
        agreed = ex.model_choice == ex.eligible[ex.chosen]
        self.agreed = self.agreed.add(float(agreed))
        self.baseline = self.baseline.add(reward)
        self.low = self.low.add(reward if agreed else lo)
        self.high = self.high.add(reward if agreed else hi)

    def report(self) -> dict[str, object]:
        agreed, baseline = self.agreed.interval(), self.baseline.interval()
        low, high = self.low.interval(), self.high.interval()
        return {
            "decisions": agreed.n,
            "agreement": agreed.to_json(),
            "baseline_reward": baseline.to_json(),
            "policy_reward_range": {"low": low.low, "high": high.high},
            "verdict": _verdict(low.low, high.high, baseline.low, baseline.high),
        }

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k).to_json() for k in ("agreed", "baseline", "low", "high")}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Apprentice:
        try:
            return cls(*(Mean.from_json(data[k]) for k in ("agreed", "baseline", "low", "high")))  # type: ignore[arg-type]
        except (KeyError, TypeError, InvalidInput) as exc:
            raise CorruptCheckpoint(f"apprentice tallies unreadable: {exc}") from exc


def _verdict(low: float, high: float, base_low: float, base_high: float) -> str:
    where = "whatever it would have earned where it disagreed"
    if low > base_high:
        return f"the policy earns more than the baseline, {where}"
    if high < base_low:
        return f"the policy earns less than the baseline, {where}"
    return "undecided: go online (or run an experiment) to learn what its disagreements earn"


class ApprenticeBook:
    """Per catalog, the apprentice tallies; saved in the replica's checkpoint."""

    def __init__(self) -> None:
        self.catalogs: dict[str, Apprentice] = {}

    def observe(self, ex: TrainingExample, reward_range: tuple[float, float]) -> None:
        if ex.model_choice is None:
            return
        book = self.catalogs.get(ex.catalog)
        if book is None:
            book = self.catalogs[ex.catalog] = Apprentice.start(*reward_range)
        book.observe(ex)

    def report(self, catalog: str) -> dict[str, object] | None:
        book = self.catalogs.get(catalog)
        return book.report() if book else None

    def encode(self) -> bytes:
        return json.dumps({c: a.to_json() for c, a in self.catalogs.items()}).encode()

    @classmethod
    def decode(cls, blob: bytes) -> ApprenticeBook:
        out = cls()
        try:
            raw = json.loads(blob)
        except ValueError as exc:
            raise CorruptCheckpoint(f"apprentice tallies unreadable: {exc}") from exc
        if not isinstance(raw, dict):
            raise CorruptCheckpoint("apprentice tallies unreadable: not an object")
        out.catalogs = {str(c): Apprentice.from_json(a) for c, a in raw.items()}
        return out
