"""`python -m benchmarks.optimize`: auto-optimisation judged on the half of a stream it did not see.

For every quality storefront (benchmarks.envs) and seed, a catalog runs the first half of
the stream online with its current settings and the catalog's exploration floor, logging
what the product logs (the exact pmf, the chosen action, its probability and reward).
Auto-optimisation then runs on that log exactly as `POST .../optimizations` does: the
current settings and engine.optimize.GRID replayed by the job's own adapter
(jobs.evaluate.LearningPolicy, each trained progressively from an empty model), folded by
engine.evaluation and judged by engine.optimize.choose. The second half is then played
twice on the same stream with the same random numbers: by the current model, warm, going
on learning (what runs if nothing is promoted), and by the promoted settings from an empty
model (what a promotion does: api.serving.replica starts a new model). Every grid setting
also plays the second half from an empty model, which says whether a better setting
existed at all.

Two starting points: the default settings (`default`) and a catalog that collected its
first half uniformly at random (`uniform`), where better settings certainly exist. The
measure is the second half's expected regret (the click rates are known), lower is better.

    python -m benchmarks.optimize [--seeds 20] [--floor 0.02] [--envs ...]   # 10 minutes
    python -m benchmarks optimize [--quick]       # the same, inside the benchmark suite
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.common import mean_ci, save_figure, table
from benchmarks.envs import ENVS, Env, Stream
from benchmarks.quality import learn_online, settings_for
from engine.catalog import Catalog
from engine.evaluation import Evaluation, Row, RowPolicy
from engine.learning import DEFAULT_FLOOR, Learning, parse_learning
from engine.limits import Limits
from engine.ope import Report
from engine.optimize import CURRENT, GRID, candidate_alpha, choose
from engine.records import TrainingExample
from engine.sampling import Pmf
from jobs.evaluate import LearningPolicy
from policies.base import Example, Policy
from policies.registry import build

STARTS: dict[str, dict[str, object]] = {"default": {}, "uniform": {"policy": "uniform"}}
CATALOG = "bench"


@dataclass(frozen=True)
class Outcome:
    env: str
    seed: int
    start: str
    promoted: str | None
    reason: str
    replaced: float  # second-half regret of the current model, warm
    kept: float  # second-half regret of what runs after the verdict
    cold: dict[str, float]  # second-half regret of every grid setting from an empty model
    ess: dict[str, float]  # the SNIPS effective sample size of every candidate


def _grid() -> dict[str, Learning]:
    limits = Limits()
    out: dict[str, Learning] = {}
    for spec in GRID:
        learning = spec["learning"]
        assert isinstance(spec["name"], str)
        out[spec["name"]] = parse_learning(learning, limits)
    return out


def play(task: tuple[str, int, str, int, int, float]) -> Outcome:
    env_name, seed, start, steps, delay, floor = task
    env = ENVS[env_name]()
    stream = env.stream(seed, steps)
    half = steps // 2
    tag = f"{env_name}/{seed}"
    current = parse_learning(STARTS[start], Limits())
    log: list[tuple[Pmf, Example]] = []
    model = build(current)
    learn_online(
        model, env, stream, delay, tag, floor, range(half), lambda t, p, e: log.append((p, e))
    )
    grid = _grid()
    reports = _optimise(env, current, grid, log)
    verdict = choose(reports)
    second = range(half, steps)
    best = stream.ctr.max(axis=1)
    replaced = _regret(
        stream, best, second, learn_online(model, env, stream, delay, tag, floor, second)
    )
    model.close()
    cold = {
        name: _cold(learning, env, stream, best, second, delay, tag, floor)
        for name, learning in grid.items()
    }
    kept = cold[verdict.promote] if verdict.promote else replaced
    ess = {name: _ess(r.snips) for name, r in reports.items()}
    return Outcome(
        env_name, seed, start, verdict.promote, verdict.reason, replaced, kept, cold, ess
    )


def _optimise(
    env: Env, current: Learning, grid: dict[str, Learning], log: list[tuple[Pmf, Example]]
) -> dict[str, Report]:
    catalog = Catalog(CATALOG, 1, env.actions, current, 0.0)
    candidates = {CURRENT: current, **grid}
    policies: dict[str, RowPolicy] = {n: LearningPolicy(build(lr)) for n, lr in candidates.items()}
    evaluation = Evaluation(policies, candidate_alpha(0.05, len(grid)))  # as the API does
    ids = [a.id for a in env.actions]
    for t, (pmf, e) in enumerate(log):
        ex = TrainingExample(
            event_id=str(t),
            catalog=CATALOG,
            catalog_version=1,
            context=e.context,
            eligible=ids,
            chosen=e.chosen,
            probability=e.probability,
            reward=e.reward,
            rewards=int(e.reward > 0),
            reason="reward",
            decided_ts=float(t),
            emitted_ts=float(t),
            pmf=[float(x) for x in pmf],
        )
        evaluation.add(Row(ex, list(env.actions), catalog))
    reports = evaluation.reports()
    for policy in policies.values():
        assert isinstance(policy, LearningPolicy)
        policy.policy.close()
    return reports


def _cold(
    learning: Learning,
    env: Env,
    stream: Stream,
    best: np.ndarray,
    steps: range,
    delay: int,
    tag: str,
    floor: float,
) -> float:
    policy: Policy = build(learning)
    try:
        return _regret(
            stream, best, steps, learn_online(policy, env, stream, delay, tag, floor, steps)
        )
    finally:
        policy.close()


def _regret(stream: Stream, best: np.ndarray, steps: range, chosen: np.ndarray) -> float:
    index = np.arange(steps.start, steps.stop)
    return float((best[index] - stream.ctr[index, chosen]).sum())


def _ess(result: object) -> float:
    return float(getattr(result, "ess", 0.0))


def run(
    quick: bool,
    out: Path,
    seeds: int | None = None,
    floor: float = DEFAULT_FLOOR,
    envs: Sequence[str] = tuple(ENVS),
) -> dict[str, object]:
    s = settings_for(quick)
    n = seeds if seeds is not None else (2 if quick else 20)
    tasks = [
        (e, seed, start, s.steps[e], s.delay, floor)
        for start in STARTS
        for e in envs
        for seed in range(n)
    ]
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(tasks), desc="optimize: start x env x seed", leave=False)
    processes = 1 if quick else min(2, os.cpu_count() or 1)
    if processes > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for outcome in pool.imap_unordered(play, tasks):
                outcomes.append(outcome)
                bar.update()
    else:
        for task in tasks:
            outcomes.append(play(task))
            bar.update()
    bar.close()
    outcomes.sort(key=lambda o: (o.start, o.env, o.seed))
    return {
        "settings": {
            "seeds": n,
            "floor": floor,
            "steps": {e: s.steps[e] for e in envs},
            "delay_decisions": s.delay,
            "grid": [g["name"] for g in GRID],
            "starts": STARTS,
        },
        "summary": summarise(outcomes),
        "outcomes": [o.__dict__ for o in outcomes],
        "plot": _plot(outcomes, out),
    }


MARGIN = 0.05  # a setting "better" on the second half: at least 5% less regret


def summarise(outcomes: Sequence[Outcome]) -> dict[str, object]:
    out: dict[str, object] = {}
    for start in STARTS:
        for env in sorted({o.env for o in outcomes}):
            rows = [o for o in outcomes if o.start == start and o.env == env]
            if not rows:
                continue
            promoted = [o for o in rows if o.promoted]
            gain = [o.replaced - o.kept for o in rows]
            better = [o for o in rows if min(o.cold.values()) < (1 - MARGIN) * o.replaced]
            mean, ci = mean_ci(gain)
            out[f"{start}/{env}"] = {
                "runs": len(rows),
                "promoted": len(promoted),
                "promoted_worse": sum(1 for o in promoted if o.kept > o.replaced),
                "better_existed": len(better),
                "promoted_where_better_existed": sum(1 for o in better if o.promoted),
                "regret_saved_second_half": mean,
                "regret_saved_ci95": ci,
                "replaced_regret": float(np.mean([o.replaced for o in rows])),
                "median_ess_current": float(np.median([o.ess[CURRENT] for o in rows])),
                "promotions": sorted({o.promoted for o in promoted if o.promoted}),
            }
    out["never_promoted_worse"] = all(
        v["promoted_worse"] == 0 for v in out.values() if isinstance(v, dict)
    )
    return out


def _plot(outcomes: Sequence[Outcome], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STARTS), figsize=(5.5 * len(STARTS), 3.8), squeeze=False)
    envs = sorted({o.env for o in outcomes})
    for ax, start in zip(axes[0], STARTS, strict=True):
        for i, env in enumerate(envs):
            rows = [o for o in outcomes if o.start == start and o.env == env]
            kept = [o.replaced - o.kept for o in rows if not o.promoted]
            moved = [o.replaced - o.kept for o in rows if o.promoted]
            ax.scatter(
                [i - 0.1] * len(kept),
                kept,
                marker="o",
                facecolors="none",
                edgecolors="C0",
                label="kept the settings" if i == 0 else None,
            )
            ax.scatter(
                [i + 0.1] * len(moved),
                moved,
                marker="^",
                color="C1",
                label="promoted" if i == 0 else None,
            )
            best = [o.replaced - min(o.cold.values()) for o in rows]
            ax.scatter(
                [i + 0.25] * len(best),
                best,
                marker="x",
                color="0.5",
                s=14,
                label="best grid setting from scratch, in hindsight" if i == 0 else None,
            )
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(envs)), envs, rotation=20)
        ax.set_title(f"started from {start}")
        ax.set_ylabel("second-half regret saved vs the model replaced")
        ax.legend(fontsize=7)
    return save_figure(
        fig, out / "optimize.png", "auto-optimisation: regret saved on the unseen half, per seed"
    )


def report(result: dict[str, object]) -> str:
    summary = result["summary"]
    assert isinstance(summary, dict)
    rows = [
        [
            key,
            v["runs"],
            v["promoted"],
            v["promoted_worse"],
            v["better_existed"],
            v["promoted_where_better_existed"],
            v["regret_saved_second_half"],
            v["regret_saved_ci95"],
            v["replaced_regret"],
            v["median_ess_current"],
            ",".join(v["promotions"]) or "-",
        ]
        for key, v in summary.items()
        if isinstance(v, dict)
    ]
    headers = [
        "start/env",
        "runs",
        "promoted",
        "worse",
        "better existed",
        "promoted there",
        "regret saved",
        "+-95%",
        "regret replaced",
        "ESS current",
        "promoted to",
    ]
    return f"{table(headers, rows)}\nnever promoted worse: {summary['never_promoted_worse']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimize", description=__doc__)
    parser.add_argument("--seeds", type=int, help="seeds per storefront (20; --quick: 2)")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR)
    parser.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args.quick, args.out, args.seeds, args.floor, args.envs)
    print(report(result))
    import json

    (args.out / "optimize.json").write_text(json.dumps(result, indent=1))
    return 0 if result["summary"]["never_promoted_worse"] else 1  # type: ignore[index]


if __name__ == "__main__":
    raise SystemExit(main())
