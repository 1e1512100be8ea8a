"""Off-policy evaluation and confidence sequences: speed, and coverage against known truth.

Speed, at 50 actions: logged decisions evaluated per second per candidate (IPS, SNIPS and
DR from the candidate's [n, 50] pmf, the logged pmf and the reward model's [n, 50]
predictions: `engine.ope.tally_pmf` then `report`), beside two baselines in the same run:
a plain Python loop over the rows doing the same sums, and `numpy.mean` of the rewards
(the floor: one pass over one array). The reward model (cross-fitted ridge, 20 features)
is timed on its own. One day of a 100 decisions/s storefront (8.64 M rows) is evaluated
in chunks of 100,000 rows: the chunk's arrays are built once and tallied again and again
(the estimators' work does not depend on the values), so memory stays at one chunk; the
reward model's fit on a day is extrapolated from the chunk (it is linear in rows).

Coverage: the synthetic bandit of benchmarks/ope_world.py (10 actions, exact values),
many seeded logs of 2,000 rows: how often each 95% interval holds the candidate's true
value, the interval engine.ope gives (Hall's skewness-corrected one; for dr the normal
one) beside the normal interval on the same terms (the baseline), at three exploration
floors: the deterministic `rule` candidate is the heavy-weight case (ESS ~50-120). The confidence
sequence: how often it holds the logging policy's value at every time of a stream,
beside a fixed-n normal interval read at 20 looks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from benchmarks.common import Floats, save_figure, table
from benchmarks.ope_world import CANDIDATES, World, draw, make_world
from engine.ope import (
    METHODS,
    Estimate,
    Tally,
    Unsupported,
    cross_fit,
    fit_rewards,
    tally_pmf,
)
from engine.ope import report as estimates
from engine.sequential import Difference, Mean

ACTIONS, FEATURES = 50, 20
DAY = 100 * 86_400  # decisions in a day at 100 decisions/s
TARGET_PER_S = 20_000.0
EPSILONS = (0.2, 0.3, 0.5)
LOOKS = 20
Z = NormalDist().inv_cdf(0.975)


def run(quick: bool, out: Path) -> dict[str, object]:
    chunk = 5_000 if quick else 100_000
    speed = _speed(chunk, reps=2 if quick else 10, loop_rows=1_000 if quick else 20_000)
    day = _day(chunk, DAY if not quick else 4 * chunk, speed)
    runs = 20 if quick else 500
    coverage = _coverage(runs, 500 if quick else 2_000)
    sequences = _sequences(runs, 500 if quick else 2_000)
    plot = _plot(coverage, sequences, out)
    return {
        "settings": {
            "actions": ACTIONS,
            "features": FEATURES,
            "chunk_rows": chunk,
            "coverage_runs": runs,
            "coverage_rows": 500 if quick else 2_000,
            "epsilons": list(EPSILONS),
            "looks": LOOKS,
        },
        "speed": speed,
        "day": day,
        "coverage": coverage,
        "sequences": sequences,
        "plot": plot,
        "targets": {
            f"evaluate>={TARGET_PER_S:.0f}/s": speed["evaluate_per_s"] >= TARGET_PER_S,
            f"with_model_fit>={TARGET_PER_S:.0f}/s": speed["with_fit_per_s"] >= TARGET_PER_S,
        },
    }


@dataclass(frozen=True, slots=True)
class Chunk:
    """Logged decisions at 50 actions with a softmax candidate's pmf, as arrays."""

    reward: Floats
    p_log: Floats
    chosen: npt.NDArray[np.int64]
    pmf: Floats  # [n, 50] the candidate's
    logged: Floats  # [n, 50] the logging policy's
    features: Floats  # [n, 20]

    def tally(self, qhat: Floats) -> Tally:
        return tally_pmf(
            self.reward, self.p_log, self.chosen, self.pmf, qhat=qhat, logged_pmf=self.logged
        )


def _chunk(n: int) -> Chunk:
    world = make_world(7, contexts=1_000, actions=ACTIONS, dims=FEATURES, epsilon=0.3)
    log = draw(world, n, np.random.default_rng(7))
    return Chunk(
        reward=log.reward,
        p_log=log.p_log,
        chosen=log.chosen,
        pmf=world.candidates["softmax"][log.context],
        logged=world.logging[log.context],
        features=world.features[log.context],
    )


