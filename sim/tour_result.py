"""What a tour measured (`Tour`), beside the simulator's truth, as JSON and in words.

One part per stage: the A/B's results read every window (`Sample`) and its final
numbers (`ABResult`), the evaluation's estimates per candidate (`EvaluationResult`),
apprentice mode's report (`ApprenticeResult`) and the forced failover's counts
(`FailoverResult`). Every value the API reported sits beside the truth computed from the
click model on the same decisions (sim.tour_truth).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METHODS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int = 0

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Interval:
        n = raw.get("n", raw.get("decisions", 0))
        return cls(float(raw["mean"]), float(raw["low"]), float(raw["high"]), int(n))


@dataclass(frozen=True)
class Sample:
    """One read of `/experiment/results` during the A/B."""

    sent: int  # decisions answered when it was read
    seconds: float  # since the A/B's first decision
    arms: dict[str, Interval]
    truth: dict[str, float]  # each arm's true mean over the decisions the results hold
    difference: dict[str, Interval]  # challenger -> its difference to control
    difference_truth: dict[str, float]


@dataclass(frozen=True)
class ABResult:
    experiment: str
    control: str
    policies: dict[str, object]  # arm -> its policy, as the API shows it
    marketer_banner: str
    decisions: int
    clicks: int  # rewards posted
    reward_statuses: dict[str, int]  # how the API answered them: accepted, late
    rewards_learned: int  # the results' reward sums: the clicks the arms' means hold
    elapsed_s: float
    samples: list[Sample]
    final: Sample  # read once every decision was learned
    rule_value: float  # the marketer's rule over the whole traffic (with the floor)
    oracle: float  # every segment shown its best banner
    covered: dict[str, list[int]]  # arm or difference -> [samples covering the truth, samples]
    svg: str | None = None  # where the API's own results.svg was saved


@dataclass(frozen=True)
class Estimate:
    supported: bool
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    ess: float = math.nan
    max_weight: float = math.nan
    reason: str | None = None

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Estimate:
        if not raw.get("supported"):
            return cls(False, reason=str(raw.get("reason") or "refused without a reason"))
        return cls(
            True,
            float(raw["estimate"]),
            float(raw["low"]),
            float(raw["high"]),
            float(raw.get("ess", math.nan)),
            float(raw.get("max_weight", math.nan)),
        )


@dataclass(frozen=True)
class CandidateResult:
    name: str
    kind: str
    spec: dict[str, object]
    truth: float
    estimates: dict[str, Estimate]  # ips, snips, dr


@dataclass(frozen=True)
class EvaluationResult:
    state: str
    rows: int
    logged_decisions: int  # decisions of the window the tour sent
    seconds: float  # the job's own time
    waited_s: float  # from POST to its result
    logged: Estimate  # the logging policy's own value, as the job measured it
    logged_truth: float
    candidates: list[CandidateResult]
    error: str | None = None


@dataclass(frozen=True)
class ApprenticeResult:
    decisions: int
    baseline: str
    agreement: Interval | None
    baseline_reward: Interval | None
    policy_range: tuple[float, float] | None
    verdict: str | None
    truth_agreement: float  # how often the policy's draw was the baseline (the tour's count)
    truth_baseline: float  # the click model's rate of the baseline shown
    truth_policy: float  # the click model's rate of the policy's own draws


@dataclass(frozen=True)
class FailoverResult:
    reason: str
    sent: int
    answered: int  # 200
    flagged: int  # 200, fallback true, with a fallback_reason
    statuses: dict[str, int]
    policies: dict[str, int]
    reasons: dict[str, int]
    counted: int  # the API's own count of forced failovers over the drill
    breaker: str  # its state while forced
    after_sent: int  # decisions once back on auto
    after_flagged: int
    after_breaker: str


@dataclass(frozen=True)
class Tour:
    env: str
    catalog: str
    seed: int
    elapsed_s: float
    ab: ABResult
    evaluation: EvaluationResult
    apprentice: ApprenticeResult
    failover: FailoverResult
    settings: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {k: _finite(v) for k, v in dataclasses.asdict(self).items()}


def _finite(value: object) -> object:
    """NaN and infinities as null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def summary(tour: Tour) -> str:
    return "\n".join(
        [
            *_ab_lines(tour.ab),
            *_evaluation_lines(tour.evaluation),
            *_apprentice_lines(tour.apprentice),
            *_failover_lines(tour.failover),
            f"tour: {tour.elapsed_s:.0f} s",
        ]
    )


