"""A catalog's learning settings: the policy, its exploration, what it learns from.

This is what a catalog *declares* under "learning", validated (algorithm names, parameter
ranges, interactions, the reward join's settings) and resolved against the catalog's
defaults epoch, so that `GET` shows every setting and an upgrade never changes what a
stored catalog learns with. How a policy turns these settings into its own arguments is
the policy's business (policies.vw builds VW's command line).

May import: the standard library and engine.errors / engine.limits / engine.validate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from engine.errors import InvalidInput
from engine.limits import Limits
from engine.validate import as_number, as_object, no_unknown, one_of

ALGORITHMS = ("epsilon", "squarecb", "softmax", "bag", "cover", "rnd", "regcbopt")
AGGREGATIONS = ("earliest", "sum")
POLICIES = ("vw", "uniform")
Aggregation = Literal["earliest", "sum"]
INTERACTION_RE = re.compile(r"[capi]{2,3}")
# context x action features, context x action id (see engine.vwformat.action_body)
DEFAULT_INTERACTIONS = ("ca", "ci")
MAX_WAIT_SECONDS = 7 * 24 * 3600.0

# name -> (default, minimum, maximum); an algorithm reads only the parameters it names.
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "epsilon": (0.05, 0.0, 1.0),
    "gamma_scale": (10.0, 1e-6, 1e6),
    "gamma_exponent": (0.5, 0.0, 1.0),
    "lambda": (10.0, 1e-6, 1e6),
    "bag": (5, 1, 64),
    "cover": (3, 1, 64),
    "psi": (1.0, 0.0, 1e6),
    "rnd": (3, 1, 64),
    "rnd_alpha": (0.1, 1e-6, 1e6),
    "rnd_invlambda": (0.1, 1e-6, 1e6),
    "mellowness": (0.0001, 1e-9, 1e3),
    # RegCB bounds its confidence by the range of rewards, declared with the catalog
    "min_reward": (0.0, -1e12, 1e12),
    "max_reward": (1.0, -1e12, 1e12),
}
USES: dict[str, tuple[str, ...]] = {
    "epsilon": ("epsilon",),
    "squarecb": ("gamma_scale", "gamma_exponent"),
    "softmax": ("lambda",),
    "bag": ("bag", "epsilon"),
    "cover": ("cover", "psi"),
    "rnd": ("rnd", "rnd_alpha", "rnd_invlambda", "epsilon"),
    "regcbopt": ("mellowness", "min_reward", "max_reward"),
}
INTEGER_PARAMETERS = frozenset({"bag", "cover", "rnd"})

# The optimiser a catalog may name: "coin" (coin betting, parameter free) or "adaptive"
# (adaptive, normalised SGD). Coin is the default for every algorithm but optimistic RegCB
# (from defaults epoch 2): with adaptive SGD one importance-weighted click on a rarely
# shown banner could decay the learning rate until a segment stayed on the wrong banner for
# thousands of decisions, and with coin betting it did not (docs/decisions/coin-betting.md);
# RegCB learns without importance weights and does better with adaptive SGD
# (docs/decisions/default-policy.md).
OPTIMIZERS = ("coin", "adaptive")

# The defaults a catalog's learning falls back to are those of the Loopwise release that
# created it: every stored version carries its catalog's defaults epoch (api.serving.catalogs),
# and later versions inherit it, so an upgrade never changes what an existing catalog
# learns with. New catalogs get the newest. docs/decisions/default-policy.md.
#   1 (until 2026-11-27): squarecb with coin betting
#   2: optimistic RegCB, mellowness 0.0001, with adaptive SGD; coin for other algorithms
#   3 (from 2026-12-07): as 2, and an exploration floor of DEFAULT_FLOOR where the catalog's
#     constraints set none, so that its log supports evaluating other policies
DEFAULTS = 3
FLOORED_DEFAULTS = 3  # the first epoch with a default exploration floor
DEFAULT_FLOOR = 0.02
LEGACY_DEFAULTS = 1
LEGACY_PARAMETERS = {"mellowness": 0.001}  # parameter defaults the legacy epoch had


def default_algorithm(defaults: int = DEFAULTS) -> str:
    return "squarecb" if defaults == LEGACY_DEFAULTS else "regcbopt"


def default_floor(defaults: int = DEFAULTS) -> float:
    """The exploration floor of a catalog whose constraints set none: greedy RegCB logs
    probability 1 for what it shows, and no other policy, rule or constraint change can be
    evaluated on such a log (docs/decisions/default-policy.md#support-for-evaluation)."""
    return DEFAULT_FLOOR if defaults >= FLOORED_DEFAULTS else 0.0


def default_optimizer(algorithm: str, defaults: int = DEFAULTS) -> str:
    """The optimizer of a catalog that names none: the one that did best with `algorithm`."""
    return "adaptive" if algorithm == "regcbopt" and defaults != LEGACY_DEFAULTS else "coin"


@dataclass(frozen=True, slots=True)
class Exploration:
    algorithm: str = field(default_factory=default_algorithm)
    parameters: Mapping[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        return self.parameters.get(name, PARAMETERS[name][0])

    def reward_range(self) -> tuple[float, float]:
        """(min_reward, max_reward): the declared range RegCB learns rewards clipped to."""
        return float(self.value("min_reward")), float(self.value("max_reward"))

    def learned_reward(self, reward: float) -> float:
        """The reward as it is learned: RegCB's clipped to the declared range."""
        if self.algorithm != "regcbopt":
            return reward
        low, high = self.reward_range()
        return min(max(reward, low), high)


@dataclass(frozen=True, slots=True)
class Learning:
    policy: str = "vw"
    exploration: Exploration = field(default_factory=Exploration)
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    reward_wait_seconds: float = 10.0
    default_reward: float = 0.0
    aggregation: Aggregation = "earliest"
    optimizer: str = ""  # "": default_optimizer of the exploration algorithm

    def __post_init__(self) -> None:
        if not self.optimizer:
            object.__setattr__(self, "optimizer", default_optimizer(self.exploration.algorithm))


def learning_json(learning: Learning) -> dict[str, object]:
    return {
        "policy": learning.policy,
        "exploration": {
            "algorithm": learning.exploration.algorithm,
            **{n: learning.exploration.value(n) for n in USES[learning.exploration.algorithm]},
        },
        "interactions": list(learning.interactions),
        "reward_wait_seconds": learning.reward_wait_seconds,
        "default_reward": learning.default_reward,
        "aggregation": learning.aggregation,
        "optimizer": learning.optimizer,
    }


def parse_learning(body: object, limits: Limits, defaults: int = DEFAULTS) -> Learning:
    obj = as_object(body, "learning")
    no_unknown(
        obj,
        {
            "policy",
            "exploration",
            "interactions",
            "reward_wait_seconds",
            "default_reward",
            "aggregation",
            "optimizer",
        },
        "learning.",
    )
    policy = one_of(obj.get("policy", "vw"), POLICIES, "learning.policy")
    aggregation = one_of(obj.get("aggregation", "earliest"), AGGREGATIONS, "learning.aggregation")
    wait = as_number(obj.get("reward_wait_seconds", 10.0), limits, "learning.reward_wait_seconds")
    if not 0.0 < wait <= MAX_WAIT_SECONDS:
        raise InvalidInput(
            f"learning.reward_wait_seconds must be in (0, {MAX_WAIT_SECONDS:g}], got {wait!r}",
            field="learning.reward_wait_seconds",
        )
    exploration = _exploration(obj.get("exploration", {}), limits, defaults)
    optimizer = obj.get("optimizer", default_optimizer(exploration.algorithm, defaults))
    return Learning(
        policy=policy,
        exploration=exploration,
        interactions=_interactions(obj.get("interactions", list(DEFAULT_INTERACTIONS))),
        reward_wait_seconds=wait,
        default_reward=as_number(obj.get("default_reward", 0.0), limits, "learning.default_reward"),
        aggregation=cast(Aggregation, aggregation),
        optimizer=one_of(optimizer, OPTIMIZERS, "learning.optimizer"),
    )


def _exploration(body: object, limits: Limits, defaults: int) -> Exploration:
    obj = as_object(body, "learning.exploration")
    algorithm = one_of(
        obj.get("algorithm", default_algorithm(defaults)),
        ALGORITHMS,
        "learning.exploration.algorithm",
    )
    allowed = USES[algorithm]
    params: dict[str, float] = {}
    for key, raw in obj.items():
        if key == "algorithm":
            continue
        where = f"learning.exploration.{key}"
        if key not in allowed:
            raise InvalidInput(
                f"{where} is not a parameter of {algorithm!r}; it takes {', '.join(allowed)}",
                field=where,
            )
        value = as_number(raw, limits, where)
        _, low, high = PARAMETERS[key]
        if not low <= value <= high:
            raise InvalidInput(
                f"{where} must be in [{low:g}, {high:g}], got {value!r}", field=where
            )
        if key in INTEGER_PARAMETERS and value != int(value):
            raise InvalidInput(f"{where} must be a whole number, got {value!r}", field=where)
        params[key] = value
    if defaults == LEGACY_DEFAULTS:
        params = {**{k: v for k, v in LEGACY_PARAMETERS.items() if k in allowed}, **params}
    exploration = Exploration(algorithm=algorithm, parameters=params)
    if algorithm == "regcbopt":
        low, high = exploration.reward_range()
        if not low < high:
            raise InvalidInput(
                f"learning.exploration.max_reward must be above min_reward ({low:g}), got {high:g}",
                field="learning.exploration.max_reward",
            )
    return exploration


def _interactions(body: object) -> tuple[str, ...]:
    if not isinstance(body, list):
        raise InvalidInput("learning.interactions must be an array", field="learning.interactions")
    out: list[str] = []
    for i, item in enumerate(body):
        where = f"learning.interactions[{i}]"
        if not isinstance(item, str) or not INTERACTION_RE.fullmatch(item):
            raise InvalidInput(
                f"{where} must be 2-3 letters of c (context), a (action), i (action id), "
                f"p (slot), got {item!r}",
                field=where,
            )
        out.append(item)
    return tuple(dict.fromkeys(out))
