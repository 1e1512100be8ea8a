"""Auto-optimisation's promotion rule (engine.optimize.choose)."""

from __future__ import annotations

import numpy as np

from engine.actions import Action
from engine.evaluation import Row
from engine.features import Features
from engine.learning import Exploration, Learning
from engine.ope import Estimate, Report, Result, Unsupported
from engine.optimize import CURRENT, choose
from engine.records import TrainingExample
from jobs.evaluate import LearningPolicy
from policies.registry import build


def est(value: float, low: float, high: float) -> Estimate:
    return Estimate("snips", value, low, high, 0.01, 0.05, 1000, 500.0, 0.5, 4.0)


def report(snips: Result, logged: Result | None = None) -> Report:
    return Report(logged or snips, snips, snips, snips)


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


def test_a_candidate_must_beat_what_the_warm_model_earned_not_only_its_cold_replay() -> None:
    # a promoted setting starts a new model: the bar is the higher of the current
    # settings replayed from nothing (0.30) and what the log earned (0.38)
    warm = est(0.38, 0.36, 0.40)
    reports = {CURRENT: report(est(0.30, 0.27, 0.33), warm), "good": report(est(0.40, 0.35, 0.45))}
    verdict = choose(reports)
    assert verdict.promote is None and "what the log earned" in verdict.reason
    reports["much-better"] = report(est(0.50, 0.45, 0.55))
    assert choose(reports).promote == "much-better"
    # a log that earned less than the replay (another model decided part of it) lowers
    # nothing: the replay stays the bar
    reports = {
        CURRENT: report(est(0.30, 0.27, 0.33), est(0.2, 0.1, 0.3)),
        "good": report(est(0.40, 0.32, 0.45)),
    }
    assert choose(reports).promote == "good"


def test_nothing_is_promoted_without_support() -> None:
    gone = Unsupported(
        "snips", "the candidate puts 1 of its probability ... could not show", 10, 0.0
    )
    assert choose({CURRENT: report(gone), "x": report(est(0.9, 0.8, 1.0))}).promote is None
    verdict = choose({CURRENT: report(est(0.3, 0.2, 0.4)), "x": report(gone)})
    assert verdict.promote is None and "no candidate can be estimated" in verdict.reason


def test_a_learning_candidate_answers_a_pmf_the_estimators_take_over_many_actions() -> None:
    """VW's float32 pmfs over 50 actions can sum to more than 1 by several 1e-7; the job
    renormalises them, as decisions do (the estimators refuse a row above 1 + 1e-6)."""
    actions = [Action(f"a{i}", {"a": {"x": float(i % 7), "y": float(i % 3)}}) for i in range(50)]
    policy = LearningPolicy(build(Learning(exploration=Exploration("softmax"))))
    rng = np.random.default_rng(0)
    for t in range(200):
        context: Features = {"u": {"s": float(t % 5)}}
        ex = TrainingExample(
            event_id=str(t), catalog="c", catalog_version=1, context=context,
            eligible=[a.id for a in actions], chosen=int(rng.integers(50)), probability=0.02,
            reward=float(rng.random() < 0.1), rewards=1, reason="reward", decided_ts=0.0,
            emitted_ts=0.0, pmf=[0.02] * 50,
        )  # fmt: skip
        row = Row(ex, actions, None)  # type: ignore[arg-type]  # a learning candidate reads no catalog
        assert abs(float(policy.pmf(row).sum()) - 1.0) < 1e-12
        policy.after(row)
    policy.policy.close()
