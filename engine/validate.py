"""Small validators for decoded JSON/YAML; every error names its field path."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from typing import TypeVar

from engine.errors import InvalidInput
from engine.features import number
from engine.limits import Limits

T = TypeVar("T")
ID_RE = re.compile(r"[^\x00-\x1f\x7f]{1,128}")  # ids: 1-128 printable characters


class AnyId:
    """The action ids a catalog that stores no actions may name (its requests send their
    own, engine.inline): any well-formed id."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and ID_RE.fullmatch(value) is not None


ANY_ID = AnyId()


def known_ids(action_ids: Collection[str]) -> Container[str]:
    """The action ids a catalog's settings may name: those of its stored actions, or any
    well-formed id when it stores none."""
    return frozenset(action_ids) if action_ids else ANY_ID


def optional_id(value: object, where: str) -> str | None:
    """An id (1-128 printable characters), or None when absent; errors name `where`."""
    if value is None:
        return None
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidInput(f"{where} must be a string of 1-128 printable characters", field=where)
    return value


def required_id(value: object, where: str) -> str:
    """An id that must be there."""
    found = optional_id(value, where)
    if found is None:
        raise InvalidInput(f"{where} is required", field=where)
    return found


def one_of(value: object, options: Sequence[str], where: str) -> str:
    if not isinstance(value, str) or value not in options:
        raise InvalidInput(
            f"{where} must be one of {', '.join(options)}, got {value!r}", field=where
        )
    return value


def as_object(body: object, where: str) -> dict[str, object]:
    if not isinstance(body, Mapping):
        raise InvalidInput(f"{where} must be an object", field=where)
    return {str(k): v for k, v in body.items()}


def no_unknown(obj: Mapping[str, object], known: Collection[str], prefix: str) -> None:
    """Refuse keys outside `known`; `prefix` is the path before the key, dot included."""
    for key in obj:
        if key not in known:
            path = prefix + (key or '""')  # an empty key is named by its quotes
            raise InvalidInput(
                f"{path} is not a known field; expected one of {', '.join(sorted(known))}",
                field=path,
            )


def as_number(value: object, limits: Limits, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number, got {value!r}", field=where)
    return number(value, limits, where)


def nested(parse: Callable[[], T], where: str, strip: str = "", insert: str = "") -> T:
    """Run a parser of a nested object with its field paths placed under `where`: a
    path's leading `strip` is replaced by `insert` (`failover.priority[0]` under
    `candidates[1]` with strip "failover." reads `candidates[1].priority[0]`)."""
    try:
        return parse()
    except InvalidInput as exc:
        field = exc.field or ""
        inner = insert + (field[len(strip) :] if strip and field.startswith(strip) else field)
        path = f"{where}.{inner}" if inner else where
        detail = exc.detail.replace(field, path, 1) if field else exc.detail
        raise type(exc)(detail, field=path) from exc
