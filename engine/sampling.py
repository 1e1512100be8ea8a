"""Seeded sampling with exact propensities.

The policy hands over a pmf over the eligible actions; constraints were applied before,
so nothing here ever replaces a sampled action. The probability returned is the exact
probability with which the returned index is drawn by `sample`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

Pmf = npt.NDArray[np.float64]


class Uniform(Protocol):
    def random(self) -> float: ...


class Draws:
    """Uniform draws in [0, 1) from blake2b(salt, event id, counter): the same event id
    gives the same draws, far cheaper than building a numpy Generator per decision
    (docs/decisions/hot-paths.md). 53 random bits per draw, as numpy's `random()`."""

    def __init__(self, event_id: str, salt: str = "") -> None:
        self._key = f"{salt}\x00{event_id}\x00".encode()
        self._n = 0

    def random(self) -> float:
        digest = hashlib.blake2b(self._key + b"%d" % self._n, digest_size=8).digest()
        self._n += 1
        return (int.from_bytes(digest, "little") >> 11) * 2.0**-53


def rng_for(event_id: str, salt: str = "") -> Draws:
    """Draws seeded by the event id: the same event id gives the same draws."""
    return Draws(event_id, salt)


def normalise(weights: Sequence[float] | Pmf, floor: float = 0.0) -> Pmf:
    """Renormalise to sum 1 and mix in `floor` of uniform mass (each action >= floor/K)."""
    pmf = np.asarray(weights, dtype=np.float64)
    if pmf.ndim != 1 or pmf.size == 0:
        raise InvalidInput(f"a pmf needs at least one entry, got shape {pmf.shape}", field="pmf")
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise InvalidInput(f"a pmf needs finite non-negative weights, got {pmf!r}", field="pmf")
    if not 0.0 <= floor <= 1.0:
        raise InvalidInput(f"floor must be in [0, 1], got {floor!r}", field="floor")
    total = float(pmf.sum())
    pmf = pmf / total if total > 0 else np.full(pmf.size, 1.0 / pmf.size)
    if floor > 0:
        pmf = (1.0 - floor) * pmf + floor / pmf.size
    result: Pmf = pmf / pmf.sum()
    return result


def sample(pmf: Pmf, rng: Uniform) -> tuple[int, float]:
    """Draw one index; returns (index, its probability). Never returns a zero-mass index."""
    cumulative = np.cumsum(pmf)
    draw = rng.random() * float(cumulative[-1])
    index = int(np.searchsorted(cumulative, draw, side="right"))
    # Guard the tail: rounding can leave the draw at or past the last cumulative value,
    # and a zero-mass entry can sit at the boundary. Step back to the last positive entry.
    index = min(index, pmf.size - 1)
    while pmf[index] <= 0.0:
        index -= 1
    return index, float(pmf[index])


def ranking(pmf: Pmf, scores: Pmf | None = None) -> list[int]:
    """Indices by descending probability, then descending score; ties keep catalog order."""
    if scores is None:
        return [int(i) for i in np.argsort(-pmf, kind="stable")]
    return [int(i) for i in np.lexsort((-scores, -pmf))]
