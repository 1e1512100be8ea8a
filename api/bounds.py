"""Bounding a decoded body, whatever its format: nesting depth (`Limits.max_body_depth`),
values (`max_body_nodes`), every number finite and within +/-`max_abs_number`, only JSON
types. `check` is one fast walk; on the way to an error a second walk names the path of
the first value that breaks a bound (`items[3].price`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from engine.errors import InvalidInput, LimitExceeded
from engine.limits import Limits

_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def check(value: object, limits: Limits) -> int:
    """Bound a decoded value; the number of keys of all its objects. Errors name the path."""
    most, deepest = limits.max_abs_number, limits.max_body_depth
    nodes, keys = 1, 0
    stack: list[tuple[dict[str, object] | list[object], int]] = []
    if type(value) is dict or type(value) is list:
        stack.append((value, 1))
    elif type(value) not in _JSON_TYPES:
        _refuse(value, limits)
    while stack:
        container, depth = stack.pop()
        nodes += len(container)
        items: Iterable[Any] = container
        if type(container) is dict:
            keys += len(container)
            items = container.values()
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                if depth >= deepest:
                    _refuse(value, limits)
                stack.append((item, depth + 1))
            elif (kind is float or kind is int) and not -most <= item <= most:
                _refuse(value, limits)  # NaN fails the comparison too
            elif kind not in _JSON_TYPES:
                _refuse(value, limits)
    if nodes > limits.max_body_nodes:
        raise LimitExceeded(
            f"body has {nodes} values, more than the limit max_body_nodes of "
            f"{limits.max_body_nodes}",
            field="body",
        )
    return keys


def _refuse(value: object, limits: Limits) -> NoReturn:
    """Raise the error `check` found, naming the path of the first value that breaks a
    bound: a second, slower walk, taken only on the way to an error."""
    _explain(value, limits, "", 1)
    raise InvalidInput("body breaks a bound of its limits", field="body")  # pragma: no cover


def _explain(value: object, limits: Limits, path: str, depth: int) -> None:
    where = path or "body"
    if isinstance(value, dict | list):
        if depth > limits.max_body_depth:
            raise LimitExceeded(
                f"{where} is nested deeper than the limit max_body_depth of "
                f"{limits.max_body_depth} levels",
                field=where,
            )
        for inner, item in children(value, path):
            _explain(item, limits, inner, depth + 1)
    elif isinstance(value, float):
        _float(value, limits, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -limits.max_abs_number <= value <= limits.max_abs_number:
            raise LimitExceeded(
                f"{where} is an integer of {_digits(value)} digits, beyond the limit "
                f"max_abs_number of +/-{limits.max_abs_number:g}",
                field=where,
            )
    elif not isinstance(value, str | bool) and value is not None:
        raise InvalidInput(
            f"{where} is of type {type(value).__name__}, which JSON has not (quote a date "
            "or a tagged value to send a string)",
            field=where,
        )


def _float(value: float, limits: Limits, where: str) -> None:
    if not math.isfinite(value):
        raise InvalidInput(f"{where} must be a finite number, got {value!r}", field=where)
    if abs(value) > limits.max_abs_number:
        raise LimitExceeded(
            f"{where} is {value:g}, beyond the limit max_abs_number of "
            f"+/-{limits.max_abs_number:g}",
            field=where,
        )


def _digits(value: int) -> int:
    return int(abs(value).bit_length() * math.log10(2)) + 1


def children(value: dict[str, object] | list[object], path: str) -> Iterator[tuple[str, object]]:
    """(path, value) of each item of a container below `path`."""
    if isinstance(value, list):
        return ((f"{path}[{i}]", item) for i, item in enumerate(value))
    return ((join(path, str(key)), item) for key, item in value.items())


def join(path: str, key: str) -> str:
    name = key or '""'  # an empty key is named by its quotes
    return f"{path}.{name}" if path else name
