"""A catalog's experiment: named arms, each a policy with a traffic share, and who sees which.

An arm's policy is the catalog's own model (`catalog`), a model of its own with its own
learning settings (`{learning: {...}}`, any setting engine.learning takes), a rule
(`{rule: uniform | first | priority, priority: [...]}`, as engine.failover's safe
policies), or the catalog's model frozen when the arm first decides (`frozen`).

Assignment is sticky: a user's arm is a hash of the experiment's seed, its name and the
user's pseudonym (the event id when there is no user) and each arm (weighted rendezvous
hashing, `assign`), so the same user sees the same arm on every process and every
restart, and a seed reproduces a whole assignment. A paused or stopped arm's users go to
the others and no one else moves; a raised share takes users only for its arm. The assignment's
probability is logged with each decision, and each decision's action probability is the
arm's, given the arm: what an off-policy estimate over mixed traffic needs.

The experiment is part of the catalog body, so every change (an arm added, re-weighted,
paused, ended) is a new catalog version.

May import: the standard library and engine.errors / failover / learning / limits / validate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from engine.errors import InvalidInput
from engine.failover import SAFE_POLICIES, Failover, parse_failover
from engine.learning import DEFAULTS, Learning, learning_json, parse_learning
from engine.limits import Limits
from engine.validate import as_number, as_object, nested, no_unknown

MAX_ARMS = 8
KINDS = ("catalog", "learning", "rule", "frozen")


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    kind: str  # one of KINDS
    share: float  # relative traffic weight
    learning: Learning | None = None  # kind learning
    rule: Failover | None = None  # kind rule: the rule as a safe-policy spec
    paused: bool = False
    keep_running: bool = False  # exempt from the guardrail (a marketer's override)

    @property
    def learns(self) -> bool:
        return self.kind in ("catalog", "learning")

    def to_json(self) -> dict[str, object]:
        policy: object = self.kind
        if self.kind == "learning" and self.learning is not None:
            policy = {"learning": learning_json(self.learning)}
        elif self.kind == "rule" and self.rule is not None:
            rule: dict[str, object] = {"rule": self.rule.safe_policy}
            if self.rule.priority:
                rule["priority"] = list(self.rule.priority)
            policy = rule
        return {
            "name": self.name,
            "share": self.share,
            "policy": policy,
            "paused": self.paused,
            "keep_running": self.keep_running,
        }


@dataclass(frozen=True, slots=True)
class Guardrail:
    """Stop an arm when its difference to control is below `min_difference` with
    confidence: the upper end of the difference's interval under it."""

    min_difference: float  # in reward units, e.g. -0.02 for two points of click rate
    min_decisions: int = 200  # per arm, before the guardrail may act

    def to_json(self) -> dict[str, object]:
        return {"min_difference": self.min_difference, "min_decisions": self.min_decisions}


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    control: str
    seed: int = 0
    guardrail: Guardrail | None = None
    alpha: float = 0.05  # the results' intervals are 1 - alpha
    reward_range: tuple[float, float] = (0.0, 1.0)  # rewards are clipped to it for intervals

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "seed": self.seed,
            "control": self.control,
            "alpha": self.alpha,
            "reward_range": list(self.reward_range),
            "arms": [a.to_json() for a in self.arms],
        }
        if self.guardrail is not None:
            out["guardrail"] = self.guardrail.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Assignment:
    arm: Arm
    probability: float  # of this arm for this unit, given the active arms' shares


def arm_model(catalog: str, arm: str) -> str:
    """The name an arm's own model is kept under ('~' is in no catalog name)."""
    return f"{catalog}~{arm}"


def assign(experiment: Experiment, unit: str, stopped: Collection[str] = ()) -> Assignment:
    """The arm of `unit` (a user's pseudonym, else the event id) among the arms that are
    not paused or `stopped`, each with probability share / (the active arms' shares).

    Weighted rendezvous hashing: each arm draws an exponential race time
    -log(u) / share from a hash of (seed, experiment, unit, arm) and the earliest wins.
    So pausing, stopping or removing an arm moves only its own units, raising an arm's
    share moves units only to it, and a new arm takes units only for itself."""
    active = [a for a in experiment.arms if _active(a, stopped)]
    if not active:  # every arm paused or stopped: control decides
        return Assignment(experiment.arm(experiment.control), 1.0)
    total = sum(a.share for a in active)
    winner = min(active, key=lambda a: -math.log(_draw(experiment, unit, a.name)) / a.share)
    return Assignment(winner, winner.share / total)


def _active(arm: Arm, stopped: Collection[str]) -> bool:
    return arm.share > 0 and not arm.paused and arm.name not in stopped


def _draw(experiment: Experiment, unit: str, arm: str) -> float:
    """A uniform draw in (0, 1] from (seed, experiment, unit, arm)."""
    key = f"{experiment.seed}\x00{experiment.name}\x00{unit}\x00{arm}".encode()
    digest = hashlib.blake2b(key, digest_size=8, person=b"lw-assign").digest()
    return ((int.from_bytes(digest, "little") >> 11) + 1) * 2.0**-53


# -- parsing --------------------------------------------------------------------------


