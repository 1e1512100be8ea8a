"""The feature store's state and its features, as pure functions.

A `Profile` aggregates the behaviour events of one user (or one session of a user, or,
through `observe_product`, everyone's events about one product: its popularity). The
worker folds every event in with `observe`; serving reads a catalog's declared features
with `features(spec, user, session_id, now)` and `action_features(spec, stats, now)`, so
the values a decision uses are computed from the same state by the same code at any
time, and are logged with the decision (no skew between what is served and learned).
What a catalog may declare (the spec, its windows and aggregations) is engine.featurespec.

What a profile holds, bounded whatever the traffic:
- one `Cell` per (event type, dimension, value): counts and value sums over sliding
  windows (5 min, 1 h, 24 h, 7 d), lifetime totals and the time of the last event, at most
  `MAX_GROUPS` values per (type, dimension), the least recent evicted;
- the last `RECENT` product events; the cart; lifetime spend; device and channel;
- in a user's profile, the profiles of its `MAX_SESSIONS` most recent sessions: one key
  per user holds all there is about the user, so erasure deletes one key.

A sliding window is a two-bucket counter: buckets of the window's width, and the count
over (now - width, now] is the current bucket plus the previous bucket weighted by the part
of it still inside the window (exact when events are spread evenly within a bucket; O(1)
to update and to read).

May import: the standard library, msgspec, engine.behaviour, engine.errors,
engine.features and engine.featurespec.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

import msgspec

from engine.behaviour import BehaviourObserved
from engine.errors import InvalidInput
from engine.features import Features, Namespace
from engine.featurespec import ANY, MAX_LAST_N, NAMESPACES, WINDOWS, Aggregate

_WINDOW_INDEX = {name: i for i, name in enumerate(WINDOWS)}
MAX_GROUPS = 32  # values kept per (event type, dimension)
RECENT = MAX_LAST_N  # product events kept, for last_n
MAX_SESSIONS = 8  # recent sessions kept inside a user profile
MAX_CART = 100
MAX_SEEN = 256  # client event ids remembered per user: a retry within them counts once
MAX_PROFILE_BYTES = 900_000  # under Kafka's default 1 MB message and Faust's request size


class Cell(msgspec.Struct, array_like=True):
    """Counts and sums of one (type, dimension, value): lifetime and per window."""

    last_ts: float
    count: float = 0.0
    total: float = 0.0
    # per window in WINDOWS order, 5 float64 each: bucket index, current and previous
    # count, current and previous sum; packed, so a profile decodes without a float object
    # per number (much faster than nested lists: docs/decisions/hot-paths.md)
    windows: bytes = b""

    def slot(self, index: int) -> tuple[float, float, float, float, float]:
        if not self.windows:
            return (0.0, 0.0, 0.0, 0.0, 0.0)
        return _SLOT.unpack_from(self.windows, index * _SLOT.size)


_SLOT = struct.Struct("<5d")


class Recent(msgspec.Struct, array_like=True):
    ts: float
    kind: str
    product: str
    category: str | None
    brand: str | None
    price: float | None


class Profile(msgspec.Struct, kw_only=True):
    user_id: str
    session_id: str | None = None
    first_ts: float = 0.0
    last_ts: float = 0.0
    events: int = 0
    # "type|dimension" -> value -> cell (dimension "all" has the one value "")
    cells: dict[str, dict[str, Cell]] = msgspec.field(default_factory=dict)
    recent: list[Recent] = msgspec.field(default_factory=list)
    cart: dict[str, list[float]] = msgspec.field(default_factory=dict)  # id -> [qty, price]
    spend: float = 0.0
    purchases: int = 0
    price_sum: float = 0.0
    price_count: int = 0
    device: str | None = None
    channel: str | None = None
    # a user's recent sessions, oldest first, each an encoded Profile: a decision decodes
    # only the session it asks for
    sessions: dict[str, bytes] = msgspec.field(default_factory=dict)
    seen: list[str] = msgspec.field(default_factory=list)  # recent client event ids


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Profile)


def encode(profile: Profile) -> bytes:
    return _encoder.encode(profile)


def encode_bounded(profile: Profile) -> bytes:
    """`profile` encoded in at most MAX_PROFILE_BYTES (a Kafka message must fit), dropping
    its oldest sessions while it does not. The user's own aggregates alone stay below the
    bound whatever the input (tests/test_profiles.py computes the worst case)."""
    raw = encode(profile)
    while len(raw) > MAX_PROFILE_BYTES and profile.sessions:
        del profile.sessions[next(iter(profile.sessions))]
        raw = encode(profile)
    return raw


def decode(raw: bytes) -> Profile:
    return _decoder.decode(raw)


def session_of(user: Profile, session_id: str | None) -> Profile | None:
    """The profile of one of the user's recent sessions, if kept."""
    raw = user.sessions.get(session_id) if session_id is not None else None
    return decode(raw) if raw is not None else None


def key(user_id: str) -> bytes:
    """The feature store's table key of a user."""
    return user_id.encode()


# --- folding events in ----------------------------------------------------------------------


def duplicate(profile: Profile | None, event: BehaviourObserved) -> bool:
    """Whether `event` was already folded into `profile` (same client event id)."""
    return profile is not None and event.event_id is not None and event.event_id in profile.seen


