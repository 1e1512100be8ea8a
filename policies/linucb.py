"""Disjoint LinUCB in numpy: a catalog policy (`learning.policy: linucb`, its settings in
`learning.linucb`) and a contextual baseline for the benchmarks, with exact propensities.

Each action id has its own ridge regression (Li et al. 2010, "disjoint" model) over a
hashed feature vector of `dim` entries: a bias plus every context feature (`ns^name` with
its value, `ns^name=value` with 1 for categories), signed-hashed with blake2b. Action
features are constant for one action's model, so in the disjoint model they would only
add to its bias; they are left out. The score is `theta_a . x + alpha * sqrt(x A_a^-1 x)`;
A_a^-1 is kept up to date with Sherman-Morrison, so learning costs O(dim^2).

The pmf puts `1 - epsilon` on the highest score (ties: the first in eligible order) and
spreads `epsilon` uniformly, so every action keeps mass `epsilon / K` and the logged
propensity is exact. Rewards are learned as given (click = 1).

It learns from every logged decision as a regression of the chosen action's reward on
the context, unweighted: the logged probability is not read (as VW's RegCB, a direct
estimate, which is why an experiment arm can learn from the traffic of other arms). The
state is A^-1 and b per action id; `save` writes them as npz and `load` reads them back,
the settings coming from the catalog (policies.registry).
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from engine.actions import Action
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.features import Features
from engine.sampling import Pmf
from policies.base import Example

Vector = npt.NDArray[np.float64]


class LinUCB:
    name = "linucb"

    def __init__(
        self, dim: int = 64, alpha: float = 1.0, epsilon: float = 0.05, ridge: float = 1.0
    ) -> None:
        if dim < 2:
            raise InvalidInput(f"dim must be >= 2, got {dim!r}", field="dim")
        if not 0.0 < epsilon <= 1.0:
            raise InvalidInput(f"epsilon must be in (0, 1], got {epsilon!r}", field="epsilon")
        if alpha < 0 or ridge <= 0:
            raise InvalidInput(
                f"alpha must be >= 0 and ridge > 0, got {alpha!r} and {ridge!r}", field="alpha"
            )
        self.dim, self.alpha, self.epsilon, self.ridge = dim, alpha, epsilon, ridge
        self.learned = 0
        self._inverse: dict[str, Vector] = {}  # action id -> A^-1 (dim x dim)
        self._b: dict[str, Vector] = {}  # action id -> b (dim)

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        return self.ranked(features, eligible)[0]

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        """Scores: the upper confidence bounds."""
        if not eligible:
            raise InvalidInput("eligible must hold at least one action", field="eligible")
        x = self.vector(features)
        scores = np.array([self._score(a.id, x) for a in eligible])
        k = len(eligible)
        pmf: Pmf = np.full(k, self.epsilon / k)
        pmf[int(np.argmax(scores))] += 1.0 - self.epsilon
        return pmf, scores

    def learn(self, example: Example) -> None:
        action = example.actions[example.chosen].id
        x = self.vector(example.context)
        inverse = self._inverse.get(action)
        if inverse is None:
            inverse = np.eye(self.dim) / self.ridge
        ax = inverse @ x
        self._inverse[action] = inverse - np.outer(ax, ax) / (1.0 + float(x @ ax))
        self._b[action] = self._b.get(action, np.zeros(self.dim)) + float(example.reward) * x
        self.learned += 1

    def vector(self, features: Features) -> Vector:
        x = np.zeros(self.dim)
        x[0] = 1.0  # bias
        for ns, values in features.items():
            for name, value in values.items():
                if isinstance(value, str):
                    index, sign = _slot(f"{ns}^{name}={value}", self.dim)
                    x[index] += sign
                else:
                    index, sign = _slot(f"{ns}^{name}", self.dim)
                    x[index] += sign * float(value)
        return x

    def save(self) -> bytes:
        ids = sorted(self._inverse)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            ids=np.array(ids, dtype=str),
            inverse=np.array([self._inverse[i] for i in ids]).reshape(-1, self.dim, self.dim),
            b=np.array([self._b[i] for i in ids]).reshape(-1, self.dim),
        )
        return buffer.getvalue()

    def load(self, data: bytes) -> None:
        """Take the per-action state `save` gave; the settings are this policy's, and a
        state of another `dim`, or bytes that are no such state, raise CorruptCheckpoint."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as saved:
                ids, inverse, b = saved["ids"], saved["inverse"], saved["b"]
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CorruptCheckpoint(f"not a saved LinUCB model: {exc!r}") from exc
        n, dim = len(ids), self.dim
        if ids.ndim != 1 or inverse.shape != (n, dim, dim) or b.shape != (n, dim):
            raise CorruptCheckpoint(
                f"a saved LinUCB model of shapes {ids.shape}, {inverse.shape}, {b.shape} "
                f"does not fit dim {dim}"
            )
        if ids.dtype.kind != "U" or not (np.isfinite(inverse).all() and np.isfinite(b).all()):
            raise CorruptCheckpoint("a saved LinUCB model holds non-string ids or non-finite state")
        self._inverse = {str(a): inverse[i].astype(np.float64) for i, a in enumerate(ids)}
        self._b = {str(a): b[i].astype(np.float64) for i, a in enumerate(ids)}

    def close(self) -> None:
        return None

    def _score(self, action: str, x: Vector) -> float:
        inverse = self._inverse.get(action)
        if inverse is None:  # an unseen arm: A = ridge * I, b = 0
            return self.alpha * float(np.sqrt(x @ x / self.ridge))
        ax = inverse @ x
        theta_x = float(ax @ self._b[action])  # theta . x = (A^-1 b) . x, A^-1 symmetric
        return theta_x + self.alpha * float(np.sqrt(max(0.0, float(x @ ax))))


@functools.lru_cache(maxsize=65536)
def _slot(token: str, dim: int) -> tuple[int, float]:
    """Index in 1..dim-1 (0 is the bias) and sign, from a stable hash of the token."""
    h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return 1 + h % (dim - 1), 1.0 if (h >> 63) & 1 else -1.0
