"""A catalog's learning settings: the policy, its exploration, what it learns from.

This is what a catalog *declares* under "learning", validated (algorithm names, parameter
ranges, interactions, the reward join's settings) and resolved against the catalog's
defaults epoch, so that `GET` shows every setting and an upgrade never changes what a
stored catalog learns with. How a policy turns these settings into its own arguments is
the policy's business (policies.vw builds VW's command line).

`policy` is VW's contextual bandit (`vw`, with `exploration`, `interactions` and
`optimizer`), `uniform`, or one of two numpy policies with a settings block of their own:
`linucb` (`learning.linucb`: disjoint LinUCB, policies.linucb) and `thompson`
(`learning.thompson`: Beta-Bernoulli Thompson sampling per action, policies.thompson).
`exploration`, `interactions` and `optimizer` are VW's, and refused with those two rather
than ignored, since neither could honour them: LinUCB hashes the context into a vector of
its own per action (no namespace crosses) and Thompson reads no features; LinUCB solves
its ridge regression exactly and Thompson counts, so there is no SGD to choose. Thompson
learns rewards clipped to [0, 1] (a reward is a fractional click); LinUCB learns them as
given. The reward join's settings (`reward_wait_seconds`, `default_reward`,
`aggregation`) apply to every policy.

May import: the standard library and engine.errors / engine.limits / engine.validate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

from engine.errors import InvalidInput
from engine.limits import Limits
from engine.validate import as_number, as_object, no_unknown, one_of

ALGORITHMS = ("epsilon", "squarecb", "softmax", "bag", "cover", "rnd", "regcbopt")
AGGREGATIONS = ("earliest", "sum")
POLICIES = ("vw", "uniform", "thompson", "linucb")
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
class LinUCBSettings:
    """policies.linucb's: the confidence bonus `alpha`, the share `epsilon` spread over
    every eligible action, the hashed context's width `dim` (each action learned keeps a
    dim x dim matrix: 32 KB at 64) and the ridge prior `ridge`."""

    alpha: float = 1.0
    epsilon: float = 0.05
    dim: int = 64
    ridge: float = 1.0


@dataclass(frozen=True, slots=True)
class ThompsonSettings:
    """policies.thompson's: the posterior `draws` its pmf is estimated from (a decision
    costs draws x actions Beta samples) and the pseudo-wins `smoothing` each action gets."""

    draws: int = 512
    smoothing: float = 0.5


# (minimum, maximum) of each setting of learning.linucb and learning.thompson; the
# defaults are the dataclasses' (a stored catalog is read again from its body, so moving
# one of them needs a new defaults epoch). Whole numbers: dim and draws.
POLICY_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "linucb": {
        "alpha": (0.0, 1e3),
        "epsilon": (0.001, 1.0),  # > 0: every eligible action keeps support
        "dim": (2, 128),  # 128: 128 KB per action learned, in memory and in checkpoints
        "ridge": (0.001, 1e6),
    },
    "thompson": {
        "draws": (1, 4096),  # 4,096 x 50 actions took 17 ms a decision here
        "smoothing": (0.001, 1e6),
    },
}
WHOLE_POLICY_PARAMETERS = frozenset({"dim", "draws"})
VW_SETTINGS = ("exploration", "interactions", "optimizer")
THOMPSON_REWARDS = (0.0, 1.0)  # what Thompson sampling learns a reward clipped to


@dataclass(frozen=True, slots=True)
class Learning:
    policy: str = "vw"
    exploration: Exploration = field(default_factory=Exploration)
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    reward_wait_seconds: float = 10.0
    default_reward: float = 0.0
    aggregation: Aggregation = "earliest"
    optimizer: str = ""  # "": default_optimizer of the exploration algorithm
    linucb: LinUCBSettings = field(default_factory=LinUCBSettings)  # read by policy linucb
    thompson: ThompsonSettings = field(default_factory=ThompsonSettings)  # by thompson

    def __post_init__(self) -> None:
        if not self.optimizer:
            object.__setattr__(self, "optimizer", default_optimizer(self.exploration.algorithm))

    def learned_reward(self, reward: float) -> float:
        """The reward as the policy learns it: Thompson's clipped to [0, 1], RegCB's to its
        declared range, any other as given."""
        if self.policy == "thompson":
            return min(max(reward, THOMPSON_REWARDS[0]), THOMPSON_REWARDS[1])
        if self.policy == "vw":
            return self.exploration.learned_reward(reward)
        return reward


def learning_json(learning: Learning) -> dict[str, object]:
    """Every setting, resolved; what parse_learning reads back to the same Learning."""
    join = {
        "reward_wait_seconds": learning.reward_wait_seconds,
        "default_reward": learning.default_reward,
        "aggregation": learning.aggregation,
    }
    if learning.policy == "linucb":
        return {"policy": "linucb", "linucb": asdict(learning.linucb), **join}
    if learning.policy == "thompson":
        return {"policy": "thompson", "thompson": asdict(learning.thompson), **join}
    return {
        "policy": learning.policy,
        "exploration": {
            "algorithm": learning.exploration.algorithm,
            **{n: learning.exploration.value(n) for n in USES[learning.exploration.algorithm]},
        },
        "interactions": list(learning.interactions),
        **join,
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
            "linucb",
            "thompson",
        },
        "learning.",
    )
    policy = one_of(obj.get("policy", "vw"), POLICIES, "learning.policy")
    _only_for(obj, policy)
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
        linucb=_linucb(obj.get("linucb", {}), limits),
        thompson=_thompson(obj.get("thompson", {}), limits),
    )


def _only_for(obj: Mapping[str, object], policy: str) -> None:
    """Refuse the settings that `policy` would not read: VW's with linucb or thompson,
    and each of those two's block with any other policy."""
    for key in VW_SETTINGS if policy in POLICY_BOUNDS else ():
        if key in obj:
            raise InvalidInput(
                f"learning.{key} is a setting of policy 'vw'; policy {policy!r} takes "
                f"learning.{policy}",
                field=f"learning.{key}",
            )
    for own in POLICY_BOUNDS:
        if own in obj and own != policy:
            raise InvalidInput(
                f"learning.{own} is read only with policy {own!r}, not {policy!r}",
                field=f"learning.{own}",
            )


