"""Fresh behaviour is the signal: the `intent` storefront through a real stack.

Each session of a returning user has an intent (a category) that no request context
carries; only the session's product views, posted just before each decision and folded
into the feature store by the worker, tell the learner which banner to show. The same
storefront runs twice on one stack, same seed: with the store off (`"features": []`) and
on (the catalog's default features). On must beat off by a wide margin and come near the
oracle; off must stay at uniform random, whatever it learns from device and page.

CTRs here are *expected* CTRs: the click model's probability of each banner shown,
averaged (`SimResult.expected_ctr_by_window`), i.e. the CTR without the noise of the
simulated coin flips, which over a window of 600 alone is +/-0.018 (one sd).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sim import simulate
from sim.config import SimConfig
from sim.report import summary
from sim.results import SimResult
from tests.conftest import Stack

pytestmark = pytest.mark.integration

# Off first: it warms the store up (a fresh stack took 6-7 s for its first behaviour event
# to reach the API's replica), then on. Off needs few decisions: with a context that says
# nothing of the intent, any policy's expected CTR is a mix of the click matrix's column
# means (0.128-0.135 for seed 7, uniform 0.133) however long it learns, so all of its 600
# count as late; what moves it is how many visitors had the intent of the banner it
# favours (sessions cluster them: one sd ~0.01 over 600). On gets 1,800, late = last 600.
OFF_DECISIONS = OFF_LATE = 600
ON_DECISIONS, ON_LATE = 1_800, 600
# 48 shoppers, each with its own users so a user's visits stay in order, each waiting
# DWELL_S between a visit's views and its decision (a page load). The event -> replica
# lag measured p50 40-200 ms, max ~250 ms under this load, so ~100% of decisions saw their
# own views; at a load average of 8 the posts' p99 reached 2.6 s and 94% still did (with
# no dwell, 4% did: freshness is what this measures, see `SimResult.fresh`).
CONCURRENCY, DWELL_S, SEED = 48, 0.5, 7
# Thresholds from measurements (expected CTR; seed 7: oracle 0.294, uniform 0.133).
# Offline (engine.profiles + VW, learning 200 decisions behind, 40 seeds) the last 600 of
# 1,800 on decisions reached at least 0.226, mean 0.261 (share of the oracle's lift over
# uniform: at least 55%, mean 77%). Over HTTP, 10 runs of this test on a 2-core machine
# shared with other test suites (load average 3-8): on 0.232-0.268, off 0.131-0.149,
# clicks on 0.242-0.275 and off 0.117-0.143, probe means >= 0.85, 99-100% of on
# decisions saw their own views.
MIN_GAP = 0.06  # on - off: ~4 sd below the mean gap, at the offline worst on still 0.07
MAX_OFF_DRIFT = 0.035  # |off - uniform|: ~4 sd of the intent mix
MIN_LIFT_SHARE = 0.4  # on captures at least 40% of the oracle's lift (offline worst 55%)
MIN_SEEN = 0.8  # share of on decisions whose features held their session (measured >= 0.94)
MIN_PROBE = 0.55  # mean over intents of p(best banner) for probes right after 2 views


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("fresh"))
    s.start()
    yield s
    s.stop()


def play(stack: Stack, feature_store: bool) -> SimResult:
    decisions, late = (ON_DECISIONS, ON_LATE) if feature_store else (OFF_DECISIONS, OFF_LATE)
    config = SimConfig(
        base_url=stack.url,
        catalog=f"intent-{'on' if feature_store else 'off'}",
        env="intent",
        decisions=decisions,
        concurrency=CONCURRENCY,
        seed=SEED,
        window=late,
        feature_store=feature_store,
        dwell_s=DWELL_S,
    )
    return asyncio.run(simulate.run(config, progress=False))


def late_ctr(result: SimResult) -> float:
    return result.expected_ctr_by_window[-1][1]


def test_fresh_session_features_find_the_intent_and_no_features_stay_uniform(
    stack: Stack,
) -> None:
    started = time.monotonic()
    off = play(stack, feature_store=False)
    on = play(stack, feature_store=True)
    took = time.monotonic() - started
    report = f"in {took:.0f} s\n--- on\n{summary(on)}\n--- off\n{summary(off)}"
    print(report)
    assert (on.decisions, off.decisions) == (ON_DECISIONS, OFF_DECISIONS), report
    # the simulator stops waiting 3 s after learning last grew: once, at a load average of
    # 6, 1 of 1,800 was not learned yet
    assert on.learned >= 0.99 * ON_DECISIONS and off.learned >= 0.99 * OFF_DECISIONS, report

    # what the store joined: off, nothing; on, nearly every decision had its session
    assert off.joined == 0 and on.joined >= MIN_SEEN * ON_DECISIONS, report
    assert (on.fresh + on.stale) / ON_DECISIONS >= MIN_SEEN, report

    oracle, uniform = on.best_ctr, on.uniform_ctr
    assert abs(late_ctr(off) - uniform) <= MAX_OFF_DRIFT, report
    assert late_ctr(on) - late_ctr(off) >= MIN_GAP, report
    assert late_ctr(on) >= uniform + MIN_LIFT_SHARE * (oracle - uniform), report
    assert on.ctr_by_window[-1][1] > off.ctr_by_window[-1][1], report  # the clicks agree

    # probes right after views of one intent: the learned model shows its banner. Off,
    # every probe has the same context, so the intents' best banners share one pmf:
    # their mean probability is 1/K, whatever was learned.
    k = on.n_actions
    assert sum(on.best_action_probability.values()) / k >= MIN_PROBE, report
    assert sum(off.best_action_probability.values()) / k == pytest.approx(1 / k, abs=0.05)
