"""Off-policy estimators: invariants, refusals, the reward model, and coverage against a
simulator whose true values are known (benchmarks/ope_world.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.ope_world import CANDIDATES, draw, make_world
from engine.errors import InvalidInput
from engine.ope import (
    METHODS,
    Estimate,
    Tally,
    Unsupported,
    cross_fit,
    estimate,
    fit_rewards,
    report,
    tally,
    tally_pmf,
)

rows = st.integers(min_value=2, max_value=300)


@st.composite
def logs(draw_: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reward, p_log, p_new): rewards in [0, 1], logged probabilities in (0, 1]."""
    n = draw_(rows)
    seed = draw_(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    reward = rng.random(n) * (rng.random(n) < draw_(st.floats(0.05, 1.0)))
    p_log = rng.uniform(draw_(st.floats(0.01, 0.5)), 1.0, n)
    p_new = rng.random(n) * (rng.random(n) < draw_(st.floats(0.2, 1.0)))
    return reward, p_log, p_new


@settings(max_examples=200, deadline=None)
@given(log=logs())
def test_ips_of_the_logging_policy_is_the_sample_mean(log: tuple[np.ndarray, ...]) -> None:
    reward, p_log, _ = log
    t = tally(reward, p_log, p_log)
    ips, logged = estimate(t, "ips", min_ess=0), estimate(t, "logged")
    if np.ptp(reward) == 0:
        assert isinstance(ips, Unsupported) and isinstance(logged, Unsupported)
        return
    assert isinstance(ips, Estimate) and isinstance(logged, Estimate)
    assert ips.estimate == pytest.approx(reward.mean(), rel=1e-12, abs=1e-12)
    assert ips.estimate == pytest.approx(logged.estimate, rel=1e-12, abs=1e-12)
    assert ips.ess == pytest.approx(len(reward)) and ips.zero_share == 0.0


@settings(max_examples=300, deadline=None)
@given(log=logs())
def test_every_estimate_lies_in_its_interval_and_snips_in_the_reward_range(
    log: tuple[np.ndarray, ...],
) -> None:
    reward, p_log, p_new = log
    q = np.full(len(reward), reward.mean())
    t = tally(reward, p_log, p_new, q_shown=q, q_new=q * 0.9)
    assert t.ess <= t.n + 1e-9
    for method in METHODS:
        result = estimate(t, method, min_ess=2)
        if isinstance(result, Estimate):
            assert result.low <= result.estimate <= result.high, result
            assert result.ess <= result.n + 1e-9
            json.dumps(result.to_json())
    snips = estimate(t, "snips", min_ess=2)
    if isinstance(snips, Estimate):
        assert reward.min() - 1e-12 <= snips.estimate <= reward.max() + 1e-12


@settings(max_examples=100, deadline=None)
@given(log=logs(), cut=st.floats(0.0, 1.0))
def test_tallies_of_chunks_add_up_to_the_tally_of_all_rows(
    log: tuple[np.ndarray, ...], cut: float
) -> None:
    reward, p_log, p_new = log
    i = int(cut * len(reward))
    whole = tally(reward, p_log, p_new)
    parts = tally(reward[:i], p_log[:i], p_new[:i]) + tally(reward[i:], p_log[i:], p_new[i:])
    assert parts.n == whole.n and parts.zeros == whole.zeros
    for method in METHODS:
        a, b = estimate(whole, method, min_ess=2), estimate(parts, method, min_ess=2)
        assert type(a) is type(b)
        if isinstance(a, Estimate) and isinstance(b, Estimate):
            assert (a.estimate, a.low, a.high) == pytest.approx((b.estimate, b.low, b.high))


def test_right_skewed_terms_get_an_interval_that_reaches_further_up() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    p_log = np.where(rng.random(n) < 0.05, 0.02, 0.9)  # rare rows with weight 50
    p_new = np.where(p_log < 0.5, 1.0, 0.0)
    reward = (rng.random(n) < 0.3).astype(float)
    result = estimate(tally(reward, p_log, p_new), "ips")
    assert isinstance(result, Estimate)
    assert result.high - result.estimate > 1.1 * (result.estimate - result.low), result
    assert result.max_weight == 50.0 and result.zero_share == pytest.approx(np.mean(p_new == 0))


def test_symmetric_terms_get_the_normal_interval() -> None:
    reward = np.array([0.0, 1.0] * 50)
    result = estimate(tally(reward, np.ones(100), np.ones(100)), "logged")
    assert isinstance(result, Estimate)
    half = 1.959963984540054 * reward.std(ddof=1) / 10
    assert (result.low, result.high) == pytest.approx((0.5 - half, 0.5 + half))


def _reason(result: object) -> str:
    assert isinstance(result, Unsupported), result
    json.dumps(result.to_json())
    return result.reason


def test_refusals_say_why() -> None:
    n = 200
    reward = np.tile([0.0, 1.0], n // 2)
    p_log = np.full(n, 0.5)
    assert "0 logged decisions" in _reason(estimate(Tally(), "ips"))
    assert "0 logged decisions" in _reason(estimate(Tally(), "logged"))
    t = tally(reward, p_log, p_log, unsupported=np.full(n, 0.1))
    assert "could not show" in _reason(estimate(t, "snips"))
    assert isinstance(estimate(t, "logged"), Estimate)  # the log's own value needs no support
    rare = np.where(np.arange(n) < 10, 0.5, 0.0)  # the candidate agrees with 10 rows
    assert "effective sample size 10.0" in _reason(estimate(tally(reward, p_log, rare), "ips"))
    assert isinstance(estimate(tally(reward, p_log, rare), "ips", min_ess=5), Estimate)
    assert "reward model" in _reason(estimate(tally(reward, p_log, p_log), "dr"))
    assert "same" in _reason(estimate(tally(np.zeros(n), p_log, p_log), "ips"))
    # terms so tiny that their spread's 1.5th power underflows: no spread, not a crash
    tiny = tally(reward * 1e-119, p_log, p_log)
    assert "same" in _reason(estimate(tiny, "logged"))


def test_tally_pmf_finds_p_new_q_new_and_unsupported_mass() -> None:
    logged = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.1, 0.0, 0.9]])
    chosen = np.array([1, 2, 0])
    p_log = logged[np.arange(3), chosen]
    pmf = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.5, 0.25, 0.25]])
    qhat = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
    reward = np.array([1.0, 0.0, 1.0])
    t = tally_pmf(reward, p_log, chosen, pmf, qhat=qhat, logged_pmf=logged)
    p_new = pmf[np.arange(3), chosen]
    q_new = (pmf * qhat).sum(axis=1)
    manual = tally(
        reward,
        p_log,
        p_new,
        q_shown=qhat[np.arange(3), chosen],
        q_new=q_new,
        unsupported=np.array([0.0, 0.0, 0.25]),
    )
    assert t == manual
    assert t.unsupported == pytest.approx(0.25)  # row 2 puts 0.25 where the logger had 0
    missing = tally_pmf(reward, p_log, chosen, pmf * 0.8)  # 0.2 outside the columns
    assert missing.unsupported == pytest.approx(0.6)
    with pytest.raises(InvalidInput, match="logged_pmf at the chosen"):
        tally_pmf(reward, p_log * 0.9, chosen, pmf, logged_pmf=logged)
    with pytest.raises(InvalidInput, match="more than 1"):
        tally_pmf(reward, p_log, chosen, np.full((3, 3), 0.4))
    with pytest.raises(InvalidInput, match=r"pmf entries must be in \[0, 1\]"):
        tally_pmf(reward, p_log, chosen, np.where(pmf > 0.9, np.nan, pmf))
    with pytest.raises(InvalidInput, match="qhat must be finite"):
        tally_pmf(reward, p_log, chosen, pmf, qhat=qhat * np.inf)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_log": [0.5, 0.0]}, "p_log must be in"),
        ({"p_log": [0.5, 1.5]}, "p_log must be in"),
        ({"p_new": [0.5, -0.1]}, "p_new must be in"),
        ({"p_new": [0.5]}, "p_new must be 2 values"),
        ({"reward": [1.0, float("nan")]}, "reward must be finite"),
        ({"reward": [[1.0, 0.0]]}, "reward must be a 1-D array"),
        ({"q_shown": [0.1, 0.2]}, "come together"),
        ({"q_shown": [0.1, 0.2], "q_new": [0.1]}, "q_new must be 2 values"),
        ({"unsupported": [0.0, -1.0]}, "unsupported mass"),
    ],
)
def test_tally_rejects_bad_input(kwargs: dict[str, list[float]], message: str) -> None:
    args: dict[str, object] = {"reward": [1.0, 0.0], "p_log": [0.5, 0.5], "p_new": [0.5, 0.5]}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        tally(**args)  # type: ignore[arg-type]  # the table's values are array-likes


