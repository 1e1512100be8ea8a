"""Anytime-valid confidence sequences for live experiment results.

A marketer reads an A/B result every day. A fixed-n 95% interval read daily excludes the
truth, sooner or later, far more often than 5% of the time (peeking). A confidence
sequence holds at every time at once: P(some t has the mean outside C_t) <= alpha, so it
may be read after every observation and the experiment stopped whenever it looks
decided. Here: the predictable plug-in empirical-Bernstein confidence sequence of
Waudby-Smith & Ramdas (2023, "Estimating means of bounded random variables by betting",
JRSS-B 86(1), Theorem 2 / eq. (13)) for a reward in a declared range [lo, hi], with the
running intersection (bounds never widen). It adapts to the variance (a click rate near
0 gets a far narrower sequence than Hoeffding's) and needs no other assumption than the
range and a constant conditional mean.

`Mean` is the state: a few sums, updated in O(1) per observation or per numpy batch (the
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
TRUNCATION = 0.5  # the paper's suggestion for the largest bet
_FIELDS = (
    "lo", "hi", "alpha", "truncation", "t", "total", "squares", "bets", "staked",
    "penalty", "low", "high",
)  # fmt: skip


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
    """The confidence sequence's state for one mean. Sums are over the values scaled to
    [0, 1]; `low` and `high` are the running intersection, scaled."""

    lo: float
    hi: float
    alpha: float = 0.05
    truncation: float = TRUNCATION
    t: int = 0
    total: float = 0.0  # sum x_i
    squares: float = 0.0  # sum (x_i - mu_i)^2, mu_i the regularised mean after x_i
    bets: float = 0.0  # sum lambda_i
    staked: float = 0.0  # sum lambda_i x_i
    penalty: float = 0.0  # sum v_i psi(lambda_i)
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise InvalidInput(
                f"the range needs finite lo < hi, got [{self.lo!r}, {self.hi!r}]", field="lo"
            )
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInput(f"alpha must be in (0, 1), got {self.alpha!r}", field="alpha")
        if not 0.0 < self.truncation < 1.0:
            raise InvalidInput(
                f"truncation must be in (0, 1), got {self.truncation!r}", field="truncation"
            )
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
            return self._step(min(max((values - self.lo) / (self.hi - self.lo), 0.0), 1.0))
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
        return self._fold(np.clip((raw - self.lo) / (self.hi - self.lo), 0.0, 1.0))

    def _fold(self, x: Floats) -> Mean:
        """Waudby-Smith & Ramdas (2023) eq. (13), vectorised over the batch: every sum is
        a cumulative sum, every bet uses only what came before it (predictable)."""
        i = self.t + np.arange(1, x.size + 1, dtype=np.float64)  # times of these values
        totals = self.total + np.cumsum(x)
        mu_before = (0.5 + totals - x) / i  # regularised mean of x_1..x_{i-1}
        mu_after = (0.5 + totals) / (i + 1.0)
        deviation = (x - mu_after) ** 2
        squares = self.squares + np.cumsum(deviation)
        variance_before = (0.25 + squares - deviation) / i
        log_term = math.log(2.0 / self.alpha)
        bets = np.minimum(
            np.sqrt(2.0 * log_term / (variance_before * i * np.log1p(i))), self.truncation
        )
        # v_i psi_E(lambda_i) = 4 (x_i - mu_{i-1})^2 (-log(1 - lambda_i) - lambda_i) / 4
        penalties = (x - mu_before) ** 2 * (-np.log1p(-bets) - bets)
        bet_sums = self.bets + np.cumsum(bets)
        staked = self.staked + np.cumsum(bets * x)
        penalty = self.penalty + np.cumsum(penalties)
        centre = staked / bet_sums
        margin = (log_term + penalty) / bet_sums
        return replace(
            self,
            t=self.t + x.size,
            total=float(totals[-1]),
            squares=float(squares[-1]),
            bets=float(bet_sums[-1]),
            staked=float(staked[-1]),
            penalty=float(penalty[-1]),
            low=max(self.low, float((centre - margin).max())),
            high=min(self.high, float((centre + margin).min())),
        )

    def _step(self, x: float) -> Mean:
        """`_fold` of one value, without numpy."""
        i = self.t + 1
        total = self.total + x
        mu_before = (0.5 + self.total) / i
        mu_after = (0.5 + total) / (i + 1)
        variance_before = (0.25 + self.squares) / i
        log_term = math.log(2.0 / self.alpha)
        bet = min(
            math.sqrt(2.0 * log_term / (variance_before * i * math.log1p(i))), self.truncation
        )
        bets = self.bets + bet
        staked = self.staked + bet * x
        penalty = self.penalty + (x - mu_before) ** 2 * (-math.log1p(-bet) - bet)
        margin = (log_term + penalty) / bets
        return replace(
            self,
            t=i,
            total=total,
            squares=self.squares + (x - mu_after) ** 2,
            bets=bets,
            staked=staked,
            penalty=penalty,
            low=max(self.low, staked / bets - margin),
            high=min(self.high, staked / bets + margin),
        )

    def interval(self) -> Interval:
        """The sample mean and the running intersection of the sequence, unscaled. Should
        the intersection ever be empty (low > high: the mean moved, or the 1 - alpha
        event failed), it is reported as it is."""
        width = self.hi - self.lo
        mean = self.total / self.t if self.t else 0.5
        return Interval(
            self.lo + width * mean, self.lo + width * self.low, self.lo + width * self.high, self.t
        )

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Mean:
        """The state `to_json` wrote; refuses missing, unknown or mistyped fields."""
        unknown = set(data) - set(_FIELDS)
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
