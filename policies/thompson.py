"""Thompson sampling over Beta-Bernoulli arms: a non-contextual catalog policy
(`learning.policy: thompson`, its settings in `learning.thompson`) and a baseline.

Each action id has a Beta(1 + successes, 1 + failures) posterior; a reward is clipped to
[0, 1] (engine.learning.THOMPSON_REWARDS) and counted as a fractional success, so revenue
is learned as a click. The context is ignored, except to seed draws. The logged
probability is not read either: learned from the traffic of a policy that chooses by
context (another experiment arm's), an action's counts lean towards the visitors that
policy showed it to.

The pmf is the probability that each eligible action is the argmax of one posterior draw,
which is what Thompson sampling shows. There is no closed form for K > 2 arms, so it is
estimated by Monte Carlo: `draws` joint posterior draws with a generator seeded from a hash
of the features and the posterior itself, so the same request against the same model gives
the same pmf. Monte Carlo was chosen over numerical integration because posteriors become
very peaked (a few thousand observations), where a fixed quadrature grid is wrong and an
adaptive one costs more than the draws. Each arm's win count gets `smoothing` pseudo-wins
before normalising, so every eligible action keeps mass > 0 (the policy explores, and the
logged propensity is the exact probability of the sample that follows: sampling uses this
pmf, not a fresh posterior draw). `save` writes the counts as JSON, `load` reads them back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from engine.actions import Action
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.features import Features
from engine.learning import THOMPSON_REWARDS
from engine.sampling import Pmf
from policies.base import Example


class Thompson:
    name = "thompson"

    def __init__(self, draws: int = 512, smoothing: float = 0.5) -> None:
        if draws < 1:
            raise InvalidInput(f"draws must be >= 1, got {draws!r}", field="draws")
        if not smoothing > 0:
            raise InvalidInput(f"smoothing must be > 0, got {smoothing!r}", field="smoothing")
        self.draws = draws
        self.smoothing = smoothing
        self.learned = 0
        self._wins: dict[str, float] = {}
        self._losses: dict[str, float] = {}

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        return self.ranked(features, eligible)[0]

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        """Scores: the posterior mean click rate."""
        if not eligible:
            raise InvalidInput("eligible must hold at least one action", field="eligible")
        alpha = np.array([1.0 + self._wins.get(a.id, 0.0) for a in eligible])
        beta = np.array([1.0 + self._losses.get(a.id, 0.0) for a in eligible])
        rng = np.random.default_rng(_seed(features, alpha, beta))
        samples = rng.beta(alpha, beta, size=(self.draws, len(eligible)))
        wins = np.bincount(np.argmax(samples, axis=1), minlength=len(eligible))
        weights = wins.astype(np.float64) + self.smoothing
        pmf: Pmf = weights / weights.sum()
        return pmf, alpha / (alpha + beta)

    def learn(self, example: Example) -> None:
        action = example.actions[example.chosen].id
        low, high = THOMPSON_REWARDS
        reward = min(high, max(low, float(example.reward)))
        self._wins[action] = self._wins.get(action, 0.0) + reward
        self._losses[action] = self._losses.get(action, 0.0) + 1.0 - reward
        self.learned += 1

    def save(self) -> bytes:
        state = {"wins": self._wins, "losses": self._losses, "learned": self.learned}
        return json.dumps(state, sort_keys=True).encode()

    def load(self, data: bytes) -> None:
        """Take the state `save` gave (the counts and `learned`); the settings are this
        policy's. Bytes that are not such a state raise CorruptCheckpoint."""
        try:
            state = json.loads(data)
            wins, losses = _counts(state["wins"]), _counts(state["losses"])
            learned = state["learned"]
        except (ValueError, TypeError, KeyError) as exc:
            raise CorruptCheckpoint(f"not a saved Thompson model: {exc!r}") from exc
        if not isinstance(learned, int) or isinstance(learned, bool) or learned < 0:
            raise CorruptCheckpoint(f"a saved Thompson model's learned is {learned!r}")
        self._wins, self._losses, self.learned = wins, losses, learned

    def close(self) -> None:
        return None


def _counts(raw: object) -> dict[str, float]:
    """Action id -> a count >= 0, from decoded JSON; TypeError when it is not that."""
    if not isinstance(raw, dict):
        raise TypeError(f"counts must be an object, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for action, count in raw.items():
        if isinstance(count, bool) or not isinstance(count, int | float) or not count >= 0:
            raise TypeError(f"the count of {action!r} is {count!r}")
        out[action] = float(count)
    return out


def _seed(features: Features, alpha: Pmf, beta: Pmf) -> int:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps(features, sort_keys=True).encode())
    digest.update(alpha.tobytes())
    digest.update(beta.tobytes())
    return int.from_bytes(digest.digest(), "little")
