"""Behaviour events from the storefront (views, searches, carts, purchases), validated.

A behaviour event says what one visitor did: its `type`, the `user_id` (required: the
feature store is keyed by it), an optional `session_id`, the time `ts` (seconds since the
epoch, default now), the `product` it concerned (id, category, brand, price) and, by type,
the search `query`, the `quantity` and the purchase `revenue`, plus the `device` and
`channel` it came from. Everything is checked here; errors name the field.
"""

from __future__ import annotations

import msgspec

from engine.errors import InvalidInput
from engine.limits import Limits
from engine.validate import as_number, as_object, no_unknown, optional_id

TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "purchase")
PRODUCT_TYPES = frozenset({"product_view", "add_to_cart", "remove_from_cart"})
FIELDS = frozenset(
    {"type", "event_id", "user_id", "session_id", "ts", "product", "query", "quantity"}
    | {"revenue", "device", "channel"}
)
PRODUCT_FIELDS = frozenset({"id", "category", "brand", "price"})
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


def parse(item: object, limits: Limits, where: str, now: float) -> BehaviourObserved:
    """One behaviour event from JSON; `where` is the path prefix, dot included."""
    obj = as_object(item, where.rstrip(".") or "body")
    no_unknown(obj, FIELDS, where)
    kind = obj.get("type")
    if kind not in TYPES:
        raise InvalidInput(
            f"{where}type must be one of {', '.join(TYPES)}, got {kind!r}", field=f"{where}type"
        )
    user_id = optional_id(obj.get("user_id"), f"{where}user_id")
    if user_id is None:
        raise InvalidInput(f"{where}user_id is required", field=f"{where}user_id")
    product = _product(obj.get("product"), limits, f"{where}product")
    if kind in PRODUCT_TYPES and product is None:
        raise InvalidInput(f"{where}product is required for {kind}", field=f"{where}product")
    query = _text(obj.get("query"), f"{where}query")
    if kind == "search" and query is None:
        raise InvalidInput(f"{where}query is required for search", field=f"{where}query")
    return BehaviourObserved(
        kind=str(kind),
        user_id=user_id,
        session_id=optional_id(obj.get("session_id"), f"{where}session_id"),
        ts=_ts(obj.get("ts"), limits, f"{where}ts", now),
        product=product,
        query=query,
        quantity=_quantity(obj.get("quantity"), limits, f"{where}quantity"),
        revenue=_revenue(obj.get("revenue"), str(kind), limits, f"{where}revenue"),
        device=_text(obj.get("device"), f"{where}device"),
        channel=_text(obj.get("channel"), f"{where}channel"),
        event_id=optional_id(obj.get("event_id"), f"{where}event_id"),
    )


def _product(value: object, limits: Limits, where: str) -> Product | None:
    if value is None:
        return None
    obj = as_object(value, where)
    no_unknown(obj, PRODUCT_FIELDS, f"{where}.")
    product_id = optional_id(obj.get("id"), f"{where}.id")
    if product_id is None:
        raise InvalidInput(f"{where}.id is required", field=f"{where}.id")
    price = obj.get("price")
    amount = None if price is None else as_number(price, limits, f"{where}.price")
    if amount is not None and amount < 0:
        raise InvalidInput(f"{where}.price must be >= 0, got {amount!r}", field=f"{where}.price")
    return Product(
        id=product_id,
        category=_text(obj.get("category"), f"{where}.category"),
        brand=_text(obj.get("brand"), f"{where}.brand"),
        price=amount,
    )


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise InvalidInput(f"{where} must be a string of 1-{MAX_TEXT} characters", field=where)
    return value


def _ts(value: object, limits: Limits, where: str, now: float) -> float:
    if value is None:
        return now
    ts = as_number(value, limits, where)
    if not now - MAX_AGE_SECONDS <= ts <= now + FUTURE_SLACK_SECONDS:
        raise InvalidInput(
            f"{where} must be within the last 7 days and at most {FUTURE_SLACK_SECONDS:g} s "
            f"ahead of the server clock ({now:.3f}), got {ts!r}",
            field=where,
        )
    return ts


def _quantity(value: object, limits: Limits, where: str) -> float:
    if value is None:
        return 1.0
    quantity = as_number(value, limits, where)
    if not 0 < quantity <= MAX_QUANTITY:
        raise InvalidInput(
            f"{where} must be in (0, {MAX_QUANTITY:g}], got {quantity!r}", field=where
        )
    return quantity


def _revenue(value: object, kind: str, limits: Limits, where: str) -> float:
    if value is None:
        return 0.0
    if kind != "purchase":
        raise InvalidInput(f"{where} is only for purchase events, not {kind}", field=where)
    revenue = as_number(value, limits, where)
    if revenue < 0:
        raise InvalidInput(f"{where} must be >= 0, got {revenue!r}", field=where)
    return revenue
