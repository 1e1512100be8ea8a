"""The local RocksDB stores of one process share one memory budget."""

from __future__ import annotations

import os
from pathlib import Path

from streams.kv import KV, MEMORY_BYTES, MEMTABLE_BYTES, Memory


def test_stores_stay_within_their_shared_budget_and_keep_every_write(tmp_path: Path) -> None:
    """Five stores (as the API opens), 100 MB of writes: six times the memtable budget."""
    memory = Memory()
    stores = [KV(tmp_path / f"s{i}", memory=memory) for i in range(5)]
    written: list[dict[bytes, bytes]] = [{} for _ in stores]
    peak = {"cache": 0, "memtables": 0}
    for i in range(250_000):
        key, value = os.urandom(12), os.urandom(400)
        stores[i % 5].put(key, value)
        if i % 11 == 0:
            written[i % 5][key] = value
        if i % 1000 == 0:
            for kind, used in memory.usage().items():
                peak[kind] = max(peak[kind], used)
    for store, kept in zip(stores, written, strict=True):
        assert all(store.get(k) == v for k, v in kept.items())
    assert 0 < peak["memtables"] <= MEMTABLE_BYTES * 1.25, peak
    assert peak["memtables"] <= peak["cache"] <= MEMORY_BYTES * 1.25, peak
    for store in stores:
        store.close()
