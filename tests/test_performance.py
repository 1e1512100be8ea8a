"""engine.performance: the served value and a uniform choice's, per slot and time bucket,
folded example by example into the same sums engine.ope tallies in a batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import ope
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.performance import BUCKET_SECONDS, MAX_BUCKETS, Performance
from engine.records import TrainingExample

T0 = 1_796_004_000.0  # an hour boundary: 3600 divides it


def example(
    i: int,
    reward: float,
    pmf: list[float],
    chosen: int,
    ts: float,
    slot: str | None = None,
    catalog: str = "shop",
) -> TrainingExample:
    ids = [f"a{k}" for k in range(len(pmf))]
    return TrainingExample(
        event_id=f"e{i}",
        catalog=catalog,
        catalog_version=1,
        context={},
        eligible=ids,
        chosen=chosen,
        probability=pmf[chosen],
        reward=reward,
        rewards=1,
        reason="reward",
        decided_ts=ts,
        emitted_ts=ts + 1.0,
        pmf=pmf,
        slot=slot,
    )


def pmf_of(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


rows = st.lists(
    st.tuples(
        st.floats(0.0, 1.0),  # reward
        st.lists(st.floats(0.05, 1.0), min_size=1, max_size=6),  # pmf weights
        st.integers(0, 5),  # chosen (mod K)
        st.floats(0.0, 3 * 3600.0),  # seconds after T0
    ),
    min_size=2,
    max_size=60,
)


def fold(
    data: list[tuple[float, list[float], int, float]],
) -> tuple[Performance, list[TrainingExample]]:
    perf, examples = Performance(), []
    for i, (reward, weights, chosen, dt) in enumerate(data):
        pmf = pmf_of(weights)
        ex = example(i, reward, pmf, chosen % len(pmf), T0 + dt)
        perf.observe(ex)
        examples.append(ex)
    return perf, examples


@settings(max_examples=150, deadline=None)
@given(rows)
def test_the_folded_buckets_read_as_the_batch_tally_of_the_same_rows(
    data: list[tuple[float, list[float], int, float]],
) -> None:
    perf, examples = fold(data)
    batch = ope.tally(
        [e.reward for e in examples],
        [e.probability for e in examples],
        [1.0 / len(e.eligible) for e in examples],
    )
    total = perf.report("shop", every=3600)["slots"][0]["total"]
    assert total["decisions"] == len(examples)
    for key, method in (("served", "logged"), ("uniform", "snips"), ("uniform_ips", "ips")):
        want = ope.estimate(batch, method).to_json()
        got = total[key]
        assert got["supported"] == want["supported"]
        if want["supported"]:
            for field in ("estimate", "low", "high"):
                assert got[field] == pytest.approx(want[field], rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_any_resolution_sums_to_the_same_total_and_each_point_covers_its_span(
    data: list[tuple[float, list[float], int, float]],
) -> None:
    perf, examples = fold(data)
    fine = perf.report("shop", every=BUCKET_SECONDS)["slots"][0]
    coarse = perf.report("shop", every=3600)["slots"][0]
    for key in ("served", "uniform", "uniform_ips"):  # the same, up to the order of sums
        a, b = fine["total"][key], coarse["total"][key]
        assert a["supported"] == b["supported"] and a["n"] == b["n"]
        if a["supported"] and b["supported"]:
            assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-9, abs=1e-12)
    assert sum(p["decisions"] for p in fine["series"]) == len(examples)
    for point in coarse["series"]:
        inside = [e for e in examples if point["start"] <= e.decided_ts < point["start"] + 3600]
        assert point["decisions"] == len(inside) and point["start"] % 3600 == 0


@settings(max_examples=60, deadline=None)
@given(rows)
def test_the_checkpoint_reads_back_the_same_report(
    data: list[tuple[float, list[float], int, float]],
) -> None:
    perf, _ = fold(data)
    again = Performance.decode(perf.encode())
    assert again.report("shop", every=BUCKET_SECONDS) == perf.report("shop", every=BUCKET_SECONDS)


def test_the_uniform_estimate_covers_what_uniform_would_earn() -> None:
    """A logger that favours the worst action: the served mean is low, and the uniform
    estimate from its log covers the uniform policy's true value (the mean of the click
    rates), which the plain mean of the log would miss."""
    rng = np.random.default_rng(7)
    rates = np.array([0.1, 0.3, 0.6])
    logger = [0.7, 0.2, 0.1]
    perf = Performance()
    for i in range(6000):
        a = int(rng.choice(3, p=logger))
        perf.observe(example(i, float(rng.random() < rates[a]), logger, a, T0 + i * 0.5))
    total = perf.report("shop")["slots"][0]["total"]
    truth = float(rates.mean())
    assert total["uniform"]["low"] <= truth <= total["uniform"]["high"]
    served = float(np.dot(logger, rates))
    assert total["served"]["low"] <= served <= total["served"]["high"]
    assert total["served"]["high"] < truth, "the log's own mean is not uniform's value"


def test_slots_are_reported_apart_and_catalogs_do_not_mix() -> None:
    perf = Performance()
    for i in range(10):
        perf.observe(example(i, float(i % 2), [0.5, 0.5], 0, T0 + i, slot="hero"))
        perf.observe(example(100 + i, 0.1 * (i % 3), [0.5, 0.5], 1, T0 + i, slot=None))
        perf.observe(example(200 + i, 1.0, [0.5, 0.5], 1, T0 + i, catalog="other"))
    slots = perf.report("shop")["slots"]
    assert [s["slot"] for s in slots] == [None, "hero"]
    by = {s["slot"]: s["total"] for s in slots}
    assert by["hero"]["served"]["estimate"] == 0.5 and by["hero"]["decisions"] == 10
    assert by[None]["served"]["estimate"] == pytest.approx(0.09) and by[None]["decisions"] == 10
    assert perf.report("nobody")["slots"] == []


def test_uniform_is_refused_where_the_logger_never_showed_some_actions() -> None:
    """One-hot pmfs (no exploration floor): a uniform choice would show what the log
    cannot tell about."""
    perf = Performance()
    for i in range(50):
        perf.observe(example(i, float(i % 2), [1.0, 0.0, 0.0], 0, T0 + i))
    total = perf.report("shop")["slots"][0]["total"]
    assert total["served"]["supported"] and not total["uniform"]["supported"]
    assert "could not show" in total["uniform"]["reason"]


def test_buckets_are_bounded_and_since_drops_the_older() -> None:
    perf = Performance()
    for i in range(MAX_BUCKETS + 40):
        perf.observe(example(i, 1.0, [0.5, 0.5], 0, T0 + i * BUCKET_SECONDS))
    series = perf.report("shop", every=BUCKET_SECONDS)["slots"][0]["series"]
    assert len(series) == MAX_BUCKETS and series[0]["start"] == T0 + 40 * BUCKET_SECONDS
    since = T0 + (MAX_BUCKETS + 30) * BUCKET_SECONDS
    late = perf.report("shop", every=BUCKET_SECONDS, since=since)["slots"][0]
    assert late["series"][0]["start"] == since and late["total"]["decisions"] == 10


@pytest.mark.parametrize("every", [0, 299, 301, 86_700, -300])
def test_a_resolution_off_the_grid_is_refused_naming_every(every: int) -> None:
    with pytest.raises(InvalidInput) as err:
        Performance().report("shop", every=every)
    assert err.value.field == "every" and "multiple of 300" in err.value.detail


def test_an_unreadable_checkpoint_is_reported() -> None:
    with pytest.raises(CorruptCheckpoint):
        Performance.decode(b'[["shop", null, [[0, 1, 2]]]]')
