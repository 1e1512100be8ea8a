"""Synthetic storefront behaviour for the features benchmark: products with a fixed
category, brand and price; sessions of mostly product views; a returning user's rich
history; and an event as the body `POST /v1/events` takes."""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec

from benchmarks.shapes import THEMES
from engine.behaviour import BehaviourObserved, Product

CATEGORIES = (*THEMES, "hiking", "fitness", "golf", "climbing")
BRANDS = tuple(f"brand{i}" for i in range(20))
PRODUCTS = 2000
KINDS = ("product_view", "page_view", "search", "add_to_cart", "remove_from_cart", "purchase")
KIND_WEIGHTS = (55, 20, 10, 8, 2, 5)
DEVICES = ("mobile", "desktop", "tablet")
CHANNELS = ("web", "app", "email")


def product(j: int) -> Product:
    """Product j of the catalog: a fixed category, brand and price."""
    return Product(
        id=f"p{j}",
        category=CATEGORIES[j % len(CATEGORIES)],
        brand=BRANDS[(j * 7) % len(BRANDS)],
        price=float(5 + (j * 13) % 195),
    )


def behaviour(
    rng: random.Random, user: str, session: str, ts: float, products: int = PRODUCTS
) -> BehaviourObserved:
    """One storefront event of a user's session: mostly product views."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    item = product(rng.randrange(products)) if kind != "page_view" else None
    return BehaviourObserved(
        kind=kind,
        user_id=user,
        session_id=session,
        ts=ts,
        product=item if kind not in ("search", "purchase") else None,
        query=rng.choice(CATEGORIES) if kind == "search" else None,
        revenue=float(rng.randrange(20, 300)) if kind == "purchase" else 0.0,
        device=rng.choice(DEVICES),
        channel=rng.choice(CHANNELS),
    )


def traffic(n: int, users: int, seed: int = 0, active: int = 200) -> list[BehaviourObserved]:
    """N events of `active` interleaved sessions (3-12 events each) of random users, over
    the last hour."""
    rng = random.Random(seed)
    now = time.time()
    sessions: list[list[Any]] = []
    out: list[BehaviourObserved] = []
    started = 0
    while len(out) < n:
        while len(sessions) < active:
            sessions.append([f"u{rng.randrange(users)}", f"s{started}", rng.randint(3, 12)])
            started += 1
        k = rng.randrange(len(sessions))
        user, session, left = sessions[k]
        out.append(behaviour(rng, user, session, now - 3600.0 + 3600.0 * len(out) / n))
        if left <= 1:
            sessions.pop(k)
        else:
            sessions[k][2] = left - 1
    return out


def rich_history(
    user: str, seed: int, events: int = 200, sessions: int = 5
) -> list[BehaviourObserved]:
    """A returning user's last two hours: `events` events over `sessions` sessions, on
    products p0-p199 (so the join catalog's p0-p49 have a popularity)."""
    rng = random.Random(seed)
    now = time.time()
    return [
        behaviour(
            rng, user, f"{user}-s{i * sessions // events}", now - 7200 + 7000 * i / events, 200
        )
        for i in range(events)
    ]


def as_json(event: BehaviourObserved) -> dict[str, object]:
    """The POST /v1/events body of an event."""
    body = msgspec.to_builtins(event)
    body.pop("type")  # the record tag
    body["type"] = body.pop("kind")
    if event.kind != "purchase":
        body.pop("revenue", None)
    return {k: v for k, v in body.items() if v is not None}