def _linucb(body: object, limits: Limits) -> LinUCBSettings:
    v = _settings(body, "linucb", asdict(LinUCBSettings()), limits)
    return LinUCBSettings(
        alpha=v["alpha"], epsilon=v["epsilon"], dim=int(v["dim"]), ridge=v["ridge"]
    )


def _thompson(body: object, limits: Limits) -> ThompsonSettings:
    v = _settings(body, "thompson", asdict(ThompsonSettings()), limits)
    return ThompsonSettings(draws=int(v["draws"]), smoothing=v["smoothing"])


def _settings(
    body: object, policy: str, defaults: Mapping[str, float], limits: Limits
) -> dict[str, float]:
    """The settings block of `policy`, each in its bounds, missing ones at their defaults."""
    obj = as_object(body, f"learning.{policy}")
    no_unknown(obj, defaults, f"learning.{policy}.")
    out: dict[str, float] = {}
    for name, default in defaults.items():
        where = f"learning.{policy}.{name}"
        value = as_number(obj.get(name, default), limits, where)
        low, high = POLICY_BOUNDS[policy][name]
        if not low <= value <= high:
            raise InvalidInput(
                f"{where} must be in [{low:g}, {high:g}], got {value!r}", field=where
            )
        if name in WHOLE_POLICY_PARAMETERS and value != int(value):
            raise InvalidInput(f"{where} must be a whole number, got {value!r}", field=where)
        out[name] = value
    return out


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