def _ab_lines(ab: ABResult) -> list[str]:
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(ab.reward_statuses.items()))
    lines = [
        f"A/B {ab.experiment}: {ab.decisions} decisions in {ab.elapsed_s:.1f} s; "
        f"'{ab.control}' (the default VW policy) vs a marketer's rule (always "
        f"{ab.marketer_banner})",
        f"  {ab.clicks} clicks posted as rewards (the API answered {statuses or 'none'}); "
        f"the results hold {ab.rewards_learned}",
    ]
    for arm, i in ab.final.arms.items():
        truth = ab.final.truth[arm]
        lines.append(
            f"  {arm}: {i.mean:.3f} [{i.low:.3f}, {i.high:.3f}] over {i.n}; true {truth:.3f}"
            f" ({_covered(ab.covered[arm])})"
        )
    for arm, d in ab.final.difference.items():
        truth = ab.final.difference_truth[arm]
        lines.append(
            f"  {arm} - {ab.control}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]; true "
            f"{truth:+.3f} ({_covered(ab.covered[f'{arm} - {ab.control}'])})"
        )
    lines.append(
        f"  oracle {ab.oracle:.3f}; the marketer's rule over all traffic {ab.rule_value:.3f}"
    )
    return lines


def _covered(counts: list[int]) -> str:
    return f"interval held the truth at {counts[0]} of {counts[1]} reads"


def _evaluation_lines(ev: EvaluationResult) -> list[str]:
    if ev.state != "done":
        return [f"evaluation {ev.state}: {ev.error}"]
    lines = [
        f"evaluation: {ev.rows} rows of {ev.logged_decisions} decisions in {ev.seconds:.1f} s "
        f"(answered after {ev.waited_s:.1f} s); the log's own value "
        f"{_estimate(ev.logged)}, true {ev.logged_truth:.3f}"
    ]
    for c in ev.candidates:
        lines.append(f"  {c.name} ({c.kind}): true {c.truth:.3f}")
        lines.extend(f"    {m}: {_estimate(c.estimates[m])}" for m in METHODS)
    return lines


def _estimate(e: Estimate) -> str:
    if not e.supported:
        return f"refused: {e.reason}"
    ess = f", ESS {e.ess:.0f}" if math.isfinite(e.ess) else ""
    if math.isfinite(e.max_weight):
        ess += f", largest weight {e.max_weight:.0f}"
    return f"{e.estimate:.3f} [{e.low:.3f}, {e.high:.3f}]{ess}"


def _apprentice_lines(ap: ApprenticeResult) -> list[str]:
    if ap.agreement is None or ap.baseline_reward is None or ap.policy_range is None:
        return [f"apprentice: {ap.decisions} decisions, no report"]
    a, b, (lo, hi) = ap.agreement, ap.baseline_reward, ap.policy_range
    return [
        f"apprentice (baseline {ap.baseline}): {ap.decisions} decisions; agreement "
        f"{a.mean:.3f} [{a.low:.3f}, {a.high:.3f}] (counted {ap.truth_agreement:.3f})",
        f"  baseline reward {b.mean:.3f} [{b.low:.3f}, {b.high:.3f}] (true "
        f"{ap.truth_baseline:.3f}); the model's range [{lo:.3f}, {hi:.3f}] (its draws' true "
        f"value {ap.truth_policy:.3f}); {ap.verdict}",
    ]


def _failover_lines(f: FailoverResult) -> list[str]:
    policies = ", ".join(f"{p} {n}" for p, n in f.policies.items())
    return [
        f"failover forced ({f.reason!r}): {f.sent} decisions, {f.answered} answered 200, "
        f"{f.flagged} flagged fallback ({policies}); the API counted {f.counted}; "
        f"breaker {f.breaker}",
        f"  back on auto: {f.after_sent} decisions, {f.after_flagged} flagged; breaker "
        f"{f.after_breaker}",
    ]
