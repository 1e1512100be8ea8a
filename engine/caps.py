"""Frequency caps: how often one user may be shown a set of actions, or a group of them.

A cap counts the exposures the caller passes (what serving processes keep per user,
api.serving.exposures), inside its window, and blocks its actions (a set cap) or the
group values (a group cap, by a metadata key) whose total reached the limit.
engine.constraints.apply removes them before the policy; `capped_by_slate` adds a
slate's earlier slots as exposures, so a cap holds for the whole answer.

May import: the standard library and engine.actions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from engine.actions import Action

# Frequency caps count per-user exposures that serving processes keep (api.serving.exposures):
# at most this many per action, for at most this long. A cap beyond them could never bite.
MAX_CAP_LIMIT = 256
MAX_CAP_WINDOW_SECONDS = 31 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Cap:
    name: str
    limit: int
    window_seconds: float
    actions: frozenset[str] = frozenset()
    group: str | None = None


def capped_by_slate(
    caps: Sequence[Cap],
    universe: Sequence[Action],
    now: float,
    user_exposures: Mapping[str, Sequence[float]] | None,
    shown: Sequence[Action],
) -> frozenset[str]:
    """The action ids the caps remove once `shown` (the earlier slots of one slate) count as
    exposures at `now`, beside the user's (none without a user: a slate is still one
    person's page, so its own slots count). `universe` as in engine.constraints.apply."""
    if not caps or not shown:
        return frozenset()
    seen: dict[str, Sequence[float]] = dict(user_exposures or {})
    for action in shown:
        seen[action.id] = [*seen.get(action.id, ()), now]
    out: set[str] = set()
    for cap, blocked in blocked_by(caps, universe, now, seen):
        if cap.group is None:
            out.update(str(aid) for aid in blocked)
        elif blocked:
            out.update(aid for aid, v in _values(universe, cap.group).items() if v in blocked)
    return frozenset(out)


def blocked_by(
    caps: Sequence[Cap],
    universe: Sequence[Action],
    now: float,
    exposures: Mapping[str, Sequence[float]],
) -> Iterator[tuple[Cap, frozenset[object]]]:
    """Per cap: the blocked action ids (set caps) or group values (group caps). Only what
    this user was shown is counted, never every action."""
    for cap in caps:
        since = now - cap.window_seconds
        if cap.group is None:
            if len(cap.actions) < len(exposures):
                shown = [exposures.get(aid, ()) for aid in cap.actions]
            else:
                shown = [ts for aid, ts in exposures.items() if aid in cap.actions]
            total = sum(_recent(ts, since) for ts in shown)
            yield cap, (frozenset(cap.actions) if total >= cap.limit else frozenset())
            continue
        values = _values(universe, cap.group)
        per_group: dict[object, int] = {}
        for aid, ts in exposures.items():
            value = values.get(aid)
            if value is not None and (n := _recent(ts, since)):
                per_group[value] = per_group.get(value, 0) + n
        yield cap, frozenset(v for v, n in per_group.items() if n >= cap.limit)


def _recent(timestamps: Sequence[float], since: float) -> int:
    """How many exposures count: those after `since` (later ones too, see caps)."""
    n = 0
    for t in timestamps:
        if t > since:
            n += 1
    return n


_VALUES: dict[tuple[int, str], tuple[Sequence[Action], dict[str, object]]] = {}


def _values(universe: Sequence[Action], key: str) -> dict[str, object]:
    """Action id -> its group value under `key` (actions without one are left out),
    cached per universe object (a catalog's actions tuple) and key."""
    cached = _VALUES.get((id(universe), key))
    if cached is not None and cached[0] is universe:
        return cached[1]
    if len(_VALUES) > 256:
        _VALUES.clear()
    values = {a.id: v for a in universe if (v := group_value(a, key)) is not None}
    _VALUES[(id(universe), key)] = (universe, values)
    return values


def group_value(action: Action, key: str) -> object:
    value = action.metadata.get(key)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    return None
