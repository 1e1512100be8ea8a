"""Behaviour events from the storefront (views, searches, carts, purchases), validated.

A behaviour event says what one visitor did: its `type`, the `user_id` (required: the
feature store is keyed by it), an optional `session_id`, the time `ts` (seconds since the
epoch, default now), the `product` it concerned (id, category, brand, price) and, by type,
the search `query`, the `quantity` and the purchase `revenue`, plus the `device` and
`channel` it came from. The API types the JSON (api.requests); `observed` and `product`
check the values, and every error names its field.
"""

from __future__ import annotations

import msgspec

from engine.errors import InvalidInput
from engine.features import number
from engine.limits import Limits
from engine.validate import one_of, optional_id, required_id

TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "purchase")
PRODUCT_TYPES = frozenset({"product_view", "add_to_cart", "remove_from_cart"})
MAX_TEXT = 256  # query, category, brand, device, channel
MAX_QUANTITY = 10_000.0
FUTURE_SLACK_SECONDS = 300.0  # a client clock may run this far ahead
MAX_AGE_SECONDS = 7 * 24 * 3600.0  # older events fall outside every window


class Product(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    category: str | None = None
    brand: str | None = None
    price: float | None = None


class BehaviourObserved(msgspec.Struct, tag="behaviour", kw_only=True, frozen=True):
    """One thing a visitor did; the feature store aggregates these per user and session."""

    kind: str  # one of TYPES (the JSON field "type"; records use "type" as their tag)
    user_id: str
    ts: float
    session_id: str | None = None
    product: Product | None = None
    query: str | None = None
    quantity: float = 1.0
    revenue: float = 0.0
    device: str | None = None
    channel: str | None = None
    event_id: str | None = None  # the client's id: a retried event counts once


class UserErased(msgspec.Struct, tag="erase", kw_only=True, frozen=True):
    """Forget everything stored about a user (right to erasure)."""

    user_id: str
    ts: float


def observed(
    kind: str,
    user_id: str,
    *,
    limits: Limits,
    where: str,
    now: float,
    session_id: str | None = None,
    ts: float | None = None,
    product: Product | None = None,
    query: str | None = None,
    quantity: float | None = None,
    revenue: float | None = None,
    device: str | None = None,
    channel: str | None = None,
    event_id: str | None = None,
) -> BehaviourObserved:
    """One behaviour event from typed values (None: not given), checked; `where` is the
    path prefix, dot included. The product is checked by `product` first."""
    one_of(kind, TYPES, f"{where}type")
    user = required_id(user_id, f"{where}user_id")
    if kind in PRODUCT_TYPES and product is None:
        raise InvalidInput(f"{where}product is required for {kind}", field=f"{where}product")
    text = _text(query, f"{where}query")
    if kind == "search" and text is None:
        raise InvalidInput(f"{where}query is required for search", field=f"{where}query")
    return BehaviourObserved(
        kind=kind,
        user_id=user,
        session_id=optional_id(session_id, f"{where}session_id"),
        ts=_ts(ts, limits, f"{where}ts", now),
        product=product,
        query=text,
        quantity=_quantity(quantity, limits, f"{where}quantity"),
        revenue=_revenue(revenue, kind, limits, f"{where}revenue"),
        device=_text(device, f"{where}device"),
        channel=_text(channel, f"{where}channel"),
        event_id=optional_id(event_id, f"{where}event_id"),
    )


def product(
    product_id: str,
    limits: Limits,
    where: str,
    category: str | None = None,
    brand: str | None = None,
    price: float | None = None,
) -> Product:
    """The product an event names, checked; `where` is its path (`events[0].product`)."""
    checked = required_id(product_id, f"{where}.id")
    amount = None if price is None else number(price, limits, f"{where}.price")
    if amount is not None and amount < 0:
        raise InvalidInput(f"{where}.price must be >= 0, got {amount!r}", field=f"{where}.price")
    return Product(
        id=checked,
        category=_text(category, f"{where}.category"),
        brand=_text(brand, f"{where}.brand"),
        price=amount,
    )


def _text(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_TEXT:
        raise InvalidInput(f"{where} must be a string of 1-{MAX_TEXT} characters", field=where)
    return value


def _ts(value: float | None, limits: Limits, where: str, now: float) -> float:
    if value is None:
        return now
    ts = number(value, limits, where)
    if not now - MAX_AGE_SECONDS <= ts <= now + FUTURE_SLACK_SECONDS:
        raise InvalidInput(
            f"{where} must be within the last 7 days and at most {FUTURE_SLACK_SECONDS:g} s "
            f"ahead of the server clock ({now:.3f}), got {ts!r}",
            field=where,
        )
    return ts


def _quantity(value: float | None, limits: Limits, where: str) -> float:
    if value is None:
        return 1.0
    quantity = number(value, limits, where)
    if not 0 < quantity <= MAX_QUANTITY:
        raise InvalidInput(
            f"{where} must be in (0, {MAX_QUANTITY:g}], got {quantity!r}", field=where
        )
    return quantity


def _revenue(value: float | None, kind: str, limits: Limits, where: str) -> float:
    if value is None:
        return 0.0
    if kind != "purchase":
        raise InvalidInput(f"{where} is only for purchase events, not {kind}", field=where)
    revenue = number(value, limits, where)
    if revenue < 0:
        raise InvalidInput(f"{where} must be >= 0, got {revenue!r}", field=where)
    return revenue
