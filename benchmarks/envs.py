"""Simulated storefronts for the offline quality benchmark, with known click probabilities.

A `Stream` is everything one seed of one environment shows to every policy: the visitors'
features, the click probability of every action for each visitor, the visitor's segment
(for the marketer's rule) and one uniform number per step that turns the click
probability of the shown action into a click. Every policy sees the same stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.actions import Action
from engine.features import Features, flatten
from engine.limits import Limits
from sim import environments as simulation

LIMITS = Limits()
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
DEVICES = ("mobile", "desktop", "tablet")
PAGES = ("home", "category", "search", "product")
THEMES = ("running", "yoga", "outdoor", "cycling", "tennis")


@dataclass(frozen=True)
class Stream:
    contexts: list[Features]
    ctr: Floats  # steps x actions
    segments: Ints  # steps; the segment a marketer's rule keys on
    uniforms: Floats  # steps; click when uniforms[t] < ctr[t, shown]


@dataclass(frozen=True)
class Env:
    name: str
    description: str
    actions: tuple[Action, ...]
    make: Callable[[np.random.Generator, int], Stream]  # (rng, steps) -> stream

    def stream(self, seed: int, steps: int) -> Stream:
        return self.make(np.random.default_rng([seed, 7919]), steps)


def _actions(bodies: list[tuple[str, dict[str, object]]]) -> tuple[Action, ...]:
    return tuple(Action(i, flatten(f, LIMITS, field=f"actions[{i}]")) for i, f in bodies)


def _noise(rng: np.random.Generator) -> dict[str, object]:
    return {
        "device": DEVICES[int(rng.integers(3))],
        "page": PAGES[int(rng.integers(4))],
    }


# -- segments: the storefront of sim.storefront ----------------------------------


def segments(env_seed: int = 0) -> Env:
    sim = simulation.segments_env(seed=env_seed)
    actions = _actions([(a.id, a.features()) for a in sim.actions])
    matrix = sim.matrix()
    names = sim.segment_names

    def make(rng: np.random.Generator, steps: int) -> Stream:
        visitors = [sim.visitor(rng) for _ in range(steps)]
        seg = np.array([names.index(v.segment) for v in visitors], dtype=np.int64)
        contexts = [flatten(v.context, LIMITS) for v in visitors]
        return Stream(contexts, matrix[seg], seg, rng.random(steps))

    return Env("segments", "sim.storefront segments: 4 segments x 4 banners", actions, make)


# -- segment preferences: more segments, each liking two of ten banners -------------


def preferences(env_seed: int = 1) -> Env:
    rng0 = np.random.default_rng(env_seed)
    n_segments, n_actions = 6, 10
    matrix = rng0.uniform(0.02, 0.06, size=(n_segments, n_actions))
    for s in range(n_segments):
        first, second = rng0.choice(n_actions, size=2, replace=False)
        matrix[s, first] = rng0.uniform(0.14, 0.2)
        matrix[s, second] = rng0.uniform(0.08, 0.12)
    weights = rng0.dirichlet(np.full(n_segments, 4.0))
    actions = _actions(
        [
            (f"banner-{j}", {"banner": {"theme": THEMES[j % 5], "discount": 0.1 * (j % 4)}})
            for j in range(n_actions)
        ]
    )

    def make(rng: np.random.Generator, steps: int) -> Stream:
        seg = rng.choice(n_segments, size=steps, p=weights).astype(np.int64)
        contexts = [
            flatten(
                {"user": {"segment": f"s{s}", "visits": float(rng.integers(1, 20))}, **_noise(rng)},
                LIMITS,
            )
            for s in seg
        ]
        return Stream(contexts, matrix[seg], seg, rng.random(steps))

    return Env("preferences", "6 segments x 10 banners, two liked each", actions, make)


# -- interactions: clicks depend on user features x action features -----------------


def interactions(env_seed: int = 2) -> Env:
    rng0 = np.random.default_rng(env_seed)
    n_actions = 10
    themes = np.array([j % len(THEMES) for j in range(n_actions)])
    price = rng0.uniform(0.0, 1.0, n_actions)
    discount = rng0.choice([0.0, 0.2, 0.4], n_actions)
    actions = _actions(
        [
            (
                f"offer-{j}",
                {
                    "offer": {
                        "theme": THEMES[themes[j]],
                        "price": float(price[j]),
                        "discount": float(discount[j]),
                    }
                },
            )
            for j in range(n_actions)
        ]
    )

    def make(rng: np.random.Generator, steps: int) -> Stream:
        interest = rng.integers(len(THEMES), size=steps)
        sensitivity = rng.uniform(0.0, 1.0, steps)
        affluence = rng.uniform(0.0, 1.0, steps)
        logit = (
            -3.2
            + 1.6 * (interest[:, None] == themes[None, :])
            + 3.0 * sensitivity[:, None] * discount[None, :]
            + 1.5 * (affluence[:, None] - 0.5) * (price[None, :] - 0.5) * 4.0
            - 1.0 * sensitivity[:, None] * price[None, :]
        )
        ctr = 1.0 / (1.0 + np.exp(-logit))
        contexts = [
            flatten(
                {
                    "user": {
                        "interest": THEMES[int(interest[t])],
                        "price_sensitivity": round(float(sensitivity[t]), 3),
                        "affluence": round(float(affluence[t]), 3),
                    },
                    **_noise(rng),
                },
                LIMITS,
            )
            for t in range(steps)
        ]
        return Stream(contexts, ctr, interest.astype(np.int64), rng.random(steps))

    return Env(
        "interactions",
        "10 offers; clicks from interest x theme, sensitivity x discount, affluence x price",
        actions,
        make,
    )


# -- drift: each segment's favourite changes half-way -------------------------------


def drift(env_seed: int = 3) -> Env:
    rng0 = np.random.default_rng(env_seed)
    n_segments, n_actions = 4, 6
    before = rng0.uniform(0.03, 0.07, size=(n_segments, n_actions))
    after = rng0.uniform(0.03, 0.07, size=(n_segments, n_actions))
    for s in range(n_segments):
        before[s, s] = rng0.uniform(0.2, 0.25)
        after[s, (s + 2) % n_actions] = rng0.uniform(0.2, 0.25)
    actions = _actions(
        [(f"hero-{j}", {"banner": {"theme": THEMES[j % 5], "slot": float(j)}}) for j in range(6)]
    )

    def make(rng: np.random.Generator, steps: int) -> Stream:
        seg = rng.integers(n_segments, size=steps).astype(np.int64)
        share = np.clip((np.arange(steps) - 0.4 * steps) / (0.2 * steps), 0.0, 1.0)[:, None]
        ctr = (1.0 - share) * before[seg] + share * after[seg]
        contexts = [flatten({"user": {"segment": f"s{s}"}, **_noise(rng)}, LIMITS) for s in seg]
        return Stream(contexts, ctr, seg, rng.random(steps))

    return Env(
        "drift", "4 segments x 6 banners; favourites move at 40-60% of the run", actions, make
    )


# -- sparse: 50 actions, click rates of 1-5% -----------------------------------------


def sparse(env_seed: int = 4) -> Env:
    rng0 = np.random.default_rng(env_seed)
    n_segments, n_actions = 5, 50
    matrix = rng0.uniform(0.01, 0.02, size=(n_segments, n_actions))
    for s in range(n_segments):
        first, second = rng0.choice(n_actions, size=2, replace=False)
        matrix[s, first] = 0.05
        matrix[s, second] = 0.035
    actions = _actions(
        [
            (f"offer-{j:02d}", {"offer": {"theme": THEMES[j % 5], "discount": 0.1 * (j % 4)}})
            for j in range(n_actions)
        ]
    )

    def make(rng: np.random.Generator, steps: int) -> Stream:
        seg = rng.integers(n_segments, size=steps).astype(np.int64)
        contexts = [flatten({"user": {"segment": f"s{s}"}, **_noise(rng)}, LIMITS) for s in seg]
        return Stream(contexts, matrix[seg], seg, rng.random(steps))

    return Env("sparse", "5 segments x 50 offers, click rates 1-5%", actions, make)


ENVS: dict[str, Callable[[], Env]] = {
    "segments": segments,
    "preferences": preferences,
    "interactions": interactions,
    "drift": drift,
    "sparse": sparse,
}
