"""The safe policy, the breaker and the guard between a catalog's model and its decisions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.actions import Action
from engine.breaker import CLOSED, FORCED, HALF_OPEN, OPEN, Breaker, Unavailable
from engine.catalog import parse_catalog
from engine.decision import Slot, decide
from engine.errors import InvalidInput
from engine.failover import Failover, SafeRanker, parse_failover
from engine.features import Features
from engine.limits import Limits
from engine.policy import Guarded, scored
from engine.sampling import Pmf

IDS = [f"a{i}" for i in range(6)]
ACTIONS = [Action(id=i, features={}, metadata={}) for i in IDS]


class Clock:
    """Monotonic seconds that advance by `step` on every read (a model's answer time)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Model:
    """A model that answers a fixed pmf, or raises while `broken`."""

    name = "vw:test"

    def __init__(self) -> None:
        self.broken: Exception | None = None
        self.asked = 0

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        self.asked += 1
        if self.broken is not None:
            raise self.broken
        n = len(eligible)
        pmf = np.zeros(n)
        pmf[-1] = 1.0
        return pmf, np.arange(n, dtype=np.float64)


# -- the safe policy ------------------------------------------------------------------


def test_first_shows_the_first_eligible_action_with_probability_one() -> None:
    pmf, scores = SafeRanker(Failover(safe_policy="first")).ranked({}, ACTIONS[2:])
    assert pmf.tolist() == [1.0, 0, 0, 0]
    assert list(np.argsort(-scores)) == [0, 1, 2, 3]


def test_priority_follows_the_list_then_catalog_order() -> None:
    safe = SafeRanker(Failover(safe_policy="priority", priority=("a4", "a1")))
    pmf, scores = safe.ranked({}, ACTIONS)
    assert [IDS[i] for i in np.argsort(-scores, kind="stable")] == [
        "a4",
        "a1",
        "a0",
        "a2",
        "a3",
        "a5",
    ]
    assert pmf[4] == 1.0 and pmf.sum() == 1.0
    pmf, _ = safe.ranked({}, [a for a in ACTIONS if a.id != "a4"])  # a4 not eligible
    assert pmf.tolist() == [0, 1.0, 0, 0, 0]


def test_uniform_gives_every_eligible_action_the_same_probability() -> None:
    pmf, _ = SafeRanker(Failover()).ranked({}, ACTIONS)
    assert np.allclose(pmf, 1 / 6) and SafeRanker(Failover()).name == "safe:uniform"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"safe_policy": "random"}, "failover.safe_policy"),
        ({"safe_policy": "priority"}, "failover.priority"),
        ({"safe_policy": "priority", "priority": ["a1", "zz"]}, "failover.priority[1]"),
        ({"safe_policy": "priority", "priority": ["a1", "a1"]}, "failover.priority[1]"),
        ({"safe_policy": "first", "priority": ["a1"]}, "failover.priority"),
        ({"latency_budget_ms": 0}, "failover.latency_budget_ms"),
        ({"trip_after": 2.5}, "failover.trip_after"),
        ({"cooldown_seconds": "long"}, "failover.cooldown_seconds"),
        ({"budget": 5}, "failover.budget"),
    ],
)
def test_bad_failover_settings_name_their_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_failover(body, IDS, Limits())
    assert caught.value.field == field, caught.value.detail


def test_a_catalog_keeps_its_failover_settings_through_its_json() -> None:
    body = {
        "actions": [{"id": i} for i in IDS],
        "failover": {"safe_policy": "priority", "priority": ["a3"], "latency_budget_ms": 8},
    }
    c = parse_catalog("shop", body, Limits(), version=1, now=0.0)
    again = parse_catalog("shop", c.to_json(), Limits(), version=2, now=0.0)
    assert again.failover == c.failover == Failover("priority", ("a3",), 8.0)


# -- the breaker ----------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.sampled_from(["good", "bad", "wait"]), st.floats(0.0, 20.0)), max_size=60
    ),
    st.integers(1, 5),
)
def test_the_breaker_asks_the_model_exactly_when_it_should(
    steps: list[tuple[str, float]], trip_after: int
) -> None:
    """Against a plain restatement of the rule: open after `trip_after` bad answers in a
    row or one bad try when half open; not asked while open and cooling down."""
    b = Breaker(trip_after, cooldown_seconds=10.0)
    now, in_row, opened = 0.0, 0, None
    for step, dt in steps:
        now += dt
        if step == "wait":
            continue
        expect_asked = opened is None or now - opened >= 10.0
        try:
            b.check(now)
            asked = True
        except Unavailable as exc:
            asked = False
            assert exc.cause == "breaker_open"
        assert asked == expect_asked, (step, now, opened, b)
        if not asked:
            continue
        half_open = opened is not None
        if step == "good":
            b.good()
            in_row, opened = 0, None
            assert b.state == CLOSED
        else:
            b.bad("slow", now)
            in_row += 1
            if half_open or in_row >= trip_after:
                opened = now
            assert b.state == (OPEN if opened is not None else CLOSED)


