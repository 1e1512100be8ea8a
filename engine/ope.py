"""Off-policy estimates of a candidate policy's value from logged decisions.

Each logged decision brings its reward, the logged probability of the shown action (exact
and > 0, engine.sampling) and what a candidate policy would have done: its probability of
that same action and, for doubly robust, a reward model's predictions. With the weight
w = p_new / p_log per row:

  logged  mean(r)                        the logging policy's own online value
  ips     mean(w r)                      unbiased
  snips   sum(w r) / sum(w)              self-normalised: biased O(1/n), in the reward range
  dr      mean(q_new + w (r - q_shown))  unbiased; less variance with a good reward model

The estimators read only sums of per-row terms (`Tally`), so a day of logs is folded in
chunks with bounded memory, and tallies from several workers add up. Intervals: Hall's
skewness-corrected interval on the per-row terms (logged, ips) and on the delta method's
linearised terms (snips), since heavy importance weights skew them; the normal interval
for dr, whose residual terms are skewed both ways and whose skewness was too noisy to
correct by. docs/decisions/estimators.md has their coverage against a simulator with
known values.
Missing support is a finding, not an error: `estimate` returns a typed `Unsupported` with
its reason (no rows, candidate mass on actions the logger could not show, too few
effective samples, no reward model for dr). Malformed input raises InvalidInput.
`fit_rewards` is the reward model for dr: per-action ridge regressions, cross-fitted so
that no row is predicted by a model that saw it.

May import: the standard library, numpy and engine.errors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Method = Literal["logged", "ips", "snips", "dr"]
METHODS: tuple[Method, ...] = ("logged", "ips", "snips", "dr")
MIN_ESS = 30.0  # below it the normal interval on weighted terms under-covers (the doc)
SUPPORT_TOLERANCE = 1e-9  # candidate mass per row on unsupported actions read as rounding
_PROBABILITY_SLACK = 1e-9  # a float pmf entry may exceed 1 by rounding


@dataclass(frozen=True, slots=True)
class Powers:
    """Sums of x, x^2 and x^3 over rows: a mean, its spread and its skewness."""

    s1: float = 0.0
    s2: float = 0.0
    s3: float = 0.0

    @classmethod
    def of(cls, x: Floats) -> Powers:
        x2 = x * x
        return cls(float(x.sum()), float(x2.sum()), float(x2 @ x))

    def __add__(self, other: Powers) -> Powers:
        return Powers(self.s1 + other.s1, self.s2 + other.s2, self.s3 + other.s3)


@dataclass(frozen=True, slots=True)
class Tally:
    """Sums of the per-row terms over logged decisions; `a + b` tallies both chunks.
    `unsupported` sums each row's candidate mass on actions the logger could not show."""

    n: int = 0
    zeros: int = 0  # rows with weight 0
    max_weight: float = 0.0
    unsupported: float = 0.0
    reward: Powers = Powers()  # r: the logging policy's own value
    ips: Powers = Powers()  # w r
    dr: Powers = Powers()  # q_new + w (r - q_shown)
    weight: Powers = Powers()  # w
    # snips's linearised terms w (r - v) need these cross sums besides w^2 r^2 and w^3 r^3
    w2r: float = 0.0
    w3r: float = 0.0
    w3r2: float = 0.0
    model: bool = True  # every row came with reward-model predictions

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            n=self.n + other.n,
            zeros=self.zeros + other.zeros,
            max_weight=max(self.max_weight, other.max_weight),
            unsupported=self.unsupported + other.unsupported,
            reward=self.reward + other.reward,
            ips=self.ips + other.ips,
            dr=self.dr + other.dr,
            weight=self.weight + other.weight,
            w2r=self.w2r + other.w2r,
            w3r=self.w3r + other.w3r,
            w3r2=self.w3r2 + other.w3r2,
            model=self.model and other.model,
        )

    @property
    def ess(self) -> float:
        """Effective sample size (sum w)^2 / sum w^2; 0 when no row has weight."""
        return self.weight.s1**2 / self.weight.s2 if self.weight.s2 > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value with its (1 - alpha) interval and the weights it rests on."""

    method: Method
    estimate: float
    low: float
    high: float
    stderr: float
    alpha: float
    n: int
    ess: float
    zero_share: float  # share of rows the candidate would not have shown (weight 0)
    max_weight: float

    def to_json(self) -> dict[str, object]:
        return {"supported": True, **asdict(self)}


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An estimate refused because the log cannot support it; `reason` says why."""

    method: Method
    reason: str
    n: int
    ess: float

    def to_json(self) -> dict[str, object]:
        return {"supported": False, **asdict(self)}


