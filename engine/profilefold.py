"""Folding behaviour events into profiles, as pure transitions: `observe` (a user's
profile and its session's inside it), `observe_product` (a product's popularity) and
`duplicate` (a client retry already counted). The worker owns a profile between a table
read and write, so these mutate and return it.

May import: the standard library, engine.behaviour, engine.errors, engine.featurespec and
engine.profiles.
"""

from __future__ import annotations

import math

from engine.behaviour import BehaviourObserved
from engine.errors import InvalidInput
from engine.featurespec import WINDOWS
from engine.profiles import (
    MAX_CART,
    MAX_GROUPS,
    MAX_SEEN,
    MAX_SESSIONS,
    RECENT,
    SLOT,
    Cell,
    Profile,
    Recent,
    encode,
    session_of,
)


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
    cell.windows = b"".join(SLOT.pack(*slot) for slot in slots)


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
