"""Bounds on what a request may carry. One frozen value, validated once at the edge."""

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

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value <= 0:
                raise InvalidInput(f"limit {name} must be > 0, got {value!r}", field=name)


DEFAULT_LIMITS = Limits()
