"""Actions a decision request sends with itself (`POST /v1/decide` `actions`).

They are the request's action universe instead of the catalog's stored ones; the catalog
still names everything else (learning, constraints, failover, experiment, mode). Each is
checked as a catalog action is (id syntax, features flattened as a context is, metadata
free JSON) within the inline limits (engine.limits): how many, the features and bytes of
each, and the bytes they add to the log, once per record (a slate logs one per slot).

An action seen before with the same id, features and metadata (compared as their JSON
bytes) is the same `Action` object, from a bounded cache: its VW action line, built
when the Action is, and VW's parsed example of it (policies.vw, keyed by id and line)
are reused, so repeated inline actions decide as fast as stored ones.

Each record of the decision carries them as used (`ActionUsed`), and `rebuilt` turns a
record's back into Actions for learning and evaluation, exactly as they were decided.

May import: msgspec, the standard library and engine.actions / catalog / errors /
features / limits / records / validate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from engine.actions import Action
from engine.catalog import Catalog
from engine.errors import InvalidInput, LimitExceeded
from engine.features import count, flatten
from engine.limits import Limits
from engine.records import ActionUsed
from engine.validate import ID_RE

MAX_CACHED = 8_192  # inline actions kept parsed per set of limits (a few KB each)
_encode = msgspec.json.Encoder().encode
# limits -> (id, features JSON, metadata JSON) -> (the action, as logged), least recent first
_cache: dict[Limits, dict[tuple[str, bytes, bytes], tuple[Action, ActionUsed]]] = {}


class InlineAction(Protocol):
    """What a request sends per action (api.requests.ActionRequest)."""

    @property
    def id(self) -> str: ...
    @property
    def features(self) -> dict[str, Any] | None: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Inline:
    """A request's actions, checked: as decided with, and as logged."""

    actions: tuple[Action, ...]
    used: list[ActionUsed]
    bytes: int  # their JSON bytes (ids, features, metadata), once


def parse_inline(
    items: Sequence[InlineAction], limits: Limits, records: int = 1, where: str = "actions"
) -> Inline:
    """The request's actions, in its order, within the inline limits; `records` is how
    many records will carry them (the slots asked for). Errors name the field."""
    if not items:
        raise InvalidInput(f"{where} must hold at least one action", field=where)
    if len(items) > limits.max_inline_actions:
        raise LimitExceeded(
            f"{where} has {len(items)} actions, more than the limit max_inline_actions of "
            f"{limits.max_inline_actions}",
            field=where,
        )
    cache = _cache.setdefault(limits, {})
    actions: list[Action] = []
    used: list[ActionUsed] = []
    seen: set[str] = set()
    total = 0
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        features = _encode(item.features) if item.features else b"{}"
        metadata = _encode(item.metadata) if item.metadata else b"{}"
        key = (item.id, features, metadata)
        hit = cache.pop(key, None)  # re-inserted: the most recently used last
        if hit is None:
            hit = _checked(item, at, len(features) + len(metadata), len(metadata), limits)
            if len(cache) >= MAX_CACHED:
                for old in list(cache)[: MAX_CACHED // 4]:
                    del cache[old]
        cache[key] = hit
        if item.id in seen:
            raise InvalidInput(f"{at}.id {item.id!r} appears twice", field=f"{at}.id")
        seen.add(item.id)
        total += len(item.id) + len(features) + len(metadata)
        actions.append(hit[0])
        used.append(hit[1])
    if total * records > limits.max_inline_bytes:
        per = f", logged with each of the {records} slots' records" if records > 1 else ""
        raise LimitExceeded(
            f"{where} is {total} bytes as JSON{per}: {total * records} bytes, more than the "
            f"limit max_inline_bytes of {limits.max_inline_bytes}",
            field=where,
        )
    return Inline(tuple(actions), used, total)


def _checked(
    item: InlineAction, at: str, size: int, metadata_size: int, limits: Limits
) -> tuple[Action, ActionUsed]:
    if not ID_RE.fullmatch(item.id):
        raise InvalidInput(
            f"{at}.id must be a string of 1-128 printable characters, got {item.id!r}",
            field=f"{at}.id",
        )
    size += len(item.id)
    if size > limits.max_action_bytes:
        raise LimitExceeded(
            f"{at} is {size} bytes as JSON (id, features, metadata), more than the limit "
            f"max_action_bytes of {limits.max_action_bytes}",
            field=at,
        )
    if metadata_size > limits.max_metadata_bytes:
        raise LimitExceeded(
            f"{at}.metadata is {metadata_size} bytes as JSON, more than the limit "
            f"max_metadata_bytes of {limits.max_metadata_bytes}",
            field=f"{at}.metadata",
        )
    features = flatten(item.features, limits, field=f"{at}.features")
    n = count(features)
    if n > limits.max_action_features:
        raise LimitExceeded(
            f"{at}.features has {n} features, more than the limit max_action_features of "
            f"{limits.max_action_features}",
            field=f"{at}.features",
        )
    metadata = dict(item.metadata or {})
    return Action(item.id, features, metadata), ActionUsed(item.id, features, metadata)


def with_inline(catalog: Catalog, actions: tuple[Action, ...]) -> Catalog:
    """`catalog` deciding over the request's actions: its settings, these actions."""
    return dataclasses.replace(catalog, actions=actions, index={}, inline=True)


def rebuilt(used: Sequence[ActionUsed]) -> dict[str, Action]:
    """A record's inline actions by id, as they were decided with."""
    return {a.id: Action(a.id, a.features, a.metadata) for a in used}


def actions_of(
    catalog: Catalog | None, used: Sequence[ActionUsed], ids: Sequence[str]
) -> list[Action] | None:
    """The actions `ids` name, from a record's inline actions when it has them, else
    from the catalog version it logged; None when one of them is in neither."""
    if used:
        known = rebuilt(used)
        return [known[a] for a in ids] if all(a in known for a in ids) else None
    if catalog is None or any(a not in catalog.index for a in ids):
        return None
    return [catalog.action(a) for a in ids]