def test_forced_holds_until_reset_whatever_the_model_does() -> None:
    b = Breaker(1, 0.5)
    b.force("incident 42", 0.0)
    for now in (1.0, 100.0):
        with pytest.raises(Unavailable, match="incident 42"):
            b.check(now)
    b.bad("x", 3.0)
    assert b.state == FORCED
    b.reset()
    b.check(200.0)
    assert b.state == CLOSED


def test_a_half_open_breaker_tries_the_model_once() -> None:
    b = Breaker(2, 5.0)
    b.bad("e", 0.0)
    b.bad("e", 0.0)
    with pytest.raises(Unavailable):
        b.check(4.9)
    b.check(5.0)
    assert b.state == HALF_OPEN
    b.bad("still", 5.0)
    assert b.state == OPEN and b.trips == 2
    with pytest.raises(Unavailable):
        b.check(9.0)


# -- the guard, inside a decision -----------------------------------------------------


def test_a_slow_model_trips_the_breaker_and_the_safe_policy_answers() -> None:
    model = Model()
    clock = Clock(step=0.004)  # every answer takes 4 ms
    guard = Guarded(model, Breaker(3, 30.0), budget_seconds=0.002, clock=clock)
    safe = SafeRanker(Failover(safe_policy="first"))
    answers = [scored(guard, {}, ACTIONS, safe) for _ in range(10)]
    assert [a.policy for a in answers[:3]] == ["vw:test"] * 3  # over budget, still used
    assert all(a.policy == "safe:first" and a.cause == "breaker_open" for a in answers[3:])
    assert model.asked == 3 and guard.over_budget == 3
    assert (
        answers[3].failure is not None and "over the latency budget of 2 ms" in answers[3].failure
    )


def test_a_failing_model_is_reported_and_a_recovered_one_serves_again() -> None:
    model = Model()
    clock = Clock()
    guard = Guarded(model, Breaker(2, 1.0), budget_seconds=1.0, clock=clock)
    model.broken = RuntimeError("weights are NaN")
    first = scored(guard, {}, ACTIONS)
    assert first.cause == "error" and first.policy == "uniform"
    assert first.failure == "policy vw:test failed: weights are NaN"
    scored(guard, {}, ACTIONS)
    assert scored(guard, {}, ACTIONS).cause == "breaker_open" and model.asked == 2
    model.broken = None
    clock.now += 1.0
    back = scored(guard, {}, ACTIONS)
    assert back.policy == "vw:test" and back.failure is None and guard.breaker.state == CLOSED


def test_non_finite_answers_count_as_failures() -> None:
    class NaN(Model):
        def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
            pmf, _ = super().ranked(features, eligible)
            return pmf, np.full(len(eligible), np.nan)

    guard = Guarded(NaN(), Breaker(1, 60.0), budget_seconds=1.0, clock=Clock())
    assert scored(guard, {}, ACTIONS).cause == "error"
    assert guard.breaker.state == OPEN


@pytest.mark.parametrize("slots", [None, [Slot("hero", {}), Slot("side", {})]])
def test_the_safe_policy_decides_within_the_constraints(slots: list[Slot] | None) -> None:
    body = {
        "actions": [{"id": i, "metadata": {"sku": i}} for i in IDS],
        # no exploration floor: the safe policy's own, one-hot pmf
        "constraints": {"inventory": {"sku_field": "sku", "threshold": 0}, "exploration_floor": 0},
        "failover": {"safe_policy": "priority", "priority": ["a2", "a5", "a0"]},
    }
    c = parse_catalog("shop", body, Limits(), version=1, now=0.0)
    model = Model()
    model.broken = RuntimeError("corrupt")
    safe = SafeRanker(c.failover)
    d = decide(c, c.actions, {}, "e1", 0.0, model, stock={"a2": 0.0}, slots=slots, safe=safe)
    shown = [s.actions[s.chosen].id for s in d.slots]
    assert shown == (["a5", "a0"] if slots else ["a5"])  # a2 is out of stock
    assert all(s.fallback and s.policy == "safe:priority" and s.probability == 1.0 for s in d.slots)
    assert [f.cause for f in d.failures] == ["error"] * len(d.slots)