def observe(profile: Profile | None, event: BehaviourObserved) -> Profile:
    """The user's profile after `event` (a new one when `profile` is None), its session's
    profile inside it updated too. Mutates and returns `profile`: the worker owns it
    between a table read and write."""
    latest = profile is None or event.ts >= profile.last_ts  # before this event counts
    user = _observe(profile or Profile(user_id=event.user_id, first_ts=event.ts), event)
    if event.event_id is not None:
        user.seen.append(event.event_id)
        del user.seen[:-MAX_SEEN]
    if event.session_id is not None:
        _observe_session(user, event, event.session_id, latest)
    return user


def _observe_session(user: Profile, event: BehaviourObserved, sid: str, latest: bool) -> None:
    """Fold `event` into its session inside `user`. Sessions are kept oldest first: the
    user's latest event makes its session the newest; a late event leaves its session
    where it was, or, for a session no longer kept, adds it as the oldest, so a late
    event never pushes out a session that was active after it."""
    session = session_of(user, sid)
    fresh = Profile(user_id=event.user_id, session_id=sid, first_ts=event.ts)
    updated = encode(_observe(session or fresh, event))
    if latest:
        user.sessions.pop(sid, None)
        user.sessions[sid] = updated
    elif sid in user.sessions:
        user.sessions[sid] = updated  # an existing key keeps its place
    else:
        user.sessions = {sid: updated, **user.sessions}
    while len(user.sessions) > MAX_SESSIONS:
        del user.sessions[next(iter(user.sessions))]


def observe_product(stats: Profile | None, event: BehaviourObserved) -> Profile:
    """A product's popularity after `event`, which must name the product: counts and value
    sums per event type over the windows, in a Profile whose `user_id` is the product id."""
    product = event.product
    if product is None:
        raise InvalidInput("a product's popularity counts only product events", field="product")
    p = stats or Profile(user_id=product.id, first_ts=event.ts)
    p.first_ts = min(p.first_ts, event.ts)
    p.last_ts = max(p.last_ts, event.ts)
    p.events += 1
    count_into(p.cells, f"{event.kind}|all", "", event.ts, _value(event))
    return p


def _observe(p: Profile, event: BehaviourObserved) -> Profile:
    p.first_ts = min(p.first_ts, event.ts)
    p.last_ts = max(p.last_ts, event.ts)
    p.events += 1
    if event.ts >= p.last_ts:  # the latest visit by time, not by arrival
        p.device = event.device or p.device
        p.channel = event.channel or p.channel
    value = _value(event)
    for dimension, group in _groups(event):
        count_into(p.cells, f"{event.kind}|{dimension}", group, event.ts, value)
    product = event.product
    if product is not None:
        if event.kind == "product_view" and product.price is not None:
            p.price_sum += product.price
            p.price_count += 1
        p.recent.append(
            Recent(event.ts, event.kind, product.id, product.category, product.brand, product.price)
        )
        p.recent.sort(key=lambda r: r.ts)
        del p.recent[:-RECENT]
        _update_cart(p, event)
    if event.kind == "purchase":
        p.spend += event.revenue
        p.purchases += 1
        p.cart.clear()
    return p


def _value(event: BehaviourObserved) -> float:
    if event.kind == "purchase":
        return event.revenue
    price = event.product.price if event.product else None
    return (price or 0.0) * event.quantity


def _groups(event: BehaviourObserved) -> list[tuple[str, str]]:
    out = [("all", "")]
    product = event.product
    if product is not None:
        out.append(("product", product.id))
        if product.category:
            out.append(("category", product.category))
        if product.brand:
            out.append(("brand", product.brand))
    return out


def count_into(
    cells: dict[str, dict[str, Cell]], kind: str, group: str, ts: float, value: float
) -> None:
    """Count one event of `value` at `ts` into the cell of `group` under `kind`
    ("type|dimension"), making room among at most MAX_GROUPS values."""
    groups = cells.setdefault(kind, {})
    cell = groups.get(group)
    if cell is None:
        if len(groups) >= MAX_GROUPS:
            del groups[min(groups, key=lambda g: groups[g].last_ts)]
        cell = groups[group] = Cell(last_ts=ts)
    cell.last_ts = max(cell.last_ts, ts)
    cell.count += 1
    cell.total += value
    slots = [list(cell.slot(i)) for i in range(len(WINDOWS))]
    for slot, width in zip(slots, WINDOWS.values(), strict=True):
        bucket = math.floor(ts / width)
        if bucket == slot[0]:
            slot[1] += 1
            slot[3] += value
        elif bucket == slot[0] + 1:
            slot[:] = [bucket, 1.0, slot[1], value, slot[3]]
        elif bucket > slot[0]:
            slot[:] = [bucket, 1.0, 0.0, value, 0.0]
        elif bucket == slot[0] - 1:  # a late event for the previous bucket
            slot[2] += 1
            slot[4] += value
    cell.windows = b"".join(_SLOT.pack(*slot) for slot in slots)


def _update_cart(p: Profile, event: BehaviourObserved) -> None:
    product = event.product
    if product is None:
        return
    if event.kind == "add_to_cart":
        line = p.cart.setdefault(product.id, [0.0, 0.0])
        line[0] += event.quantity
        line[1] = product.price if product.price is not None else line[1]
        if len(p.cart) > MAX_CART:
            del p.cart[next(iter(p.cart))]
    elif event.kind == "remove_from_cart" and product.id in p.cart:
        line = p.cart[product.id]
        line[0] -= event.quantity
        if line[0] <= 0:
            del p.cart[product.id]


# --- reading features -----------------------------------------------------------------------


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
