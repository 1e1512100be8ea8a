"""The marketer's A/B-test rule of the quality benchmark: what it tests, what it keeps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.envs import Stream
from benchmarks.quality import AB_SHARE, ab_test_rule


def stream_with(best: list[int], k: int, steps: int, seed: int) -> Stream:
    """Segment s clicks only on action best[s] (always); everything else never clicks."""
    rng = np.random.default_rng(seed)
    segments = rng.integers(len(best), size=steps).astype(np.int64)
    ctr = np.zeros((steps, k))
    ctr[np.arange(steps), np.array(best)[segments]] = 1.0
    return Stream([{} for _ in range(steps)], ctr, segments, rng.random(steps))


@settings(max_examples=40, deadline=None)
@given(
    best=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_after_the_test_each_segment_gets_its_observed_winner(best: list[int], seed: int) -> None:
    steps, k = 2000, 5
    stream = stream_with(best, k, steps, seed)
    chosen = ab_test_rule(stream, f"t/{seed}")
    test = int(AB_SHARE * steps)
    assert chosen.shape == (steps,) and chosen.dtype == np.int64
    assert set(np.unique(chosen[:test])) == set(range(k))  # 200 uniform draws over 5
    for s, action in enumerate(best):
        after = chosen[test:][stream.segments[test:] == s]
        tested = chosen[:test][stream.segments[:test] == s]
        if action in tested:  # the test saw its click: a deterministic click wins
            assert set(after) <= {action}, (s, action, set(after))


def test_the_rule_is_fixed_after_the_test_and_reproducible() -> None:
    stream = stream_with([1, 3], k=4, steps=1000, seed=9)
    first, again = ab_test_rule(stream, "x"), ab_test_rule(stream, "x")
    assert np.array_equal(first, again)
    test = int(AB_SHARE * 1000)
    for s in (0, 1):
        assert len(set(first[test:][stream.segments[test:] == s])) == 1
    assert not np.array_equal(first[:test], ab_test_rule(stream, "y")[:test])