def _speed(n: int, reps: int, loop_rows: int) -> dict[str, float]:
    c = _chunk(n)
    fits, predicts = [], []
    for _ in range(3):
        started = time.perf_counter()
        model = fit_rewards(c.features, c.chosen, c.reward, ACTIONS)
        fitted = time.perf_counter()
        qhat = model.predict(c.features, np.arange(n))
        fits.append(fitted - started)
        predicts.append(time.perf_counter() - fitted)
    fit_s, predict_s = float(np.median(fits)), float(np.median(predicts))
    evaluate = []
    for _ in tqdm(range(reps), desc="ope: evaluate chunks", leave=False):
        t0 = time.perf_counter()
        estimates(c.tally(qhat))
        evaluate.append(time.perf_counter() - t0)
    floor = []
    for _ in range(reps):
        t0 = time.perf_counter()
        float(np.mean(c.reward))
        floor.append(time.perf_counter() - t0)
    loop_s = _python_loop(c, qhat, loop_rows)
    per_row = float(np.median(evaluate)) / n
    fit_per_row = (fit_s + predict_s) / n
    return {
        "evaluate_per_s": 1.0 / per_row,
        "with_fit_per_s": 1.0 / (per_row + fit_per_row),
        "fit_per_s": n / fit_s,
        "predict_per_s": n / predict_s,
        "python_loop_per_s": loop_rows / loop_s,
        "numpy_mean_per_s": n / float(np.median(floor)),
        "ratio_evaluate_over_python_loop": (1.0 / per_row) / (loop_rows / loop_s),
        "ratio_evaluate_over_numpy_mean": (1.0 / per_row) / (n / float(np.median(floor))),
    }


def _python_loop(c: Chunk, qhat: Floats, rows: int) -> float:
    """The same sums as `tally_pmf`, row by row in plain Python (lists, no numpy)."""
    reward, p_log, chosen = (
        c.reward[:rows].tolist(),
        c.p_log[:rows].tolist(),
        c.chosen[:rows].tolist(),
    )
    pmf, logged, q = c.pmf[:rows].tolist(), c.logged[:rows].tolist(), qhat[:rows].tolist()
    started = time.perf_counter()
    sums = [0.0] * 8
    for i in range(rows):
        row, a, r, p = pmf[i], chosen[i], reward[i], p_log[i]
        w = row[a] / p
        q_new = sum(x * y for x, y in zip(row, q[i], strict=True))
        supported = sum(x for x, y in zip(row, logged[i], strict=True) if y > 0.0)
        d = q_new + w * (r - q[i][a])
        for j, term in enumerate((w, w * w, w * r, w * w * r, w * w * r * r, d, d * d)):
            sums[j] += term
        sums[7] += max(1.0 - supported, 0.0)
    return time.perf_counter() - started


def _day(chunk: int, rows: int, speed: dict[str, float]) -> dict[str, float]:
    c = _chunk(chunk)
    qhat = cross_fit(c.features, c.chosen, c.reward, ACTIONS)
    chunks = math.ceil(rows / chunk)
    started = time.perf_counter()
    total = Tally()
    for _ in tqdm(range(chunks), desc="ope: a day in chunks", leave=False):
        total = total + c.tally(qhat)
    estimates(total)
    seconds = time.perf_counter() - started
    fit_seconds = rows * (1.0 / speed["fit_per_s"] + 1.0 / speed["predict_per_s"])
    return {
        "rows": float(chunks * chunk),
        "evaluate_seconds": seconds,
        "model_seconds_extrapolated": fit_seconds,
        "total_seconds": seconds + fit_seconds,
        "chunk_mb": 3 * chunk * ACTIONS * 8 / 1e6,  # pmf, logged pmf, qhat
    }


def _coverage(runs: int, n: int) -> list[dict[str, object]]:
    """Per (epsilon, candidate, method): coverage of Hall's and of the normal interval."""
    rows: list[dict[str, object]] = []
    bar = tqdm(total=runs * len(EPSILONS), desc="ope: coverage runs", leave=False)
    for epsilon in EPSILONS:
        world = make_world(0, epsilon=epsilon)
        tallies: dict[tuple[str, str], list[tuple[bool, bool, float, float]]] = {}
        refused: dict[str, int] = dict.fromkeys(CANDIDATES, 0)
        ess: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        for run in range(runs):
            _one_run(world, n, run, tallies, refused, ess)
            bar.update()
        for name in CANDIDATES:
            for method in METHODS[1:]:
                got = np.array(tallies.get((name, method), []), dtype=np.float64).reshape(-1, 4)
                rows.append(
                    {
                        "epsilon": epsilon,
                        "candidate": name,
                        "method": method,
                        "runs": int(got.shape[0]),
                        "refused": refused[name] / runs,
                        "mean_ess": float(np.mean(ess[name])),
                        "coverage": float(got[:, 0].mean()) if got.size else math.nan,
                        "normal_coverage": float(got[:, 1].mean()) if got.size else math.nan,
                        "mean_width": float(got[:, 2].mean()) if got.size else math.nan,
                        "mean_abs_error": float(got[:, 3].mean()) if got.size else math.nan,
                    }
                )
    bar.close()
    return rows


