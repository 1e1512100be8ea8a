"""A small synthetic contextual bandit whose policies' values are known exactly.

Contexts are drawn uniformly from a fixed population of feature vectors, so a policy's
true value is a finite sum: the mean over the population of sum_a pi(a|x) mu(x, a).
Rewards are clicks (Bernoulli(mu), mu a logistic function of the features: a linear
reward model is misspecified, as in life). The logging policy is a softmax of a noisy
copy of mu with an exploration floor; the candidates are the logger itself, two
deterministic rules (the best action; a business rule unrelated to mu, which gives heavy
weights) and a softmax of another noisy copy. Used by tests/test_ope.py,
tests/test_sequential.py and `python -m benchmarks ope`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
CANDIDATES = ("logging", "best", "rule", "softmax")


@dataclass(frozen=True, slots=True)
class World:
    features: Floats  # [m, d]: the context population
    mu: Floats  # [m, k]: expected reward of each action in each context
    logging: Floats  # [m, k]: the logging policy's pmf
    candidates: dict[str, Floats]  # name -> [m, k] pmf

    @property
    def actions(self) -> int:
        return int(self.mu.shape[1])

    def value(self, pmf: Floats) -> float:
        """The exact value of a policy given as [m, k] pmf."""
        return float((pmf * self.mu).sum(axis=1).mean())


@dataclass(frozen=True, slots=True)
class Log:
    """Logged decisions: context index, shown action, its logged probability, reward."""

    context: Ints
    chosen: Ints
    p_log: Floats
    reward: Floats


def make_world(
    seed: int,
    *,
    contexts: int = 100,
    actions: int = 10,
    dims: int = 5,
    epsilon: float = 0.1,
    temperature: float = 0.05,
) -> World:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(contexts, dims))
    theta = rng.normal(scale=0.7, size=(actions, dims))
    bias = rng.normal(loc=-2.5, scale=0.5, size=actions)
    mu = 1.0 / (1.0 + np.exp(-(x @ theta.T + bias)))
    logging = _softmax(mu + rng.normal(scale=0.05, size=mu.shape), temperature, epsilon)
    rule = rng.normal(size=(actions, dims))
    candidates = {
        "logging": logging,
        "best": _one_hot(np.argmax(mu, axis=1), actions),
        "rule": _one_hot(np.argmax(x @ rule.T, axis=1), actions),
        "softmax": _softmax(mu + rng.normal(scale=0.1, size=mu.shape), 0.1, 0.0),
    }
    return World(features=x, mu=mu, logging=logging, candidates=candidates)


def draw(world: World, n: int, rng: np.random.Generator, policy: Floats | None = None) -> Log:
    """n decisions by the logging policy (or by `policy`, [m, k]), with their rewards."""
    pmf = world.logging if policy is None else policy
    context = rng.integers(world.features.shape[0], size=n)
    cumulative = np.cumsum(pmf[context], axis=1)
    u = rng.random(n)[:, None] * cumulative[:, -1:]
    chosen = np.minimum((cumulative <= u).sum(axis=1), world.actions - 1)
    p_log = pmf[context, chosen]
    reward = (rng.random(n) < world.mu[context, chosen]).astype(np.float64)
    return Log(context=context, chosen=chosen.astype(np.int64), p_log=p_log, reward=reward)


def _softmax(scores: Floats, temperature: float, epsilon: float) -> Floats:
    z = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    pmf = z / z.sum(axis=1, keepdims=True)
    result: Floats = (1.0 - epsilon) * pmf + epsilon / scores.shape[1]
    return result


def _one_hot(index: npt.NDArray[np.intp], k: int) -> Floats:
    return np.eye(k)[index]