def test_estimate_rejects_bad_alpha_and_method() -> None:
    t = tally([1.0, 0.0], [0.5, 0.5], [0.5, 0.5])
    with pytest.raises(InvalidInput, match="alpha"):
        estimate(t, "ips", alpha=1.0)
    with pytest.raises(InvalidInput, match="method"):
        estimate(t, "dm")  # type: ignore[arg-type]  # an unknown method on purpose


def test_cross_fit_never_predicts_a_row_with_a_model_that_saw_it() -> None:
    rng = np.random.default_rng(0)
    n, k, d = 400, 4, 3
    x = rng.normal(size=(n, d))
    chosen = rng.integers(k, size=n)
    reward = x[:, 0] * (chosen + 1) + rng.normal(scale=0.1, size=n)
    q = cross_fit(x, chosen, reward, k)
    changed = reward.copy()
    changed[::2] += 100.0  # every row of fold 0
    q2 = cross_fit(x, chosen, changed, k)
    assert np.array_equal(q[::2], q2[::2])  # fold 0 is predicted by the model of fold 1
    assert not np.allclose(q[1::2], q2[1::2])
    truth = x[:, :1] * (np.arange(k) + 1)
    assert np.abs(q - truth).mean() < 0.1  # the ridge finds a linear truth
    means = cross_fit(None, chosen, reward, k)  # no features: shrunk per-action means
    assert means.shape == (n, k) and np.allclose(means[::2], means[0])


