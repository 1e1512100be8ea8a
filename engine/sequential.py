"""Anytime-valid confidence sequences for live experiment results.

A marketer reads an A/B result every day. A fixed-n 95% interval read daily excludes the
truth, sooner or later, far more often than 5% of the time (peeking). A confidence
sequence holds at every time at once: P(some t has the mean outside C_t) <= alpha, so it
may be read after every observation and the experiment stopped whenever it looks
decided.

What it covers is the *average of the conditional means* so far, (1/t) sum_i mu_i, with
no assumption that they are equal: an arm whose model learns earns more as it goes, and
its sequence must hold the average of what it earned. That rules out the running
intersection of a sequence for one constant mean, and the sequences centred on a
weighted mean (Waudby-Smith & Ramdas 2023's betting and predictable plug-in ones cover
the bet-weighted average, which for a rising arm lies below its plain average): both
left a learning arm's truth outside the interval at most looks. Here: the
empirical-Bernstein confidence sequence of Howard, Ramdas, McAuliffe & Sekhon (2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
49(2), Theorem 4 with the polynomial stitched boundary of eq. (10)), for values in a
declared range [lo, hi]. With x_i scaled to [0, 1], S_t = sum (x_i - mu_i) and the
variance process V_t = sum (x_i - g_{i-1})^2 around a predictable centre g_{i-1} (the
regularised mean of the values before), S_t and -S_t are sub-exponential with scale 1,
so each crosses the stitched boundary u(V_t) with probability at most alpha / 2, ever.
The interval is the sample mean +- u(max(V_t, 1)) / t: it adapts to the variance (a
click rate near 0 gets a far narrower sequence than Hoeffding's).

`Mean` is the state: three sums, updated in O(1) per observation or per numpy batch (the
same state either way), serialisable to and from JSON for persisting per arm.
`Difference` is two arms at alpha/2 each (Bonferroni: valid however the arms depend on
each other). When an arm's traffic share differs between units (by segment, or from a
change of shares during the experiment), feed each arm its inverse-propensity values
(`ipw`) over all units, with the range `ipw_range`: a plain mean over the arm's own
units would weigh the segments by their shares, not by their traffic.

May import: the standard library, numpy and engine.errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

Floats = npt.NDArray[np.float64]
# The stitched boundary's shape (Howard et al. 2021, eq. (10)): epochs of geometric
# spacing ETA, crossing probability spread over them as a zeta(S) series, tight from
# intrinsic time V_MIN on (V_t is floored there: the boundary holds for max(V_t, V_MIN)).
ETA = 2.0
S = 1.4
V_MIN = 1.0
_FIELDS = ("lo", "hi", "alpha", "t", "total", "squares")
# the fields of the state written before 2026-12-07 (a betting sequence with its running
# intersection): read back by their first six, the rest dropped
_LEGACY_FIELDS = frozenset({"truncation", "bets", "staked", "penalty", "low", "high"})


def _zeta(s: float) -> float:
    """Riemann zeta for s > 1: 1,000 terms and the Euler-Maclaurin tail (error < 1e-12)."""
    n = 1000
    head = math.fsum(k**-s for k in range(1, n))
    return float(head + n ** (1 - s) / (s - 1) + 0.5 * n**-s + s * n ** (-s - 1) / 12)


_K1 = (ETA**0.25 + ETA**-0.25) / math.sqrt(2.0)
_K2 = (math.sqrt(ETA) + 1.0) / 2.0
_ZETA = _zeta(S)


def boundary(v: float, alpha: float, scale: float = 1.0) -> float:
    """The polynomial stitched boundary u(v) that a sub-exponential process with this
    `scale` crosses with probability at most alpha, at any time."""
    v = max(v, V_MIN)
    ell = S * math.log(math.log(ETA * v / V_MIN)) + math.log(_ZETA / (alpha * math.log(ETA) ** S))
    linear = _K2 * scale * ell
    return math.sqrt(_K1**2 * v * ell + linear**2) + linear


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean and its confidence sequence now, in the reward's units; `n` observations.
    With no observation the mean is the range's midpoint and the bounds are the range."""

    mean: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Mean:
    """The confidence sequence's state for one mean: sums over the values scaled to
    [0, 1]."""

    lo: float
    hi: float
    alpha: float = 0.05
    t: int = 0
    total: float = 0.0  # sum x_i
    squares: float = 0.0  # V_t = sum (x_i - g_{i-1})^2, g_{i-1} = (1/2 + sum x_<i) / i

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise InvalidInput(
                f"the range needs finite lo < hi, got [{self.lo!r}, {self.hi!r}]", field="lo"
            )
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInput(f"alpha must be in (0, 1), got {self.alpha!r}", field="alpha")
        if self.t < 0:
            raise InvalidInput(f"t must be >= 0, got {self.t!r}", field="t")

    def add(self, values: float | npt.ArrayLike) -> Mean:
        """The state after these observations, in order; each must lie in [lo, hi]. One
        number takes a plain-Python step (a few microseconds, for per-example callers)."""
        if isinstance(values, float | int) and not isinstance(values, bool):
            if not (math.isfinite(values) and self.lo <= values <= self.hi):
                raise InvalidInput(
                    f"every value must lie in the declared range [{self.lo:g}, {self.hi:g}]",
                    field="values",
                )
            one = min(max((values - self.lo) / (self.hi - self.lo), 0.0), 1.0)
            centre = (0.5 + self.total) / (self.t + 1)
            return replace(
                self,
                t=self.t + 1,
                total=self.total + one,
                squares=self.squares + (one - centre) ** 2,
            )
        raw = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if raw.ndim != 1:
            raise InvalidInput(f"values must be 1-D, got shape {raw.shape}", field="values")
        if raw.size == 0:
            return self
        if not np.all(np.isfinite(raw)) or raw.min() < self.lo or raw.max() > self.hi:
            raise InvalidInput(
                f"every value must lie in the declared range [{self.lo:g}, {self.hi:g}]",
                field="values",
            )
        x = np.clip((raw - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        i = self.t + np.arange(1, x.size + 1, dtype=np.float64)  # times of these values
        centres = (0.5 + self.total + np.cumsum(x) - x) / i  # each from the values before
        return replace(
            self,
            t=self.t + x.size,
            total=self.total + float(x.sum()),
            squares=self.squares + float(((x - centres) ** 2).sum()),
        )

    def interval(self) -> Interval:
        """The sample mean and the sequence's bounds now, unscaled and within the range."""
        width = self.hi - self.lo
        if not self.t:
            return Interval(self.lo + 0.5 * width, self.lo, self.hi, 0)
        mean = self.total / self.t
        radius = boundary(self.squares, self.alpha / 2.0) / self.t
        low, high = max(0.0, mean - radius), min(1.0, mean + radius)
        return Interval(
            self.lo + width * mean, self.lo + width * low, self.lo + width * high, self.t
        )

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Mean:
        """The state `to_json` wrote (or the one written before 2026-12-07, whose
        `squares` was centred on the mean after each value rather than before: a factor
        (i / (i + 1))^2 per term, which the boundary's V_MIN floor dwarfs); refuses
        missing, unknown or mistyped fields."""
        unknown = set(data) - set(_FIELDS) - _LEGACY_FIELDS
        if unknown:
            raise InvalidInput(f"unknown fields {sorted(unknown)}", field=sorted(unknown)[0])
        values: dict[str, float] = {}
        for name in _FIELDS:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"{name} must be a number, got {value!r}", field=name)
            if not math.isfinite(value):
                raise InvalidInput(f"{name} must be finite", field=name)
            values[name] = float(value)
        t = values.pop("t")
        if t != int(t):
            raise InvalidInput(f"t must be an integer, got {t!r}", field="t")
        return cls(t=int(t), **values)


@dataclass(frozen=True, slots=True)
class Difference:
    """A confidence sequence for mean(a) - mean(b): each arm's sequence at its own alpha,
    together valid at a.alpha + b.alpha (Bonferroni)."""

    a: Mean
    b: Mean

    @classmethod
    def start(
        cls,
        lo: float,
        hi: float,
        alpha: float = 0.05,
        b_range: tuple[float, float] | None = None,
    ) -> Difference:
        """Two empty arms at alpha / 2 each; b_range when arm b has another range."""
        b_lo, b_hi = b_range if b_range is not None else (lo, hi)
        return cls(Mean(lo, hi, alpha / 2.0), Mean(b_lo, b_hi, alpha / 2.0))

    @property
    def alpha(self) -> float:
        return self.a.alpha + self.b.alpha

    def add(self, a: float | npt.ArrayLike = (), b: float | npt.ArrayLike = ()) -> Difference:
        return Difference(self.a.add(a), self.b.add(b))

    def interval(self) -> Interval:
        """mean(a) - mean(b) and its bounds; `n` counts both arms."""
        x, y = self.a.interval(), self.b.interval()
        return Interval(x.mean - y.mean, x.low - y.high, x.high - y.low, x.n + y.n)

    def to_json(self) -> dict[str, object]:
        return {"a": self.a.to_json(), "b": self.b.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Difference:
        arms = []
        for name in ("a", "b"):
            arm = data.get(name)
            if not isinstance(arm, Mapping):
                raise InvalidInput(f"{name} must be an object", field=name)
            arms.append(Mean.from_json(arm))
        return cls(*arms)


def ipw(reward: npt.ArrayLike, assigned: npt.ArrayLike, share: npt.ArrayLike) -> Floats:
    """Per unit: reward / share if the unit was assigned to the arm, else 0; share is the
    unit's probability of that assignment. Unbiased for the arm's mean over all units,
    whatever the shares, as long as each was fixed before its unit's reward."""
    r = np.asarray(reward, dtype=np.float64)
    s = np.broadcast_to(np.asarray(share, dtype=np.float64), r.shape)
    if np.any(~(s > 0.0)) or np.any(s > 1.0):
        raise InvalidInput("share must be in (0, 1] for every unit", field="share")
    values: Floats = np.where(np.asarray(assigned, dtype=bool), r / s, 0.0)
    return values


def ipw_range(lo: float, hi: float, min_share: float) -> tuple[float, float]:
    """The range of `ipw` values for rewards in [lo, hi] and shares >= min_share."""
    if not 0.0 < min_share <= 1.0:
        raise InvalidInput(f"min_share must be in (0, 1], got {min_share!r}", field="min_share")
    return min(0.0, lo / min_share), max(0.0, hi / min_share)
