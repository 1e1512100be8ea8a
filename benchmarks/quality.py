"""Offline quality: Loopwise's default against baselines on simulated storefronts.

Every policy sees the same stream per (environment, seed) and learns each decision
`delay` decisions later (delayed feedback, the same for all). Actions are drawn with
engine.sampling (normalise, sample, rng_for) seeded by the step, so policies share random
numbers too (common random numbers make paired comparisons tight). Fixed rules and the
oracle are computed from the ground truth and never learn.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from benchmarks.common import Floats, curve_ci, mean_ci, save_figure, table
from benchmarks.envs import ENVS, Env, Stream
from engine.learning import Exploration, Learning
from engine.sampling import Pmf, normalise, rng_for, sample
from policies.base import Example, Policy
from policies.linucb import LinUCB
from policies.thompson import Thompson
from policies.uniform import Uniform
from policies.vw import VWPolicy

DEFAULT = "loopwise-default"
LEARNERS: dict[str, Callable[[], Policy]] = {
    # optimistic RegCB (mellowness 0.0001, unweighted), VW's adaptive SGD
    DEFAULT: lambda: VWPolicy(Learning()),
    # the default until 2026-11-27: squarecb (gamma 10, exponent 0.5), coin betting
    "vw-squarecb": lambda: VWPolicy(Learning(exploration=Exploration("squarecb"))),
    "vw-squarecb-adaptive": lambda: VWPolicy(
        Learning(exploration=Exploration("squarecb"), optimizer="adaptive")
    ),
    "vw-epsilon-0.05": lambda: VWPolicy(Learning(exploration=Exploration("epsilon"))),
    "vw-bag-5": lambda: VWPolicy(Learning(exploration=Exploration("bag"))),
    "vw-regcbopt-coin": lambda: VWPolicy(
        Learning(exploration=Exploration("regcbopt"), optimizer="coin")
    ),
    "uniform": Uniform,
    "thompson": Thompson,
    "linucb": LinUCB,
}
VW_VARIANTS = (
    DEFAULT,
    "vw-squarecb",
    "vw-squarecb-adaptive",
    "vw-epsilon-0.05",
    "vw-bag-5",
    "vw-regcbopt-coin",
)
# rule-global and rule-segment read the simulator's true click rates, which no marketer
# has; rule-segment *is* the oracle wherever clicks depend on the segment alone (zero
# regret: no learner can beat it), so it is shown as the ceiling of rules, not a baseline.
# rule-abtest is the rule a marketer can actually write: an A/B test of every action on
# the first AB_SHARE of the traffic, then each segment's winner, fixed.
RULES = ("rule-global", "rule-abtest", "rule-segment")
ORACLE = "oracle"
BASELINES = ("uniform", "thompson", "linucb", "rule-global", "rule-abtest")
AB_SHARE = 0.1


@dataclass(frozen=True)
class Settings:
    seeds: int
    steps: dict[str, int]
    delay: int
    processes: int


def settings_for(quick: bool) -> Settings:
    """5 seeds in the suite; QUALITY_SEEDS=20 for tighter intervals (about 4x the time)."""
    if quick:
        return Settings(seeds=2, steps=dict.fromkeys(ENVS, 200), delay=10, processes=1)
    steps = {"segments": 3000, "preferences": 4000, "interactions": 4000, "drift": 4000}
    steps["sparse"] = 8000
    seeds = int(os.environ.get("QUALITY_SEEDS", "5"))
    return Settings(seeds=seeds, steps=steps, delay=50, processes=min(2, os.cpu_count() or 1))


def play(env_name: str, seed: int, steps: int, delay: int) -> dict[str, tuple[Floats, Floats]]:
    """One stream through every policy: name -> (rewards per step, regret per step)."""
    env = ENVS[env_name]()
    stream = env.stream(seed, steps)
    best = stream.ctr.max(axis=1)
    out: dict[str, tuple[Floats, Floats]] = {}
    for name, make in LEARNERS.items():
        policy = make()
        chosen = learn_online(policy, env, stream, delay, f"{env_name}/{seed}")
        policy.close()
        out[name] = score(stream, chosen, best)
    for name, chosen in _fixed(stream, f"{env_name}/{seed}").items():
        out[name] = score(stream, chosen, best)
    return out


def learn_online(
    policy: Policy,
    env: Env,
    stream: Stream,
    delay: int,
    tag: str,
    floor: float = 0.0,
    steps: range | None = None,
    logged: Callable[[int, Pmf, Example], None] | None = None,
) -> np.ndarray:
    """The action chosen at every step of `steps` (all of them by default), the policy
    closed after; `floor` as a catalog's exploration floor; `logged` sees every decision
    (step, pmf, example) as it is made. Examples still waiting at the end are not learned."""
    pending: deque[Example] = deque()
    steps = steps if steps is not None else range(len(stream.contexts))
    chosen = np.zeros(len(steps), dtype=np.int64)
    actions = env.actions
    for i, t in enumerate(steps):
        context = stream.contexts[t]
        pmf = normalise(policy.distribution(context, actions), floor=floor)
        index, probability = sample(pmf, rng_for(f"{tag}/{t}"))
        chosen[i] = index
        reward = float(stream.uniforms[t] < stream.ctr[t, index])
        example = Example(context, actions, index, probability, reward)
        if logged is not None:
            logged(t, pmf, example)
        pending.append(example)
        if len(pending) > delay:
            policy.learn(pending.popleft())
    return chosen


def _fixed(stream: Stream, tag: str) -> dict[str, np.ndarray]:
    """The marketer's rules and the oracle; only rule-abtest is learned from clicks."""
    per_segment = {
        int(s): int(np.argmax(stream.ctr[stream.segments == s].mean(axis=0)))
        for s in np.unique(stream.segments)
    }
    return {
        "rule-global": global_rule(stream),
        "rule-abtest": ab_test_rule(stream, tag),
        "rule-segment": np.array([per_segment[int(s)] for s in stream.segments], dtype=np.int64),
        ORACLE: np.argmax(stream.ctr, axis=1).astype(np.int64),
    }