Result = Estimate | Unsupported


@dataclass(frozen=True, slots=True)
class Report:
    """A candidate's estimates beside the logging policy's own value."""

    logged: Result
    ips: Result
    snips: Result
    dr: Result

    def to_json(self) -> dict[str, object]:
        return {m: getattr(self, m).to_json() for m in METHODS}


def tally(
    reward: npt.ArrayLike,
    p_log: npt.ArrayLike,
    p_new: npt.ArrayLike,
    *,
    q_shown: npt.ArrayLike | None = None,
    q_new: npt.ArrayLike | None = None,
    unsupported: npt.ArrayLike | None = None,
) -> Tally:
    """The sums of one chunk of rows. q_shown: the reward model's prediction for the shown
    action; q_new: sum over actions of pi_new(a|x) qhat(x, a); unsupported: per row, the
    candidate's mass on actions the logger gave probability 0."""
    r = _column(reward, "reward", None)
    n = r.size
    p = _column(p_log, "p_log", n)
    if np.any(p <= 0.0) or np.any(p > 1.0 + _PROBABILITY_SLACK):
        raise InvalidInput("p_log must be in (0, 1] on every row", field="p_log")
    w = _probabilities(p_new, "p_new", n) / p
    if (q_shown is None) != (q_new is None):
        raise InvalidInput("q_shown and q_new come together, or neither", field="q_shown")
    dr = np.zeros(0)
    if q_shown is not None and q_new is not None:
        dr = _column(q_new, "q_new", n) + w * (r - _column(q_shown, "q_shown", n))
    mass = 0.0
    if unsupported is not None:
        u = _column(unsupported, "unsupported", n)
        if np.any(u < 0.0):
            raise InvalidInput("unsupported mass must be >= 0 on every row", field="unsupported")
        mass = float(u.sum())
    wr = w * r
    w2 = w * w
    return Tally(
        n=n,
        zeros=int(np.count_nonzero(w == 0.0)),
        max_weight=float(w.max()) if n else 0.0,
        unsupported=mass,
        reward=Powers.of(r),
        ips=Powers.of(wr),
        dr=Powers.of(dr),
        weight=Powers.of(w),
        w2r=float(w2 @ r),
        w3r=float((w2 * w) @ r),
        w3r2=float((w2 * wr) @ r),
        model=q_shown is not None or n == 0,
    )


def tally_pmf(
    reward: npt.ArrayLike,
    p_log: npt.ArrayLike,
    chosen: npt.ArrayLike,
    pmf: npt.ArrayLike,
    *,
    qhat: npt.ArrayLike | None = None,
    logged_pmf: npt.ArrayLike | None = None,
) -> Tally:
    """`tally` from the candidate's pmf over the logged eligible actions, one row per
    decision ([n, k], padded with 0), and the index shown on each row. qhat ([n, k]): the
    reward model's predictions, for dr. logged_pmf ([n, k]): the logging pmf, to find the
    candidate's mass where the logger had none (without it every column counts as
    supported); a candidate row's mass missing from the k columns counts as unsupported."""
    candidate = _matrix(pmf, "pmf", None, probabilities=True)
    n, k = candidate.shape
    index = _indices(chosen, n, k)
    rows = np.arange(n)
    mass = candidate.sum(axis=1)
    if np.any(mass > 1.0 + 1e-6):
        raise InvalidInput("a pmf row must not sum to more than 1", field="pmf")
    if logged_pmf is not None:
        logged = _matrix(logged_pmf, "logged_pmf", (n, k), probabilities=True)
        p = _column(p_log, "p_log", n)
        if not np.allclose(logged[rows, index], p, rtol=0.0, atol=1e-9):
            raise InvalidInput("p_log must equal logged_pmf at the chosen index", field="p_log")
        unlogged = logged == 0.0
        if unlogged.any():  # with an exploration floor and no padding, never
            mass = mass - np.einsum("ij,ij->i", candidate, unlogged)
    unsupported = np.maximum(1.0 - mass, 0.0)
    q_shown = q_new = None
    if qhat is not None:
        q = _matrix(qhat, "qhat", (n, k))
        q_shown = q[rows, index]
        q_new = np.einsum("ij,ij->i", candidate, q)
    return tally(
        reward,
        p_log,
        candidate[rows, index],
        q_shown=q_shown,
        q_new=q_new,
        unsupported=unsupported,
    )


