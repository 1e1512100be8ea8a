"""Bounds on what a request may carry. One frozen value, validated once at the edge.

Each field is set from the environment as LOOPWISE_LIMIT_<FIELD> (streams.settings). The
`max_body_*` bounds hold for every decoded body, JSON or YAML, whatever the route
(api.bodies); `max_depth` bounds the nesting of features; the metadata bounds are the
bytes of an action's `metadata` as compact JSON, per action and summed over a catalog.
The `max_inline_*` and `max_action_*` bounds hold for the actions a decision request sends
with itself (engine.inline): how many, the features of each, the bytes of each, and the
bytes all of them add to the decisions log (once per record: per slot of a slate).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 1_048_576
    max_actions: int = 1_000
    max_features: int = 5_000
    max_depth: int = 4
    max_name_chars: int = 256
    max_string_chars: int = 1_024
    max_abs_number: float = 1e12
    max_batch: int = 1_000
    max_slots: int = 20
    max_body_depth: int = 32
    max_body_nodes: int = 100_000
    max_metadata_bytes: int = 4_096
    max_catalog_metadata_bytes: int = 1_048_576
    max_inline_actions: int = 200
    max_action_features: int = 256
    max_action_bytes: int = 8_192
    max_inline_bytes: int = 262_144

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value <= 0:
                raise InvalidInput(f"limit {name} must be > 0, got {value!r}", field=name)


DEFAULT_LIMITS = Limits()
# What a stored catalog is read back with when it was accepted under wider limits than
# today's: it stays readable, and only new versions must meet the configured ones.
UNBOUNDED = Limits(*(2**62 for _ in Limits.__slots__))