def global_rule(stream: Stream) -> np.ndarray:
    """The one action best over all visitors by the true click rates, at every step."""
    overall = int(np.argmax(stream.ctr.mean(axis=0)))
    return np.full(len(stream.contexts), overall, dtype=np.int64)


def ab_test_rule(stream: Stream, tag: str) -> np.ndarray:
    """Uniform on the first AB_SHARE of the run, then each segment's observed winner.

    The winner has the highest posterior mean click rate (Beta(1, 1) prior), so an action
    shown twice without a click ranks below one never shown; a segment the test never saw
    gets the test's overall winner. The test's own decisions count towards the regret.
    """
    steps, k = stream.ctr.shape
    test = max(1, int(AB_SHARE * steps))
    uniform = np.full(k, 1.0 / k)
    chosen = np.array([sample(uniform, rng_for(f"{tag}/ab/{t}"))[0] for t in range(test)])
    clicks = stream.uniforms[:test] < stream.ctr[np.arange(test), chosen]

    def winner(mask: npt.NDArray[np.bool_]) -> int:
        shown = np.bincount(chosen[mask], minlength=k)
        clicked = np.bincount(chosen[mask], weights=clicks[mask], minlength=k)
        return int(np.argmax((clicked + 1.0) / (shown + 2.0)))

    tested = stream.segments[:test]
    overall = winner(np.ones(test, dtype=bool))
    rule = {int(s): winner(tested == s) for s in np.unique(tested)}
    after = [rule.get(int(s), overall) for s in stream.segments[test:]]
    return np.concatenate([chosen, np.array(after, dtype=np.int64)]).astype(np.int64)


def score(stream: Stream, chosen: np.ndarray, best: Floats) -> tuple[Floats, Floats]:
    steps = np.arange(len(chosen))
    shown = stream.ctr[steps, chosen]
    rewards = (stream.uniforms < shown).astype(np.float64)
    return rewards, best - shown


def _task(args: tuple[str, int, int, int]) -> tuple[str, int, dict[str, tuple[Floats, Floats]]]:
    env_name, seed, steps, delay = args
    return env_name, seed, play(env_name, seed, steps, delay)


def run(quick: bool, out: Path, envs: tuple[str, ...] = tuple(ENVS)) -> dict[str, object]:
    s = settings_for(quick)
    tasks = [(e, seed, s.steps[e], s.delay) for e in envs for seed in range(s.seeds)]
    results: dict[str, dict[int, dict[str, tuple[Floats, Floats]]]] = {e: {} for e in envs}
    bar = tqdm(total=len(tasks), desc="quality: env x seed", leave=False)
    if s.processes > 1:
        with multiprocessing.get_context("spawn").Pool(s.processes) as pool:
            for env_name, seed, played in pool.imap_unordered(_task, tasks):
                results[env_name][seed] = played
                bar.update()
    else:
        for task in tasks:
            env_name, seed, played = _task(task)
            results[env_name][seed] = played
            bar.update()
    bar.close()
    summary = {e: _summarise(results[e]) for e in envs}
    plots = _plot(results, out)
    verdict = _verdict(summary)
    return {
        "settings": {
            "seeds": s.seeds,
            "steps": {e: s.steps[e] for e in envs},
            "delay_decisions": s.delay,
            "policies": [*LEARNERS, *RULES, ORACLE],
            "environments": {e: ENVS[e]().description for e in envs},
            "thompson": "Monte-Carlo argmax pmf, 512 draws seeded by features+posterior hash",
            "linucb": "disjoint, 64 hashed dims, alpha 1, epsilon 0.05",
            "rules": {
                "rule-global": "the best single action by the true click rates (known to us)",
                "rule-abtest": f"uniform A/B test on the first {AB_SHARE:.0%} of the run, "
                "then each segment's observed winner (what a marketer can write)",
                "rule-segment": "each segment's best action by the true click rates: the "
                "ceiling of rules, equal to the oracle where clicks depend on the segment "
                "alone, so not counted as a baseline",
            },
        },
        "environments": summary,
        "verdict": verdict,
        "plots": plots,
    }


