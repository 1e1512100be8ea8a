"""Reading a catalog's declared features from profiles at time `now`: `features` (a user
and its session) and `action_features` (each action's product popularity, quantized so an
action's cached example changes only when its popularity moves by a step).

May import: the standard library, engine.features, engine.featurespec and engine.profiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engine.features import Features, Namespace
from engine.featurespec import ANY, NAMESPACES, WINDOWS, Aggregate
from engine.profiles import Cell, Profile, session_of

_WINDOW_INDEX = {name: i for i, name in enumerate(WINDOWS)}


def features(
    spec: Sequence[Aggregate], user: Profile | None, session_id: str | None, now: float
) -> Features:
    """The declared features of a user and (when known) its session at time `now`."""
    if user is None:
        return {}
    session = session_of(user, session_id) if any(a.key == "session" for a in spec) else None
    profiles = {"user": user, "session": session}
    out: Features = {}
    for agg in spec:
        profile = profiles.get(agg.key)  # None for "action": see action_features
        if profile is None:
            continue
        values = out.setdefault(NAMESPACES[agg.key], {})
        _read(agg, profile, now, values)
    return {ns: values for ns, values in out.items() if values}


def _cells(p: Profile, by: str, event: str | None) -> list[tuple[str, Cell]]:
    """(value of `by`, cell) of `event` (any type: one cell per type and value)."""
    if event != ANY:
        return list(p.cells.get(f"{event}|{by}", {}).items())
    suffix = f"|{by}"
    return [
        item for kind, groups in p.cells.items() if kind.endswith(suffix) for item in groups.items()
    ]


def action_features(
    spec: Sequence[Aggregate], stats: Mapping[str, Profile | None], now: float
) -> dict[str, Features]:
    """Per action id, the declared `action` aggregates of its product's popularity `stats`,
    in the namespace `popularity`, each value rounded to a step of 2^(1/4) (~19%): an
    action's features (and its parsed, cached VW example) change only when its
    popularity moves by a step, not with every view."""
    aggregates = [a for a in spec if a.key == "action"]
    out: dict[str, Features] = {}
    for action_id, p in stats.items():
        if p is None or not aggregates:
            continue
        values: Namespace = {}
        for agg in aggregates:
            _read(agg, p, now, values)
        if values:
            out[action_id] = {NAMESPACES["action"]: {k: quantize(v) for k, v in values.items()}}
    return out


def quantize(value: float | str) -> float | str:
    """The nearest power of 2^(1/4) of a positive number (0 and strings unchanged)."""
    if isinstance(value, str) or value <= 0:
        return value
    return float(2.0 ** (round(4 * math.log2(value)) / 4))


def _read(agg: Aggregate, p: Profile, now: float, out: Namespace) -> None:
    if agg.aggregation == "scalar":
        value = _scalar(str(agg.scalar), p, now)
        if value is not None and value != 0.0:
            out[agg.name] = value
        return
    if agg.aggregation == "last_n":
        for value in _last(p, agg):
            out[f"{agg.name}={value}"] = 1.0
        return
    cells = _cells(p, agg.by, agg.event)
    if agg.aggregation == "recency":
        latest: dict[str, float] = {}
        for group, cell in cells:
            latest[group] = max(cell.last_ts, latest.get(group, cell.last_ts))
        half_life = WINDOWS[agg.window] if agg.window else 3600.0
        for group, ts in latest.items():
            out[_name(agg, group)] = float(2.0 ** (-max(0.0, now - ts) / half_life))
        return
    counts, totals = _sums(cells, agg.window, now)
    base = _sums(_cells(p, agg.by, agg.per), agg.window, now)[0] if agg.per else {}
    for group, count in counts.items():
        if agg.aggregation == "count":
            value = count
        elif agg.aggregation == "sum":
            value = totals[group]
        elif agg.aggregation == "mean":
            value = totals[group] / count if count > 0 else 0.0
        else:  # rate
            value = count / base[group] if base.get(group, 0.0) > 0 else 0.0
        if value != 0.0:
            out[_name(agg, group)] = value


def _name(agg: Aggregate, group: str) -> str:
    """`name`, or `name.value` for an aggregate by category, brand or product."""
    return agg.name if agg.by == "all" else f"{agg.name}.{group}"


def _sums(
    cells: list[tuple[str, Cell]], window: str | None, now: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Windowed counts and value sums per group."""
    counts: dict[str, float] = {}
    totals: dict[str, float] = {}
    for group, cell in cells:
        c, t = windowed(cell, window, now)
        counts[group] = counts.get(group, 0.0) + c
        totals[group] = totals.get(group, 0.0) + t
    return counts, totals


def windowed(cell: Cell, window: str | None, now: float) -> tuple[float, float]:
    if window is None:
        return cell.count, cell.total
    index = _WINDOW_INDEX[window]
    width = WINDOWS[window]
    bucket, current, previous, current_sum, previous_sum = cell.slot(index)
    now_bucket = math.floor(now / width)
    inside = 1.0 - (now - now_bucket * width) / width  # share of the previous bucket
    if bucket > now_bucket:  # events stamped ahead of `now` (client clocks run ahead)
        return current + previous, current_sum + previous_sum
    if bucket == now_bucket:
        return current + previous * inside, current_sum + previous_sum * inside
    if bucket == now_bucket - 1:
        return current * inside, current_sum * inside
    return 0.0, 0.0


def _last(p: Profile, agg: Aggregate) -> list[str]:
    out: list[str] = []
    for r in reversed(p.recent):
        if agg.event != ANY and r.kind != agg.event:
            continue
        value = {"product": r.product, "category": r.category, "brand": r.brand}.get(agg.by)
        if value is not None and value not in out:
            out.append(value)
            if len(out) == agg.n:
                break
    return out


def _scalar(name: str, p: Profile, now: float) -> float | str | None:
    if name == "depth":
        return float(p.events)
    if name == "age":
        return max(0.0, now - p.first_ts)
    if name == "cart_value":
        return sum(q * price for q, price in p.cart.values())
    if name == "cart_items":
        return sum(q for q, _ in p.cart.values())
    if name == "lifetime_spend":
        return p.spend
    if name == "purchases":
        return float(p.purchases)
    if name == "price_affinity":
        return p.price_sum / p.price_count if p.price_count else None
    if name == "device":
        return p.device
    return p.channel
