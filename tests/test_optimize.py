"""Auto-optimisation's promotion rule (engine.optimize.choose)."""

from __future__ import annotations

from engine.ope import Estimate, Report, Result, Unsupported
from engine.optimize import CURRENT, choose


def est(value: float, low: float, high: float) -> Estimate:
    return Estimate("snips", value, low, high, 0.01, 0.05, 1000, 500.0, 0.5, 4.0)


def report(snips: Result) -> Report:
    return Report(snips, snips, snips, snips)


def test_the_best_is_promoted_only_when_its_lower_bound_beats_the_current_estimate() -> None:
    reports = {
        CURRENT: report(est(0.30, 0.27, 0.33)),
        "good": report(est(0.40, 0.35, 0.45)),
        "better-but-unsure": report(est(0.45, 0.20, 0.70)),
    }
    verdict = choose(reports)  # the best estimate is not sure enough: nothing promoted
    assert verdict.promote is None and "better-but-unsure" in verdict.reason
    del reports["better-but-unsure"]
    verdict = choose(reports)
    assert verdict.promote == "good" and "lower bound above" in verdict.reason


def test_nothing_is_promoted_without_support() -> None:
    gone = Unsupported(
        "snips", "the candidate puts 1 of its probability ... could not show", 10, 0.0
    )
    assert choose({CURRENT: report(gone), "x": report(est(0.9, 0.8, 1.0))}).promote is None
    verdict = choose({CURRENT: report(est(0.3, 0.2, 0.4)), "x": report(gone)})
    assert verdict.promote is None and "no candidate can be estimated" in verdict.reason
