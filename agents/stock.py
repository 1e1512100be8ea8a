"""The stock agent's logic: the newest level of each SKU, from the inventory events.

Inventory events are keyed by SKU, so every update of a SKU reaches one partition of the
stock table; the serving processes read its changelog (api.serving.mirror).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping

import msgspec

from engine.records import InventoryUpdate, decode_stock, encode_stock
from streams import messages


def update(table: MutableMapping[bytes, bytes], raw: bytes, counts: Counter[str]) -> None:
    """Keep the newest stock level per SKU; an older update arriving late is ignored."""
    message = messages.read(raw, counts, "among the stock events")
    if message is None:
        return
    if not isinstance(message, InventoryUpdate):
        counts["unexpected"] += 1
        return
    key = message.sku.encode()
    current = table.get(key)
    try:
        if current is not None and decode_stock(current)[1] > message.ts:
            counts["stale_stock_updates"] += 1
            return
    except msgspec.DecodeError:
        counts["corrupt_entries"] += 1
    table[key] = encode_stock(message.level, message.ts)
    counts["stock_updates"] += 1
