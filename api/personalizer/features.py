"""Personalizer's features (a list of JSON objects) as Loopwise namespaces.

Personalizer passed each object of `contextFeatures` (and of an action's or a slot's
`features`) to Vowpal Wabbit's JSON reader: a key whose value is an object is a namespace
of that name, a key with a plain value is a feature of the default namespace, deeper
objects nest, booleans are features with values 1/0, a string value is one-hot
(`name=value`), an array of numbers is a dense run of numeric features, and keys starting
with `_` are ignored (docs: concepts-features, "Namespaces"). The objects' namespaces are
merged into one set; a name given twice keeps the last value.

Here the same structure is built as engine.features does for a Loopwise context: the
default namespace is `context`, a deeper object's names are dotted (`size.width`), an
array of numbers becomes `name[0]`, `name[1]`, ..., and an array of strings becomes one
category per element (Personalizer refused those; Loopwise learns them). `null` is
skipped (Personalizer learned the string "null"). What comes out is a plain
`{namespace: {name: value}}` object that engine.features.flatten reads back unchanged; it
is validated and bounded here (names, numbers, counts, depth) and reaches VW only through
engine.vwformat, which escapes every byte, so no feature name or value can change the
structure of an example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import InvalidInput, LimitExceeded
from engine.features import Features, count, flatten, merge
from engine.limits import Limits


def namespaces(objects: Sequence[object] | None, limits: Limits, field: str) -> Features:
    """The namespaces of a Personalizer feature list; errors name `field[i].key`."""
    if objects is None:
        return {}
    if len(objects) > limits.max_features:
        raise LimitExceeded(
            f"{field} has {len(objects)} objects, more than the limit of {limits.max_features}",
            field=field,
        )
    parts: list[Features] = []
    for i, obj in enumerate(objects):
        where = f"{field}[{i}]"
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"{where} must be an object of features", field=where)
        parts.append(flatten(_prepared(obj, limits, where, 1), limits, field=where))
    out = merge(*parts)
    n = count(out)
    if n > limits.max_features:
        raise LimitExceeded(
            f"{field} has {n} features, more than the limit of {limits.max_features}", field=field
        )
    return out


def _prepared(obj: Mapping[Any, Any], limits: Limits, where: str, depth: int) -> dict[Any, Any]:
    """`obj` without `_` keys, its number arrays spread into indexed names."""
    if depth > limits.max_depth:
        raise LimitExceeded(
            f"{where} is nested deeper than the limit of {limits.max_depth} levels", field=where
        )
    out: dict[Any, Any] = {}
    for key, value in obj.items():
        if isinstance(key, str) and key.startswith("_"):
            continue  # Personalizer ignored them (VW's JSON reader keeps `_` keys for itself)
        if isinstance(value, Mapping):
            out[key] = _prepared(value, limits, f"{where}.{key}", depth + 1)
        elif isinstance(value, list) and value and _numbers(value):
            if len(value) > limits.max_features:
                raise LimitExceeded(
                    f"{where}.{key} has {len(value)} elements, more than the limit of "
                    f"{limits.max_features}",
                    field=f"{where}.{key}",
                )
            for i, item in enumerate(value):
                out[f"{key}[{i}]"] = item
        else:
            out[key] = value
    return out


def _numbers(values: list[object]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