def _one_run(
    world: World,
    n: int,
    run: int,
    tallies: dict[tuple[str, str], list[tuple[bool, bool, float, float]]],
    refused: dict[str, int],
    ess: dict[str, list[float]],
) -> None:
    log = draw(world, n, np.random.default_rng(10_000 + run))
    qhat = cross_fit(world.features[log.context], log.chosen, log.reward, world.actions)
    for name in CANDIDATES:
        pmf = world.candidates[name][log.context]
        t = tally_pmf(
            log.reward, log.p_log, log.chosen, pmf, qhat=qhat, logged_pmf=world.logging[log.context]
        )
        truth = world.value(world.candidates[name])
        results = estimates(t)
        ess[name].append(t.ess)
        refused[name] += isinstance(results.ips, Unsupported)
        for method in METHODS[1:]:
            e = getattr(results, method)
            if isinstance(e, Estimate):
                normal = abs(e.estimate - truth) <= Z * e.stderr
                tallies.setdefault((name, method), []).append(
                    (e.low <= truth <= e.high, normal, e.high - e.low, abs(e.estimate - truth))
                )


def _sequences(runs: int, n: int) -> dict[str, object]:
    """The logging policy's reward stream: the sequence at every look against a fixed-n
    normal interval read at every look; and an A/B difference (best rule vs logger)."""
    world = make_world(0, epsilon=0.3)
    truth = world.value(world.logging)
    lift = world.value(world.candidates["best"]) - truth
    kept = peeked = final = kept_diff = shown = 0
    widths: list[float] = []
    example: dict[str, list[float]] = {}
    for run in tqdm(range(runs), desc="ope: sequences", leave=False):
        rng = np.random.default_rng(20_000 + run)
        reward = draw(world, n, rng).reward
        best = draw(world, n, rng, policy=world.candidates["best"]).reward
        mean, diff = Mean(0.0, 1.0), Difference.start(0.0, 1.0)
        held = normal_held = diff_held = True
        trace: dict[str, list[float]] = {k: [] for k in ("n", "low", "high", "wlow", "whigh")}
        for a, b in zip(np.array_split(reward, LOOKS), np.array_split(best, LOOKS), strict=True):
            mean, diff = mean.add(a), diff.add(b, a)
            now, d = mean.interval(), diff.interval()
            seen = reward[: now.n]
            half = Z * seen.std(ddof=1) / math.sqrt(now.n)
            held &= now.low <= truth <= now.high
            normal_held &= abs(seen.mean() - truth) <= half
            diff_held &= d.low <= lift <= d.high
            for key, value in zip(
                trace,
                (now.n, now.low, now.high, seen.mean() - half, seen.mean() + half),
                strict=True,
            ):
                trace[key].append(float(value))
        final += abs(seen.mean() - truth) <= half
        widths.append((now.high - now.low) / (2 * half))
        kept, peeked, kept_diff = kept + held, peeked + normal_held, kept_diff + diff_held
        shown += d.low > 0.0
        if run == 0:
            example = {**trace, "truth": [truth]}
    return {
        "runs": runs,
        "rows": n,
        "truth": truth,
        "cs_never_excluded": kept / runs,
        "normal_at_every_look": peeked / runs,
        "normal_at_the_end_only": final / runs,
        "cs_width_over_normal_width_at_end": float(np.median(widths)),
        "difference_never_excluded": kept_diff / runs,
        "difference_true_lift": lift,
        "difference_showed_lift": shown / runs,
        "example": example,
    }


