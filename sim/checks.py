"""The argument checks the simulated storefronts share: each refuses with `InvalidInput`
naming the field, in the words the rest of the product uses ("must be an integer in ...")."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import InvalidInput


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}", field="seed")


def check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{name} must be an integer in [{low}, {high}], got {value!r}", field=name
        )


def check_range(name: str, value: object, high: int) -> None:
    pair = value if isinstance(value, tuple) and len(value) == 2 else None
    low_high = [v for v in pair or () if isinstance(v, int) and not isinstance(v, bool)]
    if len(low_high) != 2 or not 1 <= low_high[0] <= low_high[1] <= high:
        raise InvalidInput(
            f"{name} must be a (low, high) pair of integers with 1 <= low <= high <= {high}, "
            f"got {value!r}",
            field=name,
        )


def check_unique(what: str, values: Sequence[str]) -> None:
    if not values:
        raise InvalidInput(f"an environment needs at least one {what}, got none", field=what)
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidInput(f"{what} {value!r} appears more than once", field=what)
        seen.add(value)
