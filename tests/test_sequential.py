"""Confidence sequences: batches equal single steps, JSON round trips, bounds within the
range around the sample mean, and running coverage over whole streams from the simulator
(benchmarks/ope_world.py) and of a mean that rises as a learning arm's does."""

from __future__ import annotations

import itertools
import json
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.ope_world import draw, make_world
from engine.errors import InvalidInput
from engine.sequential import Difference, Mean, ipw, ipw_range

values = st.lists(st.floats(min_value=-2.0, max_value=3.0), min_size=1, max_size=200)


def _vector(m: Mean) -> np.ndarray:
    return np.array([float(v) for v in m.to_json().values()])  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(xs=values, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_batches_give_the_state_of_one_value_at_a_time(xs: list[float], cuts: list[int]) -> None:
    one_by_one = Mean(-2.0, 3.0)
    for x in xs:
        one_by_one = one_by_one.add(x)
    batched = Mean(-2.0, 3.0)
    edges = sorted({0, len(xs), *(min(c, len(xs)) for c in cuts)})
    for start, stop in itertools.pairwise(edges):
        batched = batched.add(np.array(xs[start:stop]))
    assert batched.t == one_by_one.t == len(xs)
    assert np.allclose(_vector(batched), _vector(one_by_one), rtol=1e-9, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(values, min_size=1, max_size=6))
def test_bounds_hold_the_sample_mean_within_the_range_and_round_trip_through_json(
    batches: list[list[float]],
) -> None:
    state = Mean(-2.0, 3.0, alpha=0.1)
    before = state.interval()
    assert (before.low, before.high, before.n) == (-2.0, 3.0, 0)
    seen: list[float] = []
    for batch in batches:
        state = state.add(batch)
        seen += batch
        now = state.interval()
        assert -2.0 <= now.low <= now.mean <= now.high <= 3.0
        assert now.mean == pytest.approx(float(np.mean(seen)))
        restored = Mean.from_json(json.loads(json.dumps(state.to_json())))
        assert restored == state
        assert restored.add(batch) == state.add(batch)


def test_a_state_written_before_the_change_is_read_back() -> None:
    legacy = {
        "lo": 0.0, "hi": 1.0, "alpha": 0.025, "truncation": 0.5, "t": 3, "total": 1.0,
        "squares": 0.4, "bets": 1.2, "staked": 0.5, "penalty": 0.1, "low": 0.1, "high": 0.8,
    }  # fmt: skip
    state = Mean.from_json(legacy)
    assert (state.t, state.total, state.squares, state.alpha) == (3, 1.0, 0.4, 0.025)


def test_the_sequence_shrinks_like_its_variance() -> None:
    rng = np.random.default_rng(1)
    clicks = Mean(0.0, 1.0).add((rng.random(20_000) < 0.02).astype(float))
    coins = Mean(0.0, 1.0).add((rng.random(20_000) < 0.5).astype(float))
    narrow, wide = clicks.interval(), coins.interval()
    assert narrow.low <= 0.02 <= narrow.high and wide.low <= 0.5 <= wide.high
    assert narrow.high - narrow.low < 0.4 * (wide.high - wide.low), (narrow, wide)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lo": 1.0, "hi": 1.0}, "finite lo < hi"),
        ({"lo": 0.0, "hi": float("inf")}, "finite lo < hi"),
        ({"lo": 0.0, "hi": 1.0, "alpha": 0.0}, "alpha"),
        ({"lo": 0.0, "hi": 1.0, "t": -1}, "t must be >= 0"),
    ],
)
def test_mean_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Mean(**kwargs)  # type: ignore[arg-type]  # the table's keys are Mean's fields


def test_values_outside_the_declared_range_are_refused() -> None:
    with pytest.raises(InvalidInput, match="declared range"):
        Mean(0.0, 1.0).add([0.5, 1.5])
    with pytest.raises(InvalidInput, match="declared range"):
        Mean(0.0, 1.0).add(float("nan"))
    with pytest.raises(InvalidInput, match="1-D"):
        Mean(0.0, 1.0).add([[0.5]])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown fields"),
        ({"t": "3"}, "t must be a number"),
        ({"t": 2.5}, "t must be an integer"),
        ({"squares": None}, "squares must be a number"),
        ({"lo": True}, "lo must be a number"),
        ({"hi": -1.0}, "finite lo < hi"),
    ],
)
def test_from_json_refuses_what_to_json_never_writes(
    change: dict[str, object], message: str
) -> None:
    data = {**Mean(0.0, 1.0).add([0.2, 0.4]).to_json(), **change}
    with pytest.raises(InvalidInput, match=message):
        Mean.from_json(data)
    with pytest.raises(InvalidInput, match="b must be an object"):
        Difference.from_json({"a": Mean(0.0, 1.0).to_json()})


def test_ipw_values_and_their_range() -> None:
    values = ipw([1.0, 0.5, 1.0], [True, False, True], [0.5, 0.5, 0.25])
    assert values.tolist() == [2.0, 0.0, 4.0]
    assert ipw_range(0.0, 1.0, 0.25) == (0.0, 4.0)
    assert ipw_range(-1.0, 1.0, 0.5) == (-2.0, 2.0)
    with pytest.raises(InvalidInput, match="share"):
        ipw([1.0], [True], [0.0])
    with pytest.raises(InvalidInput, match="min_share"):
        ipw_range(0.0, 1.0, 0.0)