def _plot(coverage: list[dict[str, object]], sequences: dict[str, object], out: Path) -> str:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in coverage if r["epsilon"] == 0.3]
    labels = [f"{r['candidate']}\n{r['method']}" for r in rows]
    x = np.arange(len(rows))
    ours = [_number(r, "coverage") for r in rows]
    left.bar(x - 0.2, ours, 0.4, label="engine.ope (Hall; dr normal)")
    left.bar(x + 0.2, [_number(r, "normal_coverage") for r in rows], 0.4, label="normal")
    left.axhline(0.95, color="k", lw=0.8, ls="--")
    left.set_ylim(0.8, 1.0)
    left.set_xticks(x, labels, fontsize=6)
    left.set_title("95% interval coverage, epsilon 0.3")
    left.legend(fontsize=7)
    example = sequences["example"]
    assert isinstance(example, dict)
    right.fill_between(example["n"], example["low"], example["high"], alpha=0.3, label="CS")
    right.plot(example["n"], example["wlow"], "C1", lw=0.8, label="fixed-n normal")
    right.plot(example["n"], example["whigh"], "C1", lw=0.8)
    right.axhline(example["truth"][0], color="k", lw=0.8, ls="--", label="truth")
    right.set_xlabel("logged decisions")
    right.set_title("confidence sequence vs fixed-n interval, one stream")
    right.legend(fontsize=7)
    return save_figure(fig, out / "ope.png", "off-policy estimators and confidence sequences")


def _number(row: dict[str, object], key: str) -> float:
    value = row[key]
    assert isinstance(value, int | float)
    return float(value)


def report_rows(result: dict[str, object]) -> list[list[object]]:
    coverage = result["coverage"]
    assert isinstance(coverage, list)
    return [
        [
            r["epsilon"],
            r["candidate"],
            r["method"],
            r["mean_ess"],
            r["refused"],
            r["coverage"],
            r["normal_coverage"],
            r["mean_width"],
        ]
        for r in coverage
    ]


def report(result: dict[str, object]) -> str:
    speed, day, seq = result["speed"], result["day"], result["sequences"]
    assert isinstance(speed, dict) and isinstance(day, dict) and isinstance(seq, dict)
    speed_rows = [
        ["evaluate: tally_pmf + report (IPS, SNIPS, DR), rows/s", speed["evaluate_per_s"]],
        ["  with the reward model's fit and predict, rows/s", speed["with_fit_per_s"]],
        ["  reward model fit alone, rows/s", speed["fit_per_s"]],
        ["  reward model predict alone, rows/s", speed["predict_per_s"]],
        ["baseline: plain Python loop, rows/s", speed["python_loop_per_s"]],
        ["baseline: numpy.mean of rewards, rows/s", speed["numpy_mean_per_s"]],
        ["ratio evaluate / Python loop", speed["ratio_evaluate_over_python_loop"]],
        ["ratio evaluate / numpy.mean", speed["ratio_evaluate_over_numpy_mean"]],
    ]
    day_text = (
        f"one day at 100 decisions/s ({day['rows']:,.0f} rows, chunks of "
        f"{result['settings']['chunk_rows']:,}, {day['chunk_mb']:.0f} MB of matrices per "  # type: ignore[index]
        f"chunk): evaluated in {day['evaluate_seconds']:.1f} s measured, + reward model "
        f"{day['model_seconds_extrapolated']:.1f} s extrapolated from one chunk"
    )
    headers = ["eps", "candidate", "method", "ESS", "refused", "ope cov", "normal cov", "width"]
    seq_rows = [
        ["CS never excluded the truth (whole stream)", seq["cs_never_excluded"]],
        [f"normal interval held at all {LOOKS} looks", seq["normal_at_every_look"]],
        ["normal interval held at the end only", seq["normal_at_the_end_only"]],
        ["CS width / normal width at the end (median)", seq["cs_width_over_normal_width_at_end"]],
        ["difference CS (best - logger) never excluded", seq["difference_never_excluded"]],
        [
            f"difference CS showed the lift {seq['difference_true_lift']:.3f} > 0",
            seq["difference_showed_lift"],
        ],
    ]
    return (
        f"ope (50 actions)\n{table(['measure', 'value'], speed_rows)}\n{day_text}\n\n"
        f"95% interval coverage over {result['settings']['coverage_runs']} logs of "  # type: ignore[index]
        f"{result['settings']['coverage_rows']:,} rows (10 actions)\n"  # type: ignore[index]
        f"{table(headers, report_rows(result))}\n\n"
        f"confidence sequences, {seq['runs']} streams of {seq['rows']:,} rewards, {LOOKS} looks\n"
        f"{table(['measure', 'value'], seq_rows)}\n"
        f"plot: {result['plot']}\ntargets: {result['targets']}"
    )


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    sys.exit(main(["ope", *sys.argv[1:]]))
