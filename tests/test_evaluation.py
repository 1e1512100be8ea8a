"""Off-policy evaluation of candidates on logged decisions (engine.evaluation): rules,
changed constraints and their support, against logs whose true values are known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.catalog import Catalog, parse_catalog
from engine.constraints import apply
from engine.errors import InvalidInput
from engine.evaluation import (
    ConstraintsPolicy,
    Evaluation,
    Row,
    RowPolicy,
    RulePolicy,
    parse_candidates,
)
from engine.limits import Limits
from engine.ope import Estimate, Unsupported
from engine.records import TrainingExample
from jobs.evaluate import LearningPolicy
from policies.registry import build

MEANS = {"a": 0.2, "b": 0.7, "c": 0.4, "kids": 0.9}
RULE = {"name": "no-kids", "when": "context.hour >= 22", "exclude": "action.id == 'kids'"}


def catalog(rules: list[object]) -> Catalog:
    body = {"actions": [{"id": i} for i in MEANS], "constraints": {"rules": rules}}
    return parse_catalog("shop", body, Limits(), version=1, now=0.0)


def rows(c: Catalog, n: int, seed: int, greedy: bool = False) -> list[Row]:
    """Logged by uniform over what the constraints allowed (or greedily on `a`)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hour = float(rng.integers(24))
        context = {"context": {"hour": hour}}
        eligible = apply(c.constraints, c.actions, context, 0.0, None, {}).actions
        k = len(eligible)
        pmf = np.zeros(k) if greedy else np.full(k, 1.0 / k)
        if greedy:
            pmf[0] = 1.0
        chosen = int(rng.choice(k, p=pmf))
        action = eligible[chosen].id
        ex = TrainingExample(
            event_id=f"e{i}", catalog="shop", catalog_version=1, context=context,
            eligible=[a.id for a in eligible], chosen=chosen, probability=float(pmf[chosen]),
            reward=float(rng.random() < MEANS[action]), rewards=1, reason="reward",
            decided_ts=0.0, emitted_ts=0.0, pmf=[float(p) for p in pmf],
        )  # fmt: skip
        out.append(Row(ex, list(eligible), c))
    return out


def evaluate(policies: dict[str, RowPolicy], logged: list[Row]) -> dict[str, object]:
    e = Evaluation(policies)
    for row in logged:
        e.add(row)
    return dict(e.reports())


def test_a_rule_is_estimated_within_its_interval() -> None:
    c = catalog([RULE])
    candidates = parse_candidates(
        [{"name": "b-first", "rule": "priority", "priority": ["b"]}], c, Limits()
    )
    assert candidates[0].rule is not None
    reports = evaluate({"b": RulePolicy(candidates[0].rule)}, rows(c, 6000, 1))
    r = reports["b"]
    for method in ("ips", "snips", "dr"):
        est = getattr(r, method)
        assert isinstance(est, Estimate) and est.low <= 0.7 <= est.high, est
    logged = r.logged
    # the truth of the uniform logger: kids (0.9) only before 22h
    truth = np.mean(
        [np.mean([MEANS[a] for a in MEANS if a != "kids" or h < 22]) for h in range(24)]
    )
    assert isinstance(logged, Estimate) and logged.low <= truth <= logged.high


def test_a_narrowing_rule_change_is_estimated_and_a_widening_one_refused() -> None:
    c = catalog([RULE])
    narrower = parse_candidates(
        [
            {
                "name": "no-b",
                "constraints": {"rules": [RULE, {"name": "no-b", "exclude": "action.id == 'b'"}]},
            },
            {"name": "rule-off", "constraints": {}},
        ],
        c,
        Limits(),
    )
    policies: dict[str, RowPolicy] = {
        n.name: ConstraintsPolicy(n.constraints) for n in narrower if n.constraints is not None
    }
    reports = evaluate(policies, rows(c, 6000, 2))
    truth = np.mean(
        [
            np.mean([MEANS[a] for a in ("a", "c", "kids") if a != "kids" or h < 22])
            for h in range(24)
        ]
    )
    est = reports["no-b"].snips  # type: ignore[attr-defined]
    assert isinstance(est, Estimate) and est.low <= truth <= est.high, (est, truth)
    off = reports["rule-off"].ips  # type: ignore[attr-defined]
    assert isinstance(off, Unsupported) and "could not show" in off.reason


def test_greedy_logs_cannot_support_another_policy() -> None:
    c = catalog([])
    candidates = parse_candidates([{"name": "u", "rule": "uniform"}], c, Limits())
    assert candidates[0].rule is not None
    reports = evaluate({"u": RulePolicy(candidates[0].rule)}, rows(c, 500, 3, greedy=True))
    est = reports["u"].ips  # type: ignore[attr-defined]
    assert isinstance(est, Unsupported), est


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "candidates"),
        ([{"name": "x"}], "candidates[0]"),
        ([{"name": "x", "rule": "best"}], "candidates[0].rule"),
        ([{"name": "x", "rule": "priority", "priority": ["zz"]}], "candidates[0].priority[0]"),
        (
            [{"name": "x", "learning": {"exploration": {"algorithm": "magic"}}}],
            "candidates[0].learning.exploration.algorithm",
        ),
        (
            [{"name": "x", "constraints": {"rules": [{"name": "r", "exclude": "action.id =="}]}}],
            "candidates[0].constraints.rules[0].exclude",
        ),
        ([{"name": "x", "rule": "first"}, {"name": "x", "rule": "uniform"}], "candidates[1].name"),
    ],
)
def test_bad_candidates_name_their_field(body: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_candidates(body, catalog([]), Limits())
    assert caught.value.field == field, caught.value.detail


@pytest.mark.parametrize(
    "learning",
    [{"policy": "linucb"}, {"policy": "thompson", "thompson": {"draws": 64}}],
    ids=["linucb", "thompson"],
)
def test_a_numpy_learning_candidate_is_trained_on_the_log_and_beats_its_logger(
    learning: dict[str, object],
) -> None:
    """What the evaluation job does with a learning candidate (jobs.evaluate): the policy
    the registry builds, predicting each row with what it learned from the rows before."""
    c = catalog([RULE])
    candidate = parse_candidates([{"name": "x", "learning": learning}], c, Limits())[0]
    assert candidate.learning is not None
    policy = LearningPolicy(build(candidate.learning))
    reports = evaluate({"x": policy}, rows(c, 2000, 4))
    assert policy.policy.name == learning["policy"] and policy.policy.learned == 2000
    snips, logged = reports["x"].snips, reports["x"].logged  # type: ignore[attr-defined]
    assert isinstance(snips, Estimate) and isinstance(logged, Estimate)
    assert snips.low > logged.high, (snips, logged)
