"""Actions: what a catalog offers, one id with its features and metadata.

Every stage reads them (constraints, rules, the policy, sampling's callers), so they stand
alone, below the catalog: an action's VW action line is built once, when the action is,
and cached on it (engine.vwformat; a policy that is not VW ignores it).

May import: engine.features and engine.vwformat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine import vwformat
from engine.features import Features, merge


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    features: Features
    metadata: Mapping[str, object] = field(default_factory=dict)
    # built with the action; None: built where it is needed (policies.vw.action_body), for
    # an action made once, to learn one example, whose line may never be read
    vw_body: str | None = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.vw_body == "":
            object.__setattr__(self, "vw_body", vwformat.action_body(self.features, self.id))


def with_features(action: Action, extra: Features | None) -> Action:
    """`action` with `extra` features joined (they win a clash), as decided and learned."""
    if not extra:
        return action
    lazy = None if action.vw_body is None else ""
    return Action(action.id, merge(action.features, extra), action.metadata, lazy)
