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

May import: the standard library and engine.ope / learning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.ope import Estimate, Report

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