def estimate(
    t: Tally,
    method: Method,
    *,
    alpha: float = 0.05,
    min_ess: float = MIN_ESS,
    max_unsupported: float = SUPPORT_TOLERANCE,
) -> Result:
    """The value of the candidate (or, for `logged`, of the logging policy) with its
    (1 - alpha) interval, or `Unsupported` with the reason. max_unsupported: the mean
    candidate mass per row on unsupported actions that is still read as rounding."""
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha must be in (0, 1), got {alpha!r}", field="alpha")
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
    reason = _refusal(t, method, min_ess, max_unsupported)
    if reason is not None:
        return Unsupported(method, reason, t.n, float(t.n) if method == "logged" else t.ess)
    terms = _terms(t, method)
    if terms is None:
        return Unsupported(method, _NO_SPREAD, t.n, float(t.n) if method == "logged" else t.ess)
    value, stderr, skewness = terms
    low, high = _interval(value, stderr, skewness if method != "dr" else 0.0, t.n, alpha)
    if method == "logged":
        return Estimate(method, value, low, high, stderr, alpha, t.n, t.n, 0.0, 1.0)
    zero_share = t.zeros / t.n
    return Estimate(method, value, low, high, stderr, alpha, t.n, t.ess, zero_share, t.max_weight)


def report(
    t: Tally,
    *,
    alpha: float = 0.05,
    min_ess: float = MIN_ESS,
    max_unsupported: float = SUPPORT_TOLERANCE,
) -> Report:
    """Every method's estimate over one tally."""
    results = [
        estimate(t, m, alpha=alpha, min_ess=min_ess, max_unsupported=max_unsupported)
        for m in METHODS
    ]
    return Report(*results)


def _refusal(t: Tally, method: Method, min_ess: float, max_unsupported: float) -> str | None:
    if t.n < 2:
        return f"{t.n} logged decisions: an interval needs at least 2"
    if method == "logged":
        return None
    if t.unsupported > max_unsupported * t.n:
        return (
            f"the candidate puts {t.unsupported / t.n:.3g} of its probability per decision "
            "(mean) on actions the logger could not show (probability 0): the log says "
            "nothing about them"
        )
    if t.ess < min_ess:
        return (
            f"effective sample size {t.ess:.1f} is below the minimum {min_ess:g}: the "
            f"candidate agrees with too few logged decisions ({t.n - t.zeros} of {t.n})"
        )
    if method == "dr" and not t.model:
        return "doubly robust needs the reward model's predictions (q_shown, q_new)"
    return None


_NO_SPREAD = "every row's term is the same (e.g. no reward observed): no interval to give"


