"""Sampling: seeded, exact, never a zero-mass action, frequencies match probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine.errors import InvalidInput
from engine.sampling import normalise, ranking, rng_for, sample

weights = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(w=weights, floor=st.floats(min_value=0.0, max_value=1.0), seed=st.text(max_size=20))
def test_sampled_index_has_exactly_the_returned_probability(
    w: list[float], floor: float, seed: str
) -> None:
    pmf = normalise(w, floor)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(pmf >= floor / len(w) - 1e-15)
    index, p = sample(pmf, rng_for(seed))
    assert p == pmf[index] and p > 0


@given(n=st.integers(min_value=1, max_value=50), zero_tail=st.integers(min_value=0, max_value=10))
def test_tail_guard_never_returns_zero_mass(n: int, zero_tail: int) -> None:
    pmf = normalise([1.0] * n + [0.0] * zero_tail)

    class EdgeRng:  # the worst draw a float generator can give: just below 1
        def random(self) -> float:
            return float(np.nextafter(1.0, 0.0))

    index, p = sample(pmf, EdgeRng())
    assert index < n and p == pmf[index] > 0


def test_same_event_id_same_draw_and_different_ids_differ() -> None:
    pmf = normalise([0.1] * 10)
    assert sample(pmf, rng_for("e-1")) == sample(pmf, rng_for("e-1"))
    draws = {sample(pmf, rng_for(f"e-{i}"))[0] for i in range(200)}
    assert len(draws) == 10


def test_empirical_frequencies_match_the_pmf() -> None:
    pmf = normalise([0.5, 0.2, 0.15, 0.1, 0.05])
    n = 100_000
    counts = np.bincount([sample(pmf, rng_for(str(i)))[0] for i in range(n)], minlength=5)
    chi2, pvalue = stats.chisquare(counts, pmf * n)
    assert pvalue > 1e-4, f"chi2={chi2:.1f} p={pvalue:.2g} counts={counts}"


def test_ranking_is_by_probability_then_catalog_order() -> None:
    assert ranking(np.array([0.2, 0.5, 0.2, 0.1])) == [1, 0, 2, 3]


def test_ranking_breaks_probability_ties_by_score_then_catalog_order() -> None:
    one_hot = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    assert ranking(one_hot, np.array([0.1, 0.3, 0.9, 0.3, 0.5])) == [2, 4, 1, 3, 0]
    # the probability decides first, even against the score
    assert ranking(np.array([0.3, 0.7]), np.array([1.0, 0.0])) == [1, 0]


@pytest.mark.parametrize(
    ("weights", "floor", "message"),
    [
        ([], 0.0, "at least one"),
        ([1.0, float("nan")], 0.0, "finite"),
        ([-1.0], 0.0, "non-negative"),
        ([1.0], 1.5, "floor"),
    ],
)
def test_normalise_rejects_bad_input(weights: list[float], floor: float, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        normalise(weights, floor)


def test_all_zero_weights_become_uniform() -> None:
    assert list(normalise([0.0, 0.0])) == [0.5, 0.5]


def test_draws_are_uniform_independent_and_reproducible() -> None:
    first = [rng_for(str(i)).random() for i in range(20_000)]
    assert stats.kstest(first, "uniform").pvalue > 1e-4
    r = rng_for("same")
    sequence = [r.random() for _ in range(5)]
    again = rng_for("same")
    assert [again.random() for _ in range(5)] == sequence and len(set(sequence)) == 5
    seconds = [(d := rng_for(str(i)), d.random(), d.random())[2] for i in range(20_000)]
    assert abs(stats.pearsonr(first, seconds).statistic) < 0.03, "draws of one id are independent"
    assert rng_for("x", salt="a").random() != rng_for("x", salt="b").random()
