"""Auto-optimisation's rule: promote a candidate's learning settings only when the log says,
with confidence, that they beat the current ones.

The candidates and the current settings are replayed over the same recent log
(engine.evaluation, learning candidates trained progressively from an empty model), and
each gets a self-normalised estimate with its interval (engine.ope). The best candidate
by estimate is promoted only if the lower end of its interval is above the bar: the
conservative ("Seldonian") rule Personalizer used, so that a promotion is a finding, not
noise. Every run says what it found and why it promoted or not.

The bar is the higher of the current settings' replayed estimate and what the log
actually earned. A promoted setting starts a new model (api.serving.replica), so what it
must beat is the current model as it is, warm, not the current settings replayed from
nothing: a candidate's replay from an empty model over the window is what it would earn
over the next window of that length, learning included, and the logged value is what the
warm model earned over this one (and it keeps learning). Comparing cold against cold
promoted settings that lost the second half of a stream to the model they replaced
(`python -m benchmarks.optimize`, docs/decisions/experiments.md).

A catalog may also ask for optimisations on a schedule (`optimization` in its body,
`parse_schedule`): one run per period, over the window before it (api.serving.optimizations).

May import: the standard library and engine.errors / learning / limits / ope / validate.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidInput, LimitExceeded
from engine.learning import parse_learning
from engine.limits import Limits
from engine.ope import Estimate, Report
from engine.validate import as_number, as_object, nested, no_unknown

CURRENT = "current"  # the candidate name of the catalog's own settings
METHOD = "snips"  # its intervals kept their coverage with heavy weights (estimators.md)

# What is searched when the request names no candidates: the settings the quality
# benchmark compares (docs/decisions/default-policy.md), exploring ones included.
GRID: tuple[dict[str, object], ...] = (
    {"name": "regcbopt", "learning": {"exploration": {"algorithm": "regcbopt"}}},
    {"name": "squarecb", "learning": {"exploration": {"algorithm": "squarecb"}}},
    {
        "name": "epsilon-0.05",
        "learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.05}},
    },
    {"name": "epsilon-0.1", "learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.1}}},
    {"name": "softmax", "learning": {"exploration": {"algorithm": "softmax"}}},
    {"name": "bag", "learning": {"exploration": {"algorithm": "bag"}}},
)


def candidate_alpha(alpha: float, candidates: int) -> float:
    """The level of each candidate's interval when `candidates` are compared with the
    current settings: Bonferroni, so that the chance that any of them clears the bar by
    luck stays below alpha. With a 95% interval each, the best of six wide intervals
    cleared it by luck on the quality benchmark (`python -m benchmarks.optimize`)."""
    return alpha / max(1, candidates)


@dataclass(frozen=True, slots=True)
class Verdict:
    promote: str | None  # the candidate promoted, or None
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"promote": self.promote, "reason": self.reason}


def choose(reports: Mapping[str, Report]) -> Verdict:
    """The verdict over the candidates' reports; `CURRENT` is the catalog's own."""
    current = getattr(reports[CURRENT], METHOD)
    if not isinstance(current, Estimate):
        return Verdict(None, f"the current settings cannot be estimated: {current.reason}")
    logged = reports[CURRENT].logged
    bar, against = current.estimate, "the current settings' replayed estimate"
    if isinstance(logged, Estimate) and logged.estimate > bar:
        bar, against = logged.estimate, "what the log earned with the current model"
    supported = {
        name: e
        for name, r in reports.items()
        if name != CURRENT and isinstance(e := getattr(r, METHOD), Estimate)
    }
    if not supported:
        reasons = "; ".join(
            f"{name}: {getattr(r, METHOD).reason}" for name, r in reports.items() if name != CURRENT
        )
        return Verdict(None, f"no candidate can be estimated on this log ({reasons})")
    name, best = max(supported.items(), key=lambda kv: kv[1].estimate)
    if best.low > bar:
        return Verdict(
            name,
            f"{name} is estimated at {best.estimate:.4g} [{best.low:.4g}, {best.high:.4g}], its "
            f"lower bound above {against}, {bar:.4g}",
        )
    return Verdict(
        None,
        f"the best candidate, {name}, is estimated at {best.estimate:.4g} [{best.low:.4g}, "
        f"{best.high:.4g}]: its lower bound is not above {against}, {bar:.4g}, so the "
        "settings stay",
    )


MIN_EVERY_SECONDS = 10.0  # short periods are for trying it out; a day is typical
MAX_SECONDS = 366 * 86_400.0
MAX_CANDIDATES = 7  # with the current settings: engine.evaluation's limit of 8


@dataclass(frozen=True, slots=True)
class Schedule:
    """Optimise every `every_seconds` over the `window_seconds` before; promote the verdict
    unless `promote` is false; `candidates` ({name, learning}) replace GRID when given."""

    every_seconds: float = 86_400.0
    window_seconds: float = 86_400.0
    promote: bool = True
    candidates: tuple[dict[str, object], ...] = field(default=(), compare=False)

    def slot(self, now: float) -> int:
        """The period `now` falls in: one run per slot."""
        return int(now // self.every_seconds)

    def to_json(self) -> dict[str, object]:
        return {
            "every_seconds": self.every_seconds,
            "window_seconds": self.window_seconds,
            "promote": self.promote,
            **({"candidates": [dict(c) for c in self.candidates]} if self.candidates else {}),
        }


def parse_schedule(body: object, limits: Limits) -> Schedule | None:
    """A catalog's `optimization`; None when it has none."""
    if body is None:
        return None
    obj = as_object(body, "optimization")
    no_unknown(obj, {"every_seconds", "window_seconds", "promote", "candidates"}, "optimization.")
    every, window = (
        as_number(obj.get(key, 86_400.0), limits, f"optimization.{key}")
        for key in ("every_seconds", "window_seconds")
    )
    for key, value in (("every_seconds", every), ("window_seconds", window)):
        if not MIN_EVERY_SECONDS <= value <= MAX_SECONDS:
            raise InvalidInput(
                f"optimization.{key} must be in [{MIN_EVERY_SECONDS:g}, {MAX_SECONDS:g}], "
                f"got {value:g}",
                field=f"optimization.{key}",
            )
    promote = obj.get("promote", True)
    if not isinstance(promote, bool):
        raise InvalidInput("optimization.promote must be a boolean", field="optimization.promote")
    return Schedule(every, window, promote, _candidates(obj.get("candidates", []), limits))


def _candidates(body: object, limits: Limits) -> tuple[dict[str, object], ...]:
    if not isinstance(body, list):
        raise InvalidInput(
            "optimization.candidates must be an array", field="optimization.candidates"
        )
    if len(body) > MAX_CANDIDATES:
        raise LimitExceeded(
            f"optimization.candidates has {len(body)} entries, more than the limit of "
            f"{MAX_CANDIDATES}",
            field="optimization.candidates",
        )
    out: list[dict[str, object]] = []
    for i, raw in enumerate(body):
        where = f"optimization.candidates[{i}]"
        obj = as_object(raw, where)
        no_unknown(obj, {"name", "learning"}, f"{where}.")
        name = obj.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or name == CURRENT:
            raise InvalidInput(
                f"{where}.name must be 1-64 characters and not {CURRENT!r}", field=f"{where}.name"
            )
        if any(c["name"] == name for c in out):
            raise InvalidInput(f"{where}.name {name!r} appears twice", field=f"{where}.name")
        learning = obj.get("learning")
        nested(functools.partial(parse_learning, learning, limits), where)
        out.append({"name": name, "learning": learning})
    return tuple(out)