def _terms(t: Tally, method: Method) -> tuple[float, float, float] | None:
    """The estimate, its standard error and the skewness of its per-row terms (for snips,
    of the delta method's linearised terms w (r - v) / mean(w)); None without spread."""
    n = t.n
    if method == "snips":
        w, v = t.weight, t.ips.s1 / t.weight.s1
        spread = t.ips.s2 - 2.0 * v * t.w2r + v * v * w.s2
        third = t.ips.s3 - 3.0 * v * t.w3r2 + 3.0 * v * v * t.w3r - v**3 * w.s3
        reference, scale = t.ips.s2 + v * v * w.s2, n / w.s1
    else:
        p = {"logged": t.reward, "ips": t.ips, "dr": t.dr}[method]
        v = p.s1 / n
        spread = p.s2 - v * p.s1
        third = p.s3 - 3.0 * v * p.s2 + 2.0 * n * v**3
        reference, scale = p.s2, 1.0
    cubed = (spread / n) ** 1.5  # 0 when the terms are so small (1e-100) that it underflows
    if not spread > 1e-12 * reference or cubed == 0.0:  # equal terms leave only rounding
        return None
    stderr = scale * math.sqrt(spread / (n * (n - 1)))
    skewness = (third / n) / cubed
    bound = math.sqrt(n)  # a sample's skewness is below sqrt(n); beyond it is rounding
    return v, stderr, min(max(skewness, -bound), bound)


def _interval(
    value: float, stderr: float, skewness: float, n: int, alpha: float
) -> tuple[float, float]:
    """Hall's (1992) skewness-corrected interval for a mean: g(T) = T + a T^2 + a^2 T^3 / 3
    + b, a = skewness / (3 sqrt n), b = skewness / (6 sqrt n), removes the n^-1/2 term of
    the studentised mean's Edgeworth expansion; the interval inverts g at +-z. Heavy
    importance weights skew the terms to the right, and the normal interval then misses
    above (docs/decisions/estimators.md)."""
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    a = skewness / (3.0 * math.sqrt(n))
    b = skewness / (6.0 * math.sqrt(n))
    return value - stderr * _g_inverse(z, a, b), value - stderr * _g_inverse(-z, a, b)


def _g_inverse(y: float, a: float, b: float) -> float:
    if abs(a) < 1e-9:
        return y - b
    return (float(np.cbrt(1.0 + 3.0 * a * (y - b))) - 1.0) / a


@dataclass(frozen=True, slots=True)
class RewardModel:
    """Per-action ridge regressions, one set per fold, each fitted on the other folds' rows;
    row i belongs to fold i % folds (its index in the log the model was fitted on)."""

    coef: Floats  # [folds, k, d + 1]: intercept first, shrunk towards `base`
    base: Floats  # [folds]: mean reward of the rows each fold's model was fitted on

    def predict(self, features: npt.ArrayLike | None, rows: npt.ArrayLike) -> Floats:
        """qhat [len(rows), k]: each row by the model that did not see its fold."""
        index = np.asarray(rows, dtype=np.int64)
        x = _design(features, index.size, self.coef.shape[2] - 1)
        folds = self.coef.shape[0]
        fold = index % folds
        out = np.empty((index.size, self.coef.shape[1]))
        for f in range(folds):
            mine = np.flatnonzero(fold == f)
            block = x[mine] @ self.coef[f].T
            block += self.base[f]
            out[mine] = block
        return out


def fit_rewards(
    features: npt.ArrayLike | None,
    chosen: npt.ArrayLike,
    reward: npt.ArrayLike,
    k: int,
    *,
    ridge: float = 1.0,
    folds: int = 2,
) -> RewardModel:
    """Fit qhat(x, a) = base + [1, x] . beta_a per action on the shown rows, ridge penalty
    `ridge` on every coefficient (an action seldom shown stays near the mean reward).
    features [n, d] (scaled by the caller) or None for shrunk per-action means."""
    r = _column(reward, "reward", None)
    n = r.size
    if k < 1 or folds < 2 or n < folds:
        raise InvalidInput(
            f"need k >= 1, folds >= 2 and at least one row per fold, got k={k}, "
            f"folds={folds}, {n} rows",
            field="folds",
        )
    if not ridge > 0.0:
        raise InvalidInput(f"ridge must be > 0, got {ridge!r}", field="ridge")
    x = _design(features, n, None)
    index = _indices(chosen, n, k)
    group = index * folds + np.arange(n) % folds
    order = np.argsort(group, kind="stable")
    edges = np.searchsorted(group[order], np.arange(k * folds + 1))
    d = x.shape[1]
    gram = np.zeros((k, folds, d, d))
    moment = np.zeros((k, folds, d))
    counts = np.zeros((k, folds))
    sums = np.zeros((k, folds))
    for g in range(k * folds):
        rows = order[edges[g] : edges[g + 1]]
        xg, rg = x[rows], r[rows]
        a, f = divmod(g, folds)
        gram[a, f], moment[a, f] = xg.T @ xg, xg.T @ rg
        counts[a, f], sums[a, f] = rows.size, rg.sum()
    coef = np.zeros((folds, k, d))
    base = np.zeros(folds)
    penalty = ridge * np.eye(d)
    for f in range(folds):
        others = np.arange(folds) != f
        base[f] = sums[:, others].sum() / counts[:, others].sum()
        g_sum = gram[:, others].sum(axis=1)
        # ridge on r - base: X'(r - base) = X'r - base * X'1, and X'1 is the Gram's first row
        m_sum = moment[:, others].sum(axis=1) - base[f] * g_sum[:, 0, :]
        coef[f] = np.linalg.solve(g_sum + penalty, m_sum[..., None])[..., 0]
    return RewardModel(coef=coef, base=base)