def _summarise(by_seed: dict[int, dict[str, tuple[Floats, Floats]]]) -> dict[str, object]:
    seeds = sorted(by_seed)
    names = list(by_seed[seeds[0]])
    out: dict[str, object] = {}
    for name in names:
        total = [float(by_seed[s][name][0].sum()) for s in seeds]
        regret = [float(by_seed[s][name][1].sum()) for s in seeds]
        steps = len(by_seed[seeds[0]][name][0])
        tail = [float(by_seed[s][name][1][steps // 2 :].mean()) for s in seeds]
        diff = [float(by_seed[s][DEFAULT][1].sum() - by_seed[s][name][1].sum()) for s in seeds]
        reward_mean, reward_ci = mean_ci(total)
        regret_mean, regret_ci = mean_ci(regret)
        diff_mean, diff_ci = mean_ci(diff)
        out[name] = {
            "cumulative_reward": reward_mean,
            "cumulative_reward_ci95": reward_ci,
            "ctr": reward_mean / steps,
            "cumulative_regret": regret_mean,
            "cumulative_regret_ci95": regret_ci,
            "regret_per_step_second_half": float(np.mean(tail)),
            # paired over seeds: default's regret minus this one's (< 0: default better)
            "default_minus_this_regret": diff_mean,
            "default_minus_this_regret_ci95": diff_ci,
        }
    return out


def _verdict(summary: dict[str, dict[str, object]]) -> dict[str, object]:
    beats: dict[str, dict[str, str]] = {}
    for env_name, rows in summary.items():
        beats[env_name] = {}
        for name in BASELINES:
            row = rows[name]
            assert isinstance(row, dict)
            d, ci = (
                float(row["default_minus_this_regret"]),
                float(row["default_minus_this_regret_ci95"]),
            )
            beats[env_name][name] = (
                "better" if d + ci < 0 else "worse" if d - ci > 0 else "tie (95% CI spans 0)"
            )
    everywhere = all(v == "better" for e in beats.values() for v in e.values())
    learning_only = all(
        beats[e][b] == "better" for e in beats for b in ("uniform", "thompson", "linucb")
    )
    ranking = {
        e: sorted(VW_VARIANTS, key=lambda n: float(rows[n]["cumulative_regret"]))  # type: ignore[index]
        for e, rows in summary.items()
    }
    mean_rank = {n: float(np.mean([ranking[e].index(n) + 1 for e in ranking])) for n in VW_VARIANTS}
    return {
        "default_vs_baselines": beats,
        "default_beats_every_non_oracle_baseline_everywhere": everywhere,
        "default_beats_learning_baselines_everywhere": learning_only,
        "exploration_ranking_by_regret": ranking,
        "exploration_mean_rank": mean_rank,
        "exploration_favoured": min(mean_rank, key=lambda n: mean_rank[n]),
    }


def _plot(results: dict[str, dict[int, dict[str, tuple[Floats, Floats]]]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[str] = []
    for which, title, index in (
        ("regret", "cumulative regret", 1),
        ("reward", "cumulative reward", 0),
    ):
        fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
        for ax, (env_name, by_seed) in zip(axes[0], results.items(), strict=True):
            seeds = sorted(by_seed)
            for name in by_seed[seeds[0]]:
                rows = np.array([np.cumsum(by_seed[s][name][index]) for s in seeds])
                mean, half = curve_ci(rows)
                x = np.arange(1, mean.size + 1)
                step = max(1, mean.size // 300)
                style = "-" if name in (DEFAULT, ORACLE) else "--" if name in RULES else ":"
                width = 2.2 if name == DEFAULT else 1.0
                ax.plot(x[::step], mean[::step], style, lw=width, label=name)
                ax.fill_between(x[::step], (mean - half)[::step], (mean + half)[::step], alpha=0.2)
            ax.set_title(env_name)
            ax.set_xlabel("decisions")
            ax.set_ylabel(title)
        axes[0][0].legend(fontsize=7)
        paths.append(
            save_figure(fig, out / f"quality_{which}.png", f"{title} (mean and 95% CI over seeds)")
        )
    return paths


def report(result: dict[str, object]) -> str:
    lines: list[str] = []
    envs = result["environments"]
    assert isinstance(envs, dict)
    for env_name, rows in envs.items():
        body = [
            [
                name,
                r["cumulative_reward"],
                r["cumulative_reward_ci95"],
                r["ctr"],
                r["cumulative_regret"],
                r["cumulative_regret_ci95"],
                r["default_minus_this_regret"],
                r["default_minus_this_regret_ci95"],
            ]
            for name, r in rows.items()
        ]
        headers = ["policy", "reward", "+-95%", "ctr", "regret", "+-95%", "dflt-this", "+-95%"]
        lines += [f"quality / {env_name}", table(headers, body), ""]
    verdict = result["verdict"]
    assert isinstance(verdict, dict)
    for key in (
        "default_beats_every_non_oracle_baseline_everywhere",
        "default_beats_learning_baselines_everywhere",
        "exploration_mean_rank",
        "exploration_favoured",
    ):
        lines.append(f"{key}: {verdict[key]}")
    return "\n".join(lines)
