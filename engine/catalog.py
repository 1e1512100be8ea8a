"""Action catalogs: actions, learning settings, validation with field paths, versions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import msgspec

from engine.actions import Action
from engine.constraints import NO_CONSTRAINTS, Constraints, parse_constraints
from engine.errors import InvalidInput, LimitExceeded
from engine.features import flatten
from engine.limits import Limits
from engine.profiles import DEFAULT_SPEC, FeatureSpec, parse_spec, spec_json
from engine.validate import ID_RE, as_number, as_object, no_unknown, one_of

ALGORITHMS = ("epsilon", "squarecb", "softmax", "bag", "cover", "rnd", "regcbopt")
AGGREGATIONS = ("earliest", "sum")
POLICIES = ("vw", "uniform")
Aggregation = Literal["earliest", "sum"]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
INTERACTION_RE = re.compile(r"[capi]{2,3}")
# context x action features, context x action id (see engine.vwformat.action_body)
DEFAULT_INTERACTIONS = ("ca", "ci")
MAX_WAIT_SECONDS = 7 * 24 * 3600.0
_encode = msgspec.json.Encoder().encode

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
    # RegCB bounds its confidence by the range of rewards (VW: of costs, -reward)
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
# VW's online optimiser: "coin" (coin betting, parameter free) or "adaptive" (VW's own
# adaptive, normalised SGD). With squarecb, epsilon or bag, adaptive SGD let one
# importance-weighted click on a rarely shown banner decay the learning rate so far that
# a segment stayed on the wrong banner for thousands of decisions, and coin betting did
# not; optimistic RegCB learns without importance weights and does best with adaptive
# SGD (with coin: regret 116 against 88 on segments, 20 seeds). docs/decisions/default-policy.md.
OPTIMIZERS = ("coin", "adaptive")
# The defaults a catalog's learning falls back to are those of the Loopwise release that
# created it: every stored version carries its catalog's defaults epoch (api.serving.catalogs),
# and later versions inherit it, so an upgrade never changes what an existing catalog
# learns with. New catalogs get the newest. docs/decisions/default-policy.md.
#   1 (until 2026-11-27): squarecb with coin betting
#   2: optimistic RegCB, mellowness 0.0001, with adaptive SGD; coin for other algorithms
DEFAULTS = 2
LEGACY_DEFAULTS = 1
LEGACY_PARAMETERS = {"mellowness": 0.001}  # parameter defaults the legacy epoch had


def default_algorithm(defaults: int = DEFAULTS) -> str:
    return "squarecb" if defaults == LEGACY_DEFAULTS else "regcbopt"


def default_optimizer(algorithm: str, defaults: int = DEFAULTS) -> str:
    """The optimizer of a catalog that names none: the one that did best with `algorithm`."""
    return "adaptive" if algorithm == "regcbopt" and defaults != LEGACY_DEFAULTS else "coin"


@dataclass(frozen=True, slots=True)
class Exploration:
    algorithm: str = field(default_factory=default_algorithm)
    parameters: Mapping[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        return self.parameters.get(name, PARAMETERS[name][0])

    def vw_args(self) -> list[str]:
        """Command-line arguments for VW's cb_explore_adf reduction."""
        if self.algorithm == "regcbopt":  # costs are -reward: the range turns over
            low, high = self.reward_range()
            mellowness = repr(float(self.value("mellowness")))
            costs = ["--cb_min_cost", repr(0.0 - high), "--cb_max_cost", repr(0.0 - low)]
            return ["--regcbopt", "--mellowness", mellowness, *costs]
        args = [f"--{self.algorithm}"] if self.algorithm in ("squarecb", "softmax") else []
        for name in USES[self.algorithm]:
            value = self.value(name)
            shown = str(int(value)) if name in INTEGER_PARAMETERS else repr(float(value))
            args += [f"--{name}", shown]
        if self.algorithm == "cover":
            args.append("--nounif")
        return args

    def reward_range(self) -> tuple[float, float]:
        """(min_reward, max_reward): the range RegCB learns rewards clipped to."""
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

    def vw_args(self) -> str:
        """The VW command line: a model is only compatible with the same command line."""
        parts = ["--cb_explore_adf", "--quiet", *self.exploration.vw_args()]
        if self.optimizer == "coin":
            parts.append("--coin")
        for pair in self.interactions:
            parts += ["--interactions", pair]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Catalog:
    name: str
    version: int
    actions: tuple[Action, ...]
    learning: Learning
    updated_at: float
    constraints: Constraints = NO_CONSTRAINTS
    features: FeatureSpec = DEFAULT_SPEC  # read from the feature store per decision
    index: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.index:
            object.__setattr__(self, "index", {a.id: i for i, a in enumerate(self.actions)})

    def action(self, action_id: str) -> Action:
        return self.actions[self.index[action_id]]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "updated_at": self.updated_at,
            "actions": [
                {"id": a.id, "features": a.features, "metadata": dict(a.metadata)}
                for a in self.actions
            ],
            "learning": learning_json(self.learning),
            "constraints": self.constraints.to_json(),
            "features": spec_json(self.features),
        }


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


