"""The default learner recovers from an unlucky start.

The storefront of engine.simulation (4 segments, each with its own best banner), played
offline with the e2e test's settings: learning 500 decisions behind, a 0.1 exploration
floor. With VW's own adaptive SGD (`optimizer: adaptive`) seed 4 of 0-15 ended its 8,000
decisions with one segment's best banner at 1% (in the e2e test over HTTP: "yogi" at 9%),
because an importance-weighted click had decayed the learning rate of that segment's
crosses; coin betting (the default) put every segment's best banner on top in all 16.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from benchmarks.envs import LIMITS, segments
from engine import simulation
from engine.catalog import Learning
from engine.features import flatten
from engine.sampling import normalise, rng_for, sample
from policies.base import Example
from policies.vw import VWPolicy

STEPS, DELAY, FLOOR = 8_000, 500, 0.1


def best_banner_share(seed: int, learning: Learning) -> dict[str, float]:
    env, sim = segments(), simulation.segments_env()
    stream = env.stream(seed, STEPS)
    policy = VWPolicy(learning)
    pending: deque[Example] = deque()
    try:
        for t, context in enumerate(stream.contexts):
            pmf = normalise(policy.distribution(context, env.actions), floor=FLOOR)
            index, probability = sample(pmf, rng_for(f"recover/{seed}/{t}"))
            reward = float(stream.uniforms[t] < stream.ctr[t, index])
            pending.append(Example(context, env.actions, index, probability, reward))
            if len(pending) > DELAY:
                policy.learn(pending.popleft())
        share = {}
        for row, segment in enumerate(sim.segment_names):
            probe = flatten(sim.segment_context(segment), LIMITS)
            pmf = normalise(policy.distribution(probe, env.actions))
            share[segment] = float(pmf[int(np.argmax(sim.matrix()[row]))])
        return share
    finally:
        policy.close()


@pytest.mark.parametrize("seed", [4, 0, 11])
def test_the_default_learner_finds_every_segments_best_banner(seed: int) -> None:
    share = best_banner_share(seed, Learning())
    assert min(share.values()) >= 0.8, share