LOOKS = 20  # a marketer's daily looks over the stream


def test_running_coverage_over_whole_streams_and_what_peeking_costs() -> None:
    """200 streams of 2,000 logged rewards: the sequence must hold the true value at every
    one of them; a fixed-n 95% interval read at each of 20 looks is shown beside it."""
    world = make_world(0, epsilon=0.3)
    truth = world.value(world.logging)
    z = NormalDist().inv_cdf(0.975)
    kept = peeked = 0
    runs, n = 200, 2000
    for run in range(runs):
        reward = draw(world, n, np.random.default_rng(20_000 + run)).reward
        state, held, wald_held = Mean(0.0, 1.0), True, True
        for chunk in np.array_split(reward, LOOKS):
            state = state.add(chunk)
            now = state.interval()
            held &= now.low <= truth <= now.high
            seen = reward[: now.n]
            half = z * seen.std(ddof=1) / np.sqrt(now.n)
            wald_held &= abs(seen.mean() - truth) <= half
        kept += held
        peeked += wald_held
    message = (
        f"{runs} streams x {n}: confidence sequence never excluded the truth in "
        f"{kept / runs:.3f}; a 95% normal interval read at {LOOKS} looks in {peeked / runs:.3f}"
    )
    assert kept / runs >= 0.95 - 0.02, message
    assert peeked < kept, message


def test_a_rising_mean_stays_inside_at_every_look() -> None:
    """A learning arm: its click rate rises from 0.11 to 0.22 over 5,000 decisions. The
    sequence must hold the average of the rates so far at each of 20 looks, in about 95%
    of streams. (The running intersection of a constant-mean sequence held it in 1 of 200.)"""
    runs, n = 200, 5000
    rates = np.linspace(0.11, 0.22, n)
    average = np.cumsum(rates) / np.arange(1, n + 1)
    kept = 0
    for run in range(runs):
        clicks = (np.random.default_rng(50_000 + run).random(n) < rates).astype(float)
        state, held = Mean(0.0, 1.0), True
        for chunk in np.array_split(np.arange(n), LOOKS):
            state = state.add(clicks[chunk])
            now = state.interval()
            held &= now.low <= average[chunk[-1]] <= now.high
        kept += held
    assert kept / runs >= 0.95 - 0.02, f"held at every look in {kept}/{runs} streams"


def test_difference_of_two_arms_covers_the_true_lift() -> None:
    world = make_world(0, epsilon=0.3)
    truth = world.value(world.candidates["best"]) - world.value(world.logging)
    runs, n = 200, 2000
    kept = 0
    excluded_zero = 0
    for run in range(runs):
        rng = np.random.default_rng(30_000 + run)
        a = draw(world, n, rng, policy=world.candidates["best"]).reward
        b = draw(world, n, rng).reward
        state = Difference.start(0.0, 1.0)
        held = True
        for chunk_a, chunk_b in zip(
            np.array_split(a, LOOKS), np.array_split(b, LOOKS), strict=True
        ):
            state = state.add(chunk_a, chunk_b)
            now = state.interval()
            held &= now.low <= truth <= now.high
        kept += held
        excluded_zero += now.low > 0.0
        restored = Difference.from_json(json.loads(json.dumps(state.to_json())))
        assert restored == state and restored.alpha == pytest.approx(0.05)
    message = (
        f"{runs} A/B streams x {n} per arm, true lift {truth:.3f}: the difference's sequence "
        f"held it throughout in {kept / runs:.3f}, showed the lift (> 0) in "
        f"{excluded_zero / runs:.3f}"
    )
    assert kept / runs >= 0.95 - 0.02, message


def test_ipw_arm_with_shares_by_segment_covers_its_population_mean() -> None:
    """Arm a gets 20% of segment 0 (reward rate 0.3) and 80% of segment 1 (rate 0.1), the
    segments half the traffic each: arm a's mean over the population is 0.2, while a plain
    mean over its own units is pulled to 0.14. Its IPW values over all units are not."""
    runs, n = 200, 4000
    kept = plain_kept = 0
    lo, hi = ipw_range(0.0, 1.0, 0.2)
    for run in range(runs):
        rng = np.random.default_rng(40_000 + run)
        segment = rng.random(n) < 0.5
        share = np.where(segment, 0.8, 0.2)
        assigned = rng.random(n) < share
        reward = (rng.random(n) < np.where(segment, 0.1, 0.3)).astype(float)
        now = Mean(lo, hi).add(ipw(reward, assigned, share)).interval()
        kept += now.low <= 0.2 <= now.high
        plain = Mean(0.0, 1.0).add(reward[assigned]).interval()
        plain_kept += plain.low <= 0.2 <= plain.high
    message = (
        f"IPW arm held 0.2 in {kept / runs:.3f} of {runs}, its plain mean in "
        f"{plain_kept / runs:.3f}"
    )
    assert kept / runs >= 0.95 - 0.02, message
    assert plain_kept / runs < 0.5, message