def check_name(name: str, field_name: str = "name") -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{field_name} {name!r} must be 1-64 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            field=field_name,
        )
    return name


def parse_catalog(
    name: str,
    body: object,
    limits: Limits,
    *,
    version: int,
    now: float,
    defaults: int = DEFAULTS,
) -> Catalog:
    """Validate a catalog body (as decoded JSON/YAML); every error names its field.
    `defaults` is the catalog's defaults epoch: what its learning falls back to."""
    check_name(name)
    obj = as_object(body, "body")
    known = {"name", "actions", "learning", "constraints", "features", "version", "updated_at"}
    no_unknown(obj, known, "")
    _echoed(obj)
    if "name" in obj and obj["name"] != name:
        raise InvalidInput(
            f"name in the body ({obj['name']!r}) differs from the name in the path ({name!r})",
            field="name",
        )
    actions = _actions(obj.get("actions"), limits)
    learning = parse_learning(obj.get("learning", {}), limits, defaults)
    constraints = parse_constraints(obj.get("constraints"), [a.id for a in actions], limits)
    return Catalog(
        name=name,
        version=version,
        actions=actions,
        learning=learning,
        updated_at=now,
        constraints=constraints,
        features=parse_spec(obj["features"]) if "features" in obj else DEFAULT_SPEC,
    )


def _echoed(obj: Mapping[str, object]) -> None:
    """`version` and `updated_at` are what GET answers; a body may send them back (they
    are set by the store, not by the body), but only with their own types."""
    version = obj.get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise InvalidInput("version must be a positive integer", field="version")
    updated = obj.get("updated_at")
    if updated is not None and (isinstance(updated, bool) or not isinstance(updated, int | float)):
        raise InvalidInput(
            "updated_at must be a number (seconds since the epoch)", field="updated_at"
        )


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


def _actions(body: object, limits: Limits) -> tuple[Action, ...]:
    if not isinstance(body, list) or not body:
        raise InvalidInput("actions must be a non-empty array", field="actions")
    if len(body) > limits.max_actions:
        raise LimitExceeded(
            f"actions has {len(body)} entries, more than the limit of {limits.max_actions}",
            field="actions",
        )
    seen: set[str] = set()
    out: list[Action] = []
    metadata_bytes = 0
    for i, raw in enumerate(body):
        where = f"actions[{i}]"
        obj = as_object(raw, where)
        no_unknown(obj, {"id", "features", "metadata"}, f"{where}.")
        action_id = obj.get("id")
        if not isinstance(action_id, str) or not ID_RE.fullmatch(action_id):
            raise InvalidInput(
                f"{where}.id must be a string of 1-128 printable characters, got {action_id!r}",
                field=f"{where}.id",
            )
        if action_id in seen:
            raise InvalidInput(f"{where}.id {action_id!r} appears twice", field=f"{where}.id")
        seen.add(action_id)
        metadata = as_object(obj.get("metadata", {}), f"{where}.metadata")
        metadata_bytes += _metadata_bytes(metadata, metadata_bytes, limits, f"{where}.metadata")
        features = flatten(obj.get("features", {}), limits, field=f"{where}.features")
        out.append(Action(id=action_id, features=features, metadata=metadata))
    return tuple(out)


def _metadata_bytes(metadata: Mapping[str, object], before: int, limits: Limits, where: str) -> int:
    """The bytes of an action's metadata as compact JSON, within both metadata limits."""
    size = len(_encode(metadata)) if metadata else 0
    if size > limits.max_metadata_bytes:
        raise LimitExceeded(
            f"{where} is {size} bytes as JSON, more than the limit max_metadata_bytes of "
            f"{limits.max_metadata_bytes}",
            field=where,
        )
    if before + size > limits.max_catalog_metadata_bytes:
        raise LimitExceeded(
            f"{where} brings the catalog's metadata to {before + size} bytes as JSON, more "
            f"than the limit max_catalog_metadata_bytes of {limits.max_catalog_metadata_bytes}",
            field=where,
        )
    return size