def cross_fit(
    features: npt.ArrayLike | None,
    chosen: npt.ArrayLike,
    reward: npt.ArrayLike,
    k: int,
    *,
    ridge: float = 1.0,
    folds: int = 2,
) -> Floats:
    """Out-of-fold qhat [n, k] for the same rows: `fit_rewards`, then each row predicted
    by the model fitted without it."""
    model = fit_rewards(features, chosen, reward, k, ridge=ridge, folds=folds)
    n = np.asarray(reward).size
    return model.predict(features, np.arange(n))


def _design(features: npt.ArrayLike | None, n: int, d: int | None) -> Floats:
    """[1, x] per row."""
    if features is None:
        if d not in (None, 0):
            raise InvalidInput(f"the model was fitted on {d} features", field="features")
        return np.ones((n, 1))
    x = _matrix(features, "features", None)
    if x.shape[0] != n or (d is not None and x.shape[1] != d):
        want = f"{n} rows" + ("" if d is None else f" x {d} features")
        raise InvalidInput(f"features must have {want}, got {x.shape}", field="features")
    return np.hstack([np.ones((n, 1)), x])


def _column(values: npt.ArrayLike, field: str, n: int | None) -> Floats:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or (n is not None and x.size != n):
        want = "a 1-D array" if n is None else f"{n} values"
        raise InvalidInput(f"{field} must be {want}, got shape {x.shape}", field=field)
    if not np.all(np.isfinite(x)):
        raise InvalidInput(f"{field} must be finite on every row", field=field)
    return x


def _probabilities(values: npt.ArrayLike, field: str, n: int) -> Floats:
    x = _column(values, field, n)
    if np.any(x < 0.0) or np.any(x > 1.0 + _PROBABILITY_SLACK):
        raise InvalidInput(f"{field} must be in [0, 1] on every row", field=field)
    return x


def _matrix(
    values: npt.ArrayLike, field: str, shape: tuple[int, int] | None, probabilities: bool = False
) -> Floats:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or (shape is not None and x.shape != shape):
        want = "a 2-D array" if shape is None else f"shape {shape}"
        raise InvalidInput(f"{field} must have {want}, got {x.shape}", field=field)
    if probabilities and x.size:  # NaN makes min and max NaN, which fails both
        if not (x.min() >= 0.0 and x.max() <= 1.0 + _PROBABILITY_SLACK):
            raise InvalidInput(f"{field} entries must be in [0, 1]", field=field)
    elif not np.all(np.isfinite(x)):
        raise InvalidInput(f"{field} must be finite", field=field)
    return x


def _indices(chosen: npt.ArrayLike, n: int, k: int) -> Ints:
    index = np.asarray(chosen)
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise InvalidInput(f"chosen must be {n} integer indices", field="chosen")
    if n and (index.min() < 0 or index.max() >= k):
        raise InvalidInput(f"chosen indices must be in [0, {k})", field="chosen")
    return index.astype(np.int64)
