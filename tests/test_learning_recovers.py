"""Learners recover from an unlucky start.

The storefront of sim.storefront (4 segments, each with its own best banner), played
offline with the e2e test's settings: learning 500 decisions behind, a 0.1 exploration
floor. With squarecb and VW's own adaptive SGD, seed 4 of 0-15 ended its 8,000 decisions
with one segment's best banner at 1% (in the e2e test over HTTP: "yogi" at 9%), because
an importance-weighted click had decayed the learning rate of that segment's crosses;
squarecb with coin betting (the default until 2026-11-27) put every segment's best banner
on top in all 16 by the end. The default now, optimistic RegCB learned without importance
weights, served every segment its best banner in at least 0.78 of its last 1,000
decisions in all 16 seeds (squarecb with coin: 0.26 in seed 8, 2 seeds below 0.75).

Two measures: the end state (one probe context per segment after the last decision) and
the traffic served (the share of each segment's last 1,000 decisions that got its best
banner). They can disagree: RegCB is greedy on optimistic estimates, so its probe reads 0
or 1, and in seed 9 it reads 0 for a segment whose traffic had been on its best banner
(0.89 served); squarecb's probe reads 0.85 in seed 8 after three quarters of that
segment's last 1,000 decisions went to a wrong banner (docs/decisions/default-policy.md).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from benchmarks.envs import LIMITS, segments
from engine.features import flatten
from engine.learning import Exploration, Learning
from engine.sampling import normalise, rng_for, sample
from policies.base import Example
from policies.vw import VWPolicy
from sim import environments as simulation

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


@pytest.mark.parametrize("seed", [5, 2, 9, 4])
def test_the_default_learner_serves_every_segment_its_best_banner(seed: int) -> None:
    """Seeds 5 and 2 were the default's lowest served shares (0.78) in 0-15, 9 is where its
    probe reads 0, 4 where squarecb with adaptive SGD stuck. The served share is at most
    about 0.93 with the 0.1 floor over 4 banners."""
    _, served = play(seed, Learning())
    assert min(served.values()) >= 0.75, served


@pytest.mark.parametrize("seed", [4, 0, 11])
def test_squarecb_with_coin_betting_finds_every_segments_best_banner(seed: int) -> None:
    """The legacy default, still every catalog's that was made before the change."""
    end, served = play(seed, Learning(exploration=Exploration("squarecb"), optimizer="coin"))
    assert min(end.values()) >= 0.8, end
    assert min(served.values()) >= 0.8, served
