"""The simulated shop's stock: its own ledger (`Shop`), the truth the server learns from
inventory events, and the calls that post its levels and wait for the server to see them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from sim import server
from sim.server import POLL_INTERVAL_S

STOCK_SYNC_S = 10.0  # how long to wait for the server to see the shop's stock levels


@dataclass
class Shop:
    """The storefront's own stock ledger: the truth, which the server learns from events.

    Levels are posted as absolute values stamped with strictly increasing times per SKU,
    so concurrent posts that arrive out of order still leave the newest level in force.
    """

    skus: dict[str, str]  # action id -> SKU
    initial: int
    restock_after: float | None
    levels: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)
    stock_outs: list[tuple[int, str]] = field(default_factory=list)
    restocks: list[tuple[int, str]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    waiting: dict[asyncio.Task[None], str] = field(default_factory=dict)  # restock sleeping
    purchases: int = 0
    oversold: int = 0

    def __post_init__(self) -> None:
        self.levels = dict.fromkeys(self.skus, self.initial)

    def stamp(self, action_id: str) -> float:
        ts = max(time.time(), self.stamps.get(action_id, 0.0) + 1e-6)
        self.stamps[action_id] = ts
        return ts

    def buy(self, action_id: str) -> tuple[int, float] | None:
        """One unit sold: (new level, its timestamp); None when it was already sold out."""
        level = self.levels[action_id]
        if level <= 0:
            self.oversold += 1
            return None
        self.levels[action_id] = level - 1
        self.purchases += 1
        return level - 1, self.stamp(action_id)

    def restock(self, action_id: str) -> tuple[int, float]:
        self.levels[action_id] = self.initial
        return self.initial, self.stamp(action_id)

    def in_stock(self) -> set[str]:
        return {a for a, level in self.levels.items() if level > 0}

    def event(self, action_id: str, level: int, ts: float) -> dict[str, object]:
        return {"type": "inventory", "sku": self.skus[action_id], "level": level, "ts": ts}


async def stock_up(client: httpx.AsyncClient, shop: Shop) -> None:
    """Post every SKU's initial level and give the server a moment to see them."""
    events = [shop.event(a, level, shop.stamp(a)) for a, level in shop.levels.items()]
    await server.post_events(client, events)
    await wait_stock(client, shop)


async def wait_stock(client: httpx.AsyncClient, shop: Shop) -> bool:
    """Poll until the server decides with the shop's levels; False on timeout, or when
    the key may not read inventory (the run goes on: an unknown SKU counts as in stock)."""
    deadline = time.monotonic() + STOCK_SYNC_S
    pending = dict(shop.levels)
    try:
        while True:
            for action, level in list(pending.items()):
                if await server.server_level(client, shop.skus[action]) == float(level):
                    del pending[action]
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL_S)
    except PermissionError:
        return False
