"""Action catalogs: a named, versioned list of actions with its learning settings
(engine.learning), constraints (engine.constraints) and feature spec (engine.featurespec),
validated with field paths."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from engine.actions import Action
from engine.constraints import NO_CONSTRAINTS, Constraints
from engine.constraintspec import parse_constraints
from engine.errors import InvalidInput, LimitExceeded
from engine.experiment import Experiment, parse_experiment
from engine.failover import DEFAULT_FAILOVER, Failover, parse_failover
from engine.features import flatten
from engine.featurespec import DEFAULT_SPEC, FeatureSpec, parse_spec, spec_json
from engine.learning import DEFAULTS, Learning, default_floor, learning_json, parse_learning
from engine.limits import Limits
from engine.optimize import Schedule, parse_schedule
from engine.validate import ID_RE, as_object, no_unknown, one_of

MODES = ("online", "apprentice", "logging")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Catalog:
    name: str
    version: int
    actions: tuple[Action, ...]
    learning: Learning
    updated_at: float
    constraints: Constraints = NO_CONSTRAINTS
    features: FeatureSpec = DEFAULT_SPEC  # read from the feature store per decision
    failover: Failover = DEFAULT_FAILOVER  # the safe policy and when it answers
    experiment: Experiment | None = None  # arms that share the catalog's traffic
    optimization: Schedule | None = None  # auto-optimisation on a schedule
    # online: the policy decides; apprentice: the request's baseline is shown and learned
    # from, the policy's own choice kept beside it; logging: the same, nothing learned
    mode: str = "online"
    index: Mapping[str, int] = field(default_factory=dict, compare=False)
    # deciding over a request's own actions (engine.inline.with_inline), not stored ones
    inline: bool = field(default=False, compare=False)

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
            "failover": self.failover.to_json(),
            **({"experiment": self.experiment.to_json()} if self.experiment else {}),
            **({"optimization": self.optimization.to_json()} if self.optimization else {}),
            "mode": self.mode,
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
    known = {
        "name",
        "actions",
        "learning",
        "constraints",
        "features",
        "failover",
        "experiment",
        "optimization",
        "mode",
        "version",
        "updated_at",
    }
    no_unknown(obj, known, "")
    _echoed(obj)
    if "name" in obj and obj["name"] != name:
        raise InvalidInput(
            f"name in the body ({obj['name']!r}) differs from the name in the path ({name!r})",
            field="name",
        )
    actions = _actions(obj.get("actions", []), limits)
    learning = parse_learning(obj.get("learning", {}), limits, defaults)
    ids = [a.id for a in actions]
    constraints = parse_constraints(obj.get("constraints"), ids, limits, default_floor(defaults))
    return Catalog(
        name=name,
        version=version,
        actions=actions,
        learning=learning,
        updated_at=now,
        constraints=constraints,
        features=parse_spec(obj["features"]) if "features" in obj else DEFAULT_SPEC,
        failover=parse_failover(obj.get("failover"), ids, limits),
        experiment=parse_experiment(
            obj.get("experiment"), ids, limits, defaults, learning.exploration.reward_range()
        ),
        mode=one_of(obj.get("mode", "online"), MODES, "mode"),
        optimization=parse_schedule(obj.get("optimization"), limits),
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


def _actions(body: object, limits: Limits) -> tuple[Action, ...]:
    """The stored actions; none (`[]`, or no `actions`) for a catalog whose decision
    requests send their own (engine.inline)."""
    if not isinstance(body, list):
        raise InvalidInput("actions must be an array", field="actions")
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
