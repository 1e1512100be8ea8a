"""Live experiment results: per arm, decisions, reward sum and mean with an anytime-valid
interval, the difference to control with its interval, and the guardrail's verdicts.

Each learned example (engine.records.TrainingExample, the decision joined with its
reward) is observed once, by the arm that decided it. Every arm's mean has a confidence
sequence (engine.sequential) at alpha / 2, so the difference of any arm and control is
valid at alpha (Bonferroni) and every interval may be read after every decision: a
marketer who looks each day is not fooled by peeking. Rewards are clipped to the
experiment's declared range (the sequence needs bounds) and the clipped ones counted.

The guardrail stops an arm whose difference to control is below the marketer's
`min_difference` with confidence (the difference's upper bound under it), once both have
`min_decisions`; its traffic then goes to the other arms (engine.experiment.assign). A
stop is kept until the arm is marked `keep_running`.

The state is a pure function of the examples observed, so every serving process that
follows the training log reports the same numbers; it is saved in the replica's
checkpoint (`encode` / `decode`).

May import: the standard library, numpy and engine.errors / experiment / records / sequential.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from engine.errors import CorruptCheckpoint, InvalidInput
from engine.experiment import Experiment
from engine.records import TrainingExample
from engine.sequential import Difference, Mean

SERIES_GROWTH = 1.1  # a plotted point each time an arm's decisions grow by 10%


@dataclass
class ArmResults:
    mean: Mean
    clipped: int = 0
    series: list[tuple[float, int, float, float, float]] = field(default_factory=list)
    next_point: int = 1

    def observe(self, reward: float, ts: float) -> None:
        lo, hi = self.mean.lo, self.mean.hi
        if not lo <= reward <= hi:
            self.clipped += 1
            reward = min(max(reward, lo), hi)
        self.mean = self.mean.add(reward)
        if self.mean.t >= self.next_point:
            i = self.mean.interval()
            self.series.append((ts, i.n, i.mean, i.low, i.high))
            self.next_point = max(self.mean.t + 1, math.ceil(self.mean.t * SERIES_GROWTH))


Key = tuple[str, str]  # (catalog, experiment)


class Results:
    def __init__(self) -> None:
        self.arms: dict[Key, dict[str, ArmResults]] = {}
        self.stops: dict[Key, dict[str, dict[str, object]]] = {}  # arm -> why and when

    def observe(self, ex: TrainingExample, experiment: Experiment | None) -> None:
        """Count one joined decision for the arm that made it, if it ran in `experiment`."""
        if experiment is None or ex.arm is None or ex.experiment != experiment.name:
            return
        if ex.arm not in {a.name for a in experiment.arms}:
            return  # an arm since removed from the experiment
        key = (ex.catalog, experiment.name)
        arms = self.arms.setdefault(key, {})
        if ex.arm not in arms:
            lo, hi = experiment.reward_range
            arms[ex.arm] = ArmResults(Mean(lo, hi, experiment.alpha / 2.0))
        arms[ex.arm].observe(ex.reward, ex.emitted_ts)
        self._guard(key, experiment, ex.emitted_ts)

    def _guard(self, key: Key, experiment: Experiment, ts: float) -> None:
        rail = experiment.guardrail
        arms = self.arms[key]
        control = arms.get(experiment.control)
        if rail is None or control is None or control.mean.t < rail.min_decisions:
            return
        stops = self.stops.setdefault(key, {})
        for arm in experiment.arms:
            results = arms.get(arm.name)
            if (
                arm.name == experiment.control
                or arm.name in stops
                or arm.keep_running
                or results is None
                or results.mean.t < rail.min_decisions
            ):
                continue
            diff = Difference(results.mean, control.mean).interval()
            if diff.high < rail.min_difference:
                stops[arm.name] = {
                    "at": ts,
                    "decisions": results.mean.t,
                    "difference": diff.to_json(),
                    "reason": (
                        f"difference to control {diff.mean:+.4g} with upper bound "
                        f"{diff.high:+.4g}, below the guardrail's {rail.min_difference:+g}"
                    ),
                }

    def stopped(self, catalog: str, experiment: Experiment) -> frozenset[str]:
        """The arms the guardrail stopped that are not marked keep_running."""
        stops = self.stops.get((catalog, experiment.name), {})
        return frozenset(a.name for a in experiment.arms if a.name in stops and not a.keep_running)

    def stopped_json(self, catalog: str, experiment: Experiment) -> dict[str, object]:
        stops = self.stops.get((catalog, experiment.name), {})
        return {a: why for a, why in stops.items() if a in self.stopped(catalog, experiment)}

    def report(self, catalog: str, experiment: Experiment) -> dict[str, object]:
        """Per arm: decisions, reward sum, mean and interval, and the difference to control."""
        key = (catalog, experiment.name)
        arms = self.arms.get(key, {})
        lo, hi = experiment.reward_range
        empty = ArmResults(Mean(lo, hi, experiment.alpha / 2.0))
        control = arms.get(experiment.control, empty)
        stopped = self.stopped(catalog, experiment)
        rows = []
        for arm in experiment.arms:
            r = arms.get(arm.name, empty)
            i = r.mean.interval()
            row: dict[str, object] = {
                "arm": arm.name,
                "policy": arm.to_json()["policy"],
                "share": arm.share,
                "status": _status(arm.name, arm.paused, stopped),
                "decisions": i.n,
                "reward_sum": i.mean * i.n,
                "mean": i.mean,
                "low": i.low,
                "high": i.high,
                "clipped": r.clipped,
                "series": [list(p) for p in r.series],
            }
            if arm.name != experiment.control:
                row["difference"] = Difference(r.mean, control.mean).interval().to_json()
            rows.append(row)
        return {
            "catalog": catalog,
            "experiment": experiment.name,
            "control": experiment.control,
            "alpha": experiment.alpha,
            "reward_range": [lo, hi],
            "interval": (
                "anytime-valid confidence sequence (Waudby-Smith & Ramdas 2023), each arm at "
                "alpha/2 so every difference to control holds at alpha; valid however often read"
            ),
            "arms": rows,
            "stopped": self.stopped_json(catalog, experiment),
        }

    # -- checkpoint ---------------------------------------------------------------------

    def encode(self) -> bytes:
        return json.dumps(
            [
                {
                    "catalog": c,
                    "experiment": e,
                    "arms": {
                        a: {
                            "mean": r.mean.to_json(),
                            "clipped": r.clipped,
                            "series": r.series,
                            "next_point": r.next_point,
                        }
                        for a, r in arms.items()
                    },
                    "stops": self.stops.get((c, e), {}),
                }
                for (c, e), arms in self.arms.items()
            ]
        ).encode()

    @classmethod
    def decode(cls, blob: bytes) -> Results:
        out = cls()
        try:
            for item in json.loads(blob):
                key = (str(item["catalog"]), str(item["experiment"]))
                out.arms[key] = {
                    str(a): ArmResults(
                        Mean.from_json(r["mean"]),
                        int(r["clipped"]),
                        [_point(p) for p in r["series"]],
                        int(r["next_point"]),
                    )
                    for a, r in item["arms"].items()
                }
                out.stops[key] = dict(item["stops"])
        except (ValueError, KeyError, TypeError, IndexError, InvalidInput) as exc:
            raise CorruptCheckpoint(f"experiment results unreadable: {exc}") from exc
        return out


def _point(p: list[float]) -> tuple[float, int, float, float, float]:
    return float(p[0]), int(p[1]), float(p[2]), float(p[3]), float(p[4])


def _status(arm: str, paused: bool, stopped: frozenset[str]) -> str:
    if arm in stopped:
        return "stopped"
    return "paused" if paused else "running"
