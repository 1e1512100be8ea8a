"""Features: validated, flattened `namespace -> name -> value` maps.

A value is either numeric (`float`, finite, bounded) or categorical (`str`). JSON from a
request is flattened: top-level scalars land in the namespace `context`, a nested object
becomes its own namespace, deeper objects are flattened with dotted names, lists of
strings become one categorical feature per element (`tags=sale`), booleans become 1/0,
and `null` is skipped. Nothing here knows VW; `engine.vwformat` encodes the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

from engine.errors import InvalidInput, LimitExceeded
from engine.limits import Limits

FeatureValue: TypeAlias = float | str
Namespace: TypeAlias = dict[str, FeatureValue]
Features: TypeAlias = dict[str, Namespace]

DEFAULT_NAMESPACE = "context"


def flatten(obj: object, limits: Limits, *, field: str = "context") -> Features:
    """Validate a JSON object and flatten it into namespaces; errors name the field."""
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise InvalidInput(f"{field} must be an object, got {_kind(obj)}", field=field)
    out: Features = {}
    for key, value in obj.items():
        name = _name(key, limits, f"{field}.{key}")
        if isinstance(value, Mapping):
            namespace = out.setdefault(name, {})
            _flatten_into(namespace, "", value, limits, f"{field}.{key}", depth=2)
        else:
            namespace = out.setdefault(DEFAULT_NAMESPACE, {})
            _put(namespace, name, value, limits, f"{field}.{key}")
    _check_count(out, limits, field)
    return {ns: values for ns, values in out.items() if values}


def count(features: Features) -> int:
    return sum(len(values) for values in features.values())


def merge(*parts: Features) -> Features:
    """Later parts win per (namespace, name)."""
    out: Features = {}
    for part in parts:
        for ns, values in part.items():
            out.setdefault(ns, {}).update(values)
    return out


def _flatten_into(
    namespace: Namespace,
    prefix: str,
    obj: Mapping[object, object],
    limits: Limits,
    field: str,
    depth: int,
) -> None:
    if depth > limits.max_depth:
        raise LimitExceeded(
            f"{field} is nested deeper than the limit of {limits.max_depth} levels", field=field
        )
    most, longest, chars = limits.max_abs_number, limits.max_name_chars, limits.max_string_chars
    for key, value in obj.items():
        # The common case (a plain name with a float within bounds or a short string) is
        # stored here directly; the field path of an error message is only built for the
        # rest. At 1,000 features this loop is most of a wide decision's flattening.
        if type(key) is str and 0 < len(key) <= longest:
            if type(value) is float and -most <= value <= most:  # False for NaN and inf
                namespace[prefix + key] = value
                continue
            if type(value) is str and len(value) <= chars:
                namespace[prefix + key] = value
                continue
        name = _name(key, limits, f"{field}.{key}")
        full = f"{prefix}{name}"
        if isinstance(value, Mapping):
            _flatten_into(namespace, f"{full}.", value, limits, f"{field}.{key}", depth + 1)
        else:
            _put(namespace, full, value, limits, f"{field}.{key}")


def _put(namespace: Namespace, name: str, value: object, limits: Limits, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        namespace[name] = 1.0 if value else 0.0
    elif isinstance(value, int | float):
        namespace[name] = number(value, limits, field)
    elif isinstance(value, str):
        namespace[name] = _string(value, limits, field)
    elif isinstance(value, list):
        if len(value) > limits.max_features:
            raise LimitExceeded(
                f"{field} has {len(value)} elements, more than the limit of {limits.max_features}",
                field=field,
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidInput(
                    f"{field}[{i}] must be a string (lists hold categories), got {_kind(item)}",
                    field=f"{field}[{i}]",
                )
            namespace[f"{name}={_string(item, limits, f'{field}[{i}]')}"] = 1.0
    else:
        raise InvalidInput(f"{field} has unsupported type {_kind(value)}", field=field)


def number(value: int | float, limits: Limits, field: str) -> float:
    try:
        result = float(value)
    except OverflowError:  # a JSON integer beyond any float (JSON has no integer bound)
        raise LimitExceeded(
            f"{field} is beyond the limit of +/-{limits.max_abs_number:g}", field=field
        ) from None
    if not math.isfinite(result):
        raise InvalidInput(f"{field} must be a finite number, got {value!r}", field=field)
    if abs(result) > limits.max_abs_number:
        raise LimitExceeded(
            f"{field} is {value!r}, beyond the limit of +/-{limits.max_abs_number:g}", field=field
        )
    return result


def _name(key: object, limits: Limits, field: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"{field}: feature names must be non-empty strings", field=field)
    if len(key) > limits.max_name_chars:
        raise LimitExceeded(
            f"{field}: name has {len(key)} characters, more than the limit of "
            f"{limits.max_name_chars}",
            field=field,
        )
    return key


def _string(value: str, limits: Limits, field: str) -> str:
    if len(value) > limits.max_string_chars:
        raise LimitExceeded(
            f"{field} has {len(value)} characters, more than the limit of "
            f"{limits.max_string_chars}",
            field=field,
        )
    return value


def _check_count(features: Features, limits: Limits, field: str) -> None:
    n = count(features)
    if n > limits.max_features:
        raise LimitExceeded(
            f"{field} has {n} features, more than the limit of {limits.max_features}", field=field
        )


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
