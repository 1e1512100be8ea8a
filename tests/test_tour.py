"""`loopwise tour`, quick, through a real stack: an A/B of the default VW policy against
a marketer's rule, an off-policy evaluation of a rule change, apprentice mode and a
forced failover, each read back over HTTP and checked against what the tour sent."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from loopwise.cli import main
from sim import tour
from sim.tour_config import TourConfig, quick
from sim.tour_plot import plot
from sim.tour_result import METHODS, Interval, Tour
from tests.conftest import Stack

pytestmark = pytest.mark.integration

FORCED = "failover forced by an operator: "


@pytest.fixture(scope="module")
def result(broker: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tour, Path]:
    stack = Stack(broker, tmp_path_factory.mktemp("tour"))
    stack.start()
    out = tmp_path_factory.mktemp("tour-out")
    try:
        config = quick(TourConfig(base_url=stack.url, seed=3))
        return asyncio.run(tour.run(config, out, progress=False)), out
    finally:
        stack.stop()


def held(i: Interval) -> bool:
    return i.low <= i.mean <= i.high


def test_the_ab_decides_with_both_arms_and_every_read_holds_its_mean(
    result: tuple[Tour, Path],
) -> None:
    ab = result[0].ab
    assert ab.final.arms.keys() == {"model", "merch"}
    assert all(i.n > 0 for i in ab.final.arms.values()), ab.final
    assert sum(i.n for i in ab.final.arms.values()) == ab.decisions == 600
    assert ab.policies["merch"] == {"rule": "priority", "priority": [ab.marketer_banner]}
    for sample in [*ab.samples, ab.final]:
        for arm, interval in [*sample.arms.items(), *sample.difference.items()]:
            assert held(interval), (arm, sample)
    assert ab.rewards_learned <= ab.clicks  # no reward is learned that was not posted
    assert 0.0 < ab.rule_value < ab.oracle <= 1.0
    assert Path(str(ab.svg)).read_text().lstrip().startswith("<svg")


def test_the_evaluation_reads_every_decision_and_estimates_or_says_why_not(
    result: tuple[Tour, Path],
) -> None:
    ev = result[0].evaluation
    assert ev.state == "done", ev.error
    assert ev.rows == ev.logged_decisions == 600
    assert [c.kind for c in ev.candidates] == ["constraints", "rule"]
    for c in ev.candidates:
        assert 0.0 < c.truth < 1.0
        for method in METHODS:
            e = c.estimates[method]
            if e.supported:
                assert e.low <= e.estimate <= e.high and e.ess > 0, (c.name, method, e)
            else:
                assert e.reason, (c.name, method)


def test_apprentice_mode_reports_the_agreement_the_tour_counted(
    result: tuple[Tour, Path],
) -> None:
    ap = result[0].apprentice
    assert ap.decisions == 200
    assert ap.agreement is not None and ap.baseline_reward is not None
    assert 0.0 <= ap.agreement.low <= ap.agreement.mean <= ap.agreement.high <= 1.0
    assert math.isclose(ap.agreement.mean, ap.truth_agreement)  # the same 200 decisions
    assert held(ap.baseline_reward)
    assert ap.policy_range is not None and 0.0 <= ap.policy_range[0] <= ap.policy_range[1] <= 1.0


def test_a_forced_failover_answers_every_decision_flagged_then_hands_back(
    result: tuple[Tour, Path],
) -> None:
    f = result[0].failover
    assert f.statuses == {"200": f.sent} and f.answered == f.flagged == f.sent == 50
    assert f.reasons == {FORCED + f.reason: f.sent}
    assert all(p.startswith("safe:") for p in f.policies)
    assert f.counted == f.sent  # the API's own count of forced failovers
    assert (f.breaker, f.after_breaker, f.after_flagged) == ("forced", "closed", 0)


def test_the_picture_and_the_json_are_written(result: tuple[Tour, Path]) -> None:
    tour_result, out = result
    picture = plot(tour_result, out / "tour.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
    data = json.loads(json.dumps(tour_result.to_json(), allow_nan=False))
    assert data["ab"]["decisions"] == 600 and data["failover"]["flagged"] == 50


def test_the_cli_refuses_a_storefront_the_tour_cannot_play(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tour", "--env", "intent", "--quick"]) == 2
    assert "hides it in behaviour" in capsys.readouterr().err
