"""Learners recover from an unlucky start.

The storefront of engine.simulation (4 segments, each with its own best banner), played
offline with the e2e test's settings: learning 500 decisions behind, a 0.1 exploration
floor. With VW's own adaptive SGD (`optimizer: adaptive`) seed 4 of 0-15 ended its 8,000
decisions with one segment's best banner at 1% (in the e2e test over HTTP: "yogi" at 9%),
because an importance-weighted click had decayed the learning rate of that segment's
crosses; coin betting (the default) put every segment's best banner on top in all 16.

Two measures: the end state (one probe context per segment after the last decision) and
the traffic served (the share of each segment's last 1,000 decisions that got its best
banner). They can disagree: in the experiments behind README "Why coin betting", a probe
of optimistic RegCB read 0 (seed 9 unweighted, seed 4 weighted) while the segment's
traffic had been on its best banner, and the default's probe reads 0.85 in seed 8 after
three quarters of that segment's last 1,000 decisions went to a wrong banner.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from benchmarks.envs import LIMITS, segments
from engine import simulation
from engine.catalog import Exploration, Learning
from engine.features import flatten
from engine.sampling import normalise, rng_for, sample
from policies.base import Example
from policies.vw import VWPolicy

STEPS, DELAY, FLOOR, TAIL = 8_000, 500, 0.1, 1_000


def play(seed: int, learning: Learning) -> tuple[dict[str, float], dict[str, float]]:
    """(end-state share, served share of the last TAIL decisions) per segment name."""
    env, sim = segments(), simulation.segments_env()
    stream = env.stream(seed, STEPS)
    best = np.argmax(np.asarray(sim.matrix()), axis=1)
    policy = VWPolicy(learning)
    pending: deque[Example] = deque()
    chosen = np.zeros(STEPS, dtype=np.int64)
    try:
        for t, context in enumerate(stream.contexts):
            pmf = normalise(policy.distribution(context, env.actions), floor=FLOOR)
            index, probability = sample(pmf, rng_for(f"recover/{seed}/{t}"))
            chosen[t] = index
            reward = float(stream.uniforms[t] < stream.ctr[t, index])
            pending.append(Example(context, env.actions, index, probability, reward))
            if len(pending) > DELAY:
                policy.learn(pending.popleft())
        end, served = {}, {}
        tail, segs = chosen[-TAIL:], stream.segments[-TAIL:]
        for row, segment in enumerate(sim.segment_names):
            probe = flatten(sim.segment_context(segment), LIMITS)
            pmf = normalise(policy.distribution(probe, env.actions))
            end[segment] = float(pmf[best[row]])
            served[segment] = float(np.mean(tail[segs == row] == best[row]))
        return end, served
    finally:
        policy.close()


@pytest.mark.parametrize("seed", [4, 0, 11])
def test_the_default_learner_finds_every_segments_best_banner(seed: int) -> None:
    end, served = play(seed, Learning())
    assert min(end.values()) >= 0.8, end
    assert min(served.values()) >= 0.8, served


@pytest.mark.parametrize("seed", [4, 8, 9])
def test_optimistic_regcb_serves_every_segment_its_best_banner(seed: int) -> None:
    """Seed 8 is where the default's traffic went wrong, 9 and 4 where RegCB's probes read
    0 in the experiments, and 4 where adaptive SGD stuck.
    The served share is at most about 0.93 with the 0.1 floor over 4 banners."""
    learning = Learning(exploration=Exploration("regcbopt"), optimizer="adaptive")
    _, served = play(seed, learning)
    assert min(served.values()) >= 0.7, served