def parse_experiment(
    body: object,
    action_ids: Sequence[str],
    limits: Limits,
    defaults: int = DEFAULTS,
    reward_range: tuple[float, float] = (0.0, 1.0),
) -> Experiment | None:
    """Validate a catalog's `experiment` object; every error names its field.
    `reward_range` is the catalog's declared one, the default of the experiment's."""
    if body is None:
        return None
    obj = as_object(body, "experiment")
    known = {"name", "arms", "control", "seed", "guardrail", "alpha", "reward_range"}
    no_unknown(obj, known, "experiment.")
    name = obj.get("name")
    if not isinstance(name, str) or not _name_ok(name):
        raise InvalidInput(
            "experiment.name must be 1-64 letters, digits, '_', '.', '-'", field="experiment.name"
        )
    raw_arms = obj.get("arms")
    if not isinstance(raw_arms, list) or not 2 <= len(raw_arms) <= MAX_ARMS:
        raise InvalidInput(
            f"experiment.arms must be an array of 2 to {MAX_ARMS} arms", field="experiment.arms"
        )
    arms: list[Arm] = []
    for i, raw in enumerate(raw_arms):
        arm = _arm(raw, f"experiment.arms[{i}]", action_ids, limits, defaults)
        if any(a.name == arm.name for a in arms):
            raise InvalidInput(
                f"experiment.arms[{i}].name {arm.name!r} appears twice",
                field=f"experiment.arms[{i}].name",
            )
        arms.append(arm)
    control = obj.get("control", arms[0].name)
    if not isinstance(control, str) or control not in {a.name for a in arms}:
        raise InvalidInput(
            f"experiment.control must name one of the arms, got {control!r}",
            field="experiment.control",
        )
    seed = as_number(obj.get("seed", 0), limits, "experiment.seed")
    if seed != int(seed) or seed < 0:
        raise InvalidInput("experiment.seed must be a whole number >= 0", field="experiment.seed")
    alpha = _alpha(obj.get("alpha", 0.05), limits, "experiment.alpha")
    guardrail = _guardrail(obj.get("guardrail"), limits)
    bounds = _range(obj.get("reward_range", list(reward_range)), limits)
    return Experiment(str(name), tuple(arms), control, int(seed), guardrail, alpha, bounds)


def _range(raw: object, limits: Limits) -> tuple[float, float]:
    where = "experiment.reward_range"
    if not isinstance(raw, list) or len(raw) != 2:
        raise InvalidInput(f"{where} must be [low, high]", field=where)
    low = as_number(raw[0], limits, f"{where}[0]")
    high = as_number(raw[1], limits, f"{where}[1]")
    if not low < high:
        raise InvalidInput(f"{where} needs low < high, got [{low:g}, {high:g}]", field=where)
    return low, high


def _name_ok(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isalnum() or c in "_.-" for c in name)


def _arm(raw: object, where: str, action_ids: Sequence[str], limits: Limits, defaults: int) -> Arm:
    obj = as_object(raw, where)
    no_unknown(obj, {"name", "share", "policy", "paused", "keep_running"}, f"{where}.")
    name = obj.get("name")
    if not isinstance(name, str) or not _name_ok(name):
        raise InvalidInput(
            f"{where}.name must be 1-64 letters, digits, '_', '.', '-'", field=f"{where}.name"
        )
    share = as_number(obj.get("share", 1.0), limits, f"{where}.share")
    if not 0.0 <= share <= 1e6:
        raise InvalidInput(f"{where}.share must be between 0 and 1e6", field=f"{where}.share")
    flags = {}
    for flag in ("paused", "keep_running"):
        value = obj.get(flag, False)
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}.{flag} must be a boolean", field=f"{where}.{flag}")
        flags[flag] = value
    policy = obj.get("policy", "catalog")
    base = Arm(
        str(name), "catalog", share, paused=flags["paused"], keep_running=flags["keep_running"]
    )
    if policy in ("catalog", "frozen"):
        return replace(base, kind=str(policy))
    spec = as_object(policy, f"{where}.policy")
    if "learning" in spec:
        no_unknown(spec, {"learning"}, f"{where}.policy.")
        learning = nested(
            lambda: parse_learning(spec["learning"], limits, defaults), where, insert="policy."
        )
        return replace(base, kind="learning", learning=learning)
    if "rule" in spec:
        no_unknown(spec, {"rule", "priority"}, f"{where}.policy.")
        if spec["rule"] not in SAFE_POLICIES:
            raise InvalidInput(
                f"{where}.policy.rule must be one of {', '.join(SAFE_POLICIES)}",
                field=f"{where}.policy.rule",
            )
        body = {
            "safe_policy": spec["rule"],
            **({"priority": spec["priority"]} if "priority" in spec else {}),
        }
        rule = nested(
            lambda: parse_failover(body, action_ids, limits), where, "failover.", "policy."
        )
        return replace(base, kind="rule", rule=rule)
    raise InvalidInput(
        f"{where}.policy must be catalog, frozen, {{learning: {{...}}}} or {{rule: ...}}",
        field=f"{where}.policy",
    )


def _alpha(raw: object, limits: Limits, where: str) -> float:
    alpha = as_number(raw, limits, where)
    if not 0.0 < alpha < 0.5:
        raise InvalidInput(f"{where} must be in (0, 0.5)", field=where)
    return alpha


def _guardrail(raw: object, limits: Limits) -> Guardrail | None:
    if raw is None:
        return None
    obj = as_object(raw, "experiment.guardrail")
    no_unknown(obj, {"min_difference", "min_decisions"}, "experiment.guardrail.")
    if "min_difference" not in obj:
        raise InvalidInput(
            "experiment.guardrail.min_difference is required",
            field="experiment.guardrail.min_difference",
        )
    low = as_number(obj["min_difference"], limits, "experiment.guardrail.min_difference")
    n = as_number(obj.get("min_decisions", 200), limits, "experiment.guardrail.min_decisions")
    if n != int(n) or n < 1:
        raise InvalidInput(
            "experiment.guardrail.min_decisions must be a whole number >= 1",
            field="experiment.guardrail.min_decisions",
        )
    return Guardrail(low, int(n))
