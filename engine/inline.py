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

MAX_CACHED = 8_192  # inline actions kept checked per set of limits (a few KB each)
MAX_LISTS = 256  # whole lists of them (a storefront often sends the same list again)
_encode = msgspec.json.Encoder().encode


@dataclasses.dataclass(frozen=True, slots=True)
class Inline:
    """A request's actions, checked: as decided with, and as logged."""

    actions: tuple[Action, ...]
    used: list[ActionUsed]
    size: int  # their bytes as JSON (ids, features, metadata), once


@dataclasses.dataclass
class _Cache:
    """Per set of limits, least recently used first: each action's JSON -> the action
    and its log form; a whole list's JSON -> the list."""

    actions: dict[bytes, tuple[Action, ActionUsed]] = dataclasses.field(default_factory=dict)
    lists: dict[bytes, Inline] = dataclasses.field(default_factory=dict)


_caches: dict[Limits, _Cache] = {}


class InlineAction(Protocol):
    """What a request sends per action (api.requests.ActionRequest, a msgspec Struct)."""

    @property
    def id(self) -> str: ...
    @property
    def features(self) -> dict[str, Any] | None: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...


def parse_inline(
    items: Sequence[InlineAction],
    limits: Limits,
    records: int = 1,
    keys: list[bytes] | None = None,
    where: str = "actions",
) -> Inline:
    """The request's actions, in its order, within the inline limits; `records` is how
    many records will carry them (the slots asked for), `keys` each one's JSON (computed
    when not given). Errors name the field."""
    if not items:
        raise InvalidInput(f"{where} must hold at least one action", field=where)
    if len(items) > limits.max_inline_actions:
        raise LimitExceeded(
            f"{where} has {len(items)} actions, more than the limit max_inline_actions of "
            f"{limits.max_inline_actions}",
            field=where,
        )
    cache = _caches.get(limits) or _caches.setdefault(limits, _Cache())
    if keys is None:
        keys = [_encode(item) for item in items]  # each action's JSON: its identity here
    whole = b",".join(keys)
    found = cache.lists.pop(whole, None)
    if found is None:
        found = _parsed(items, keys, cache.actions, limits, where)
        _bounded(cache.lists, MAX_LISTS)
    cache.lists[whole] = found
    if found.size * records > limits.max_inline_bytes:
        per = f", logged with each of the {records} slots' records" if records > 1 else ""
        raise LimitExceeded(
            f"{where} is {found.size} bytes as JSON{per}: {found.size * records} bytes, more "
            f"than the limit max_inline_bytes of {limits.max_inline_bytes}",
            field=where,
        )
    return found


def _parsed(
    items: Sequence[InlineAction],
    keys: list[bytes],
    cache: dict[bytes, tuple[Action, ActionUsed]],
    limits: Limits,
    where: str,
) -> Inline:
    actions: list[Action] = []
    used: list[ActionUsed] = []
    seen: set[str] = set()
    for i, (item, key) in enumerate(zip(items, keys, strict=True)):
        hit = cache.pop(key, None)  # re-inserted: the most recently used last
        if hit is None:
            hit = _checked(item, f"{where}[{i}]", len(key), limits)
            _bounded(cache, MAX_CACHED)
        cache[key] = hit
        if item.id in seen:
            raise InvalidInput(
                f"{where}[{i}].id {item.id!r} appears twice", field=f"{where}[{i}].id"
            )
        seen.add(item.id)
        actions.append(hit[0])
        used.append(hit[1])
    return Inline(tuple(actions), used, sum(map(len, keys)))


def _bounded(cache: dict[bytes, Any], most: int) -> None:
    """Room for one more: drop the least recently used quarter when full."""
    if len(cache) >= most:
        for old in list(cache)[: most // 4]:
            del cache[old]


def _checked(item: InlineAction, at: str, size: int, limits: Limits) -> tuple[Action, ActionUsed]:
    if not ID_RE.fullmatch(item.id):
        raise InvalidInput(
            f"{at}.id must be a string of 1-128 printable characters, got {item.id!r}",
            field=f"{at}.id",
        )
    if size > limits.max_action_bytes:
        raise LimitExceeded(
            f"{at} is {size} bytes as JSON, more than the limit max_action_bytes of "
            f"{limits.max_action_bytes}",
            field=at,
        )
    metadata_size = len(_encode(item.metadata)) if item.metadata else 0
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
    """A record's inline actions by id, as they were decided with (their VW lines built
    only if read: learning reads the chosen action's alone, policies.vw.CHOSEN_ONLY)."""
    return {a.id: Action(a.id, a.features, a.metadata, None) for a in used}


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
