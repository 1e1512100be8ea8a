"""`python -m benchmarks.sweep SPEC... [--seeds N]`: learning settings on the quality storefronts.

The evidence behind the default exploration settings (docs/decisions/default-policy.md):
every SPEC plays the streams of `python -m benchmarks quality` (same steps and seeds,
feedback 50 decisions late) and the table shows its cumulative regret, mean and 95% CI
over the seeds, per storefront. Lower is better.

SPEC is `linucb`, `rule-global` (the one action best over all visitors, read from the
simulator's true click rates), `thompson-per-segment` (Thompson sampling for each value of
`user.segment`: a learner told which feature matters, though it learns nothing about one
action from another's clicks), or an exploration algorithm with `:name=value` settings,
validated as a catalog's `learning` is:

    regcbopt                      the default (mellowness 0.0001, adaptive SGD)
    regcbopt:mellowness=0.001     squarecb:optimizer=adaptive:gamma_scale=100
    regcbopt:floor=0.05           with an exploration floor (constraints.exploration_floor)

`--envs sparse --steps 32000` plays one storefront for longer.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Sequence

from tqdm import tqdm

from benchmarks.common import mean_ci, table
from benchmarks.envs import ENVS
from benchmarks.quality import global_rule, learn_online, score, settings_for
from engine.actions import Action
from engine.errors import InvalidInput
from engine.features import Features
from engine.learning import parse_learning
from engine.limits import Limits
from engine.sampling import Pmf
from policies.base import Example, Policy
from policies.linucb import LinUCB
from policies.thompson import Thompson
from policies.vw import VWPolicy


def parse_spec(spec: str) -> tuple[Policy, float]:
    """(a fresh policy, its exploration floor) for one SPEC."""
    name, *settings = spec.split(":")
    if name == "linucb" and not settings:
        return LinUCB(), 0.0
    if name == "thompson-per-segment" and not settings:
        return PerSegment(), 0.0
    values: dict[str, str] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise InvalidInput(f"{spec}: settings are name=value, got {setting!r}", field="spec")
        values[key] = value
    floor = float(values.pop("floor", "0"))
    body: dict[str, object] = (
        {} if "optimizer" not in values else {"optimizer": values.pop("optimizer")}
    )
    body["exploration"] = {"algorithm": name, **{k: float(v) for k, v in values.items()}}
    return VWPolicy(parse_learning(body, Limits())), floor


class PerSegment:
    """Thompson sampling with one Beta-Bernoulli posterior per action and `user.segment`.

    It is told the one feature that matters on every storefront but interactions, and that
    it is categorical, which no catalog's learner is. It learns nothing about one action
    from another's clicks, which a regression over the actions' features does: where the
    actions' features say nothing about their click rates (sparse draws each segment's
    rates at random), it misses nothing a learner could use.
    """

    name = "thompson-per-segment"

    def __init__(self) -> None:
        self.learned = 0
        self._by_segment: dict[str, Thompson] = {}

    def _for(self, features: Features) -> Thompson:
        segment = str(features.get("user", {}).get("segment", ""))
        return self._by_segment.setdefault(segment, Thompson())

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        return self._for(features).distribution(features, eligible)

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        return self._for(features).ranked(features, eligible)

    def learn(self, example: Example) -> None:
        self._for(example.context).learn(example)
        self.learned += 1

    def save(self) -> bytes:
        return b""

    def close(self) -> None:
        return None


def regret(task: tuple[str, str, int, int]) -> tuple[str, str, int, float]:
    spec, env_name, seed, steps = task
    env = ENVS[env_name]()
    stream = env.stream(seed, steps)
    if spec == "rule-global":
        chosen = global_rule(stream)
    else:
        policy, floor = parse_spec(spec)
        delay = settings_for(False).delay
        chosen = learn_online(policy, env, stream, delay, f"{env_name}/{seed}", floor)
        policy.close()
    return spec, env_name, seed, float(score(stream, chosen, stream.ctr.max(axis=1))[1].sum())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__)
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    parser.add_argument("--seeds", type=int, default=settings_for(False).seeds)
    parser.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    parser.add_argument("--steps", type=int, help="decisions per stream (default: quality's)")
    args = parser.parse_args(argv)
    for spec in args.specs:
        try:
            if spec != "rule-global":
                parse_spec(spec)[0].close()
        except (InvalidInput, ValueError) as exc:
            parser.error(f"{spec}: {exc}")
    envs: list[str] = args.envs
    steps = {e: args.steps or settings_for(False).steps[e] for e in envs}
    tasks = [(s, e, seed, steps[e]) for s in args.specs for e in envs for seed in range(args.seeds)]
    found: dict[tuple[str, str], list[float]] = {}
    with multiprocessing.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        for spec, env_name, _, value in tqdm(
            pool.imap_unordered(regret, tasks), total=len(tasks), desc="sweep: spec x env x seed"
        ):
            found.setdefault((spec, env_name), []).append(value)
    rows = []
    for spec in args.specs:
        cells = [mean_ci(found[(spec, e)]) for e in envs]
        rows.append([spec, *(f"{m:.0f} +- {ci:.0f}" for m, ci in cells)])
    shown = ", ".join(f"{e} {steps[e]:,}" for e in envs)
    print(f"cumulative regret, mean +- 95% CI over {args.seeds} seeds (decisions: {shown})")
    print(table(["spec", *envs], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