def test_reward_model_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput, match="folds"):
        fit_rewards(None, [0, 1], [1.0, 0.0], 2, folds=1)
    with pytest.raises(InvalidInput, match="ridge"):
        fit_rewards(None, [0, 1], [1.0, 0.0], 2, ridge=0.0)
    with pytest.raises(InvalidInput, match="chosen indices"):
        fit_rewards(None, [0, 2], [1.0, 0.0], 2)
    model = fit_rewards(np.zeros((2, 3)), [0, 1], [1.0, 0.0], 2)
    with pytest.raises(InvalidInput, match="features"):
        model.predict(np.zeros((2, 2)), [0, 1])


def coverage(
    runs: int, n: int, epsilon: float
) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Share of runs whose interval holds the candidate's true value, by (candidate,
    method); and the share of runs refused, by candidate."""
    world = make_world(0, epsilon=epsilon)
    hits: dict[tuple[str, str], list[bool]] = {}
    refused: dict[str, list[bool]] = {c: [] for c in CANDIDATES}
    for run in range(runs):
        log = draw(world, n, np.random.default_rng(10_000 + run))
        qhat = cross_fit(world.features[log.context], log.chosen, log.reward, world.actions)
        for name in CANDIDATES:
            pmf = world.candidates[name][log.context]
            t = tally_pmf(
                log.reward,
                log.p_log,
                log.chosen,
                pmf,
                qhat=qhat,
                logged_pmf=world.logging[log.context],
            )
            truth = world.value(world.candidates[name])
            results = report(t)
            refused[name].append(isinstance(results.ips, Unsupported))
            for method in METHODS[1:]:
                result = getattr(results, method)
                if isinstance(result, Estimate):
                    hits.setdefault((name, method), []).append(result.low <= truth <= result.high)
    rates = {key: float(np.mean(v)) for key, v in hits.items()}
    return rates, {c: float(np.mean(v)) for c, v in refused.items()}


def test_intervals_cover_the_true_value_at_about_their_nominal_rate() -> None:
    rates, refused = coverage(runs=200, n=2000, epsilon=0.3)
    table = ", ".join(f"{c}/{m} {r:.3f}" for (c, m), r in sorted(rates.items()))
    message = f"95% intervals, 200 runs x 2000 rows: {table}; refused {refused}"
    assert len(rates) == len(CANDIDATES) * 3, message
    assert all(0.90 <= r <= 0.99 for r in rates.values()), message
    assert max(refused.values()) < 0.05, message
