"""Exposures for frequency caps: per user and catalog, bounded, erasable (real RocksDB)."""

from __future__ import annotations

from pathlib import Path

from api.serving.exposures import HORIZON_SECONDS, PER_ACTION, Exposures
from streams.kv import KV


def test_exposures_are_per_catalog_bounded_and_erasable(tmp_path: Path) -> None:
    store = Exposures(KV(tmp_path / "x"))
    store.record("shop", "u1", ["a", "b"], now=100.0)
    store.record("shop", "u1", ["a"], now=200.0)
    store.record("other", "u1", ["a"], now=300.0)
    store.record("shop", "u10", ["a"], now=300.0)  # a user id that starts like another
    assert store.of("shop", "u1") == {"a": [100.0, 200.0], "b": [100.0]}
    assert store.of("other", "u1") == {"a": [300.0]}
    for i in range(PER_ACTION + 10):
        store.record("shop", "u2", ["a"], now=float(i))
    assert len(store.of("shop", "u2")["a"]) == PER_ACTION
    store.record("shop", "u1", ["c"], now=200.0 + HORIZON_SECONDS + 1)
    assert store.of("shop", "u1") == {"c": [200.0 + HORIZON_SECONDS + 1]}, "old ones age out"
    assert store.erase("u1", at=1e12) == 2
    assert store.of("shop", "u1") == {} and store.of("other", "u1") == {}
    assert store.of("shop", "u10") == {"a": [300.0]}
    store.kv.close()


def test_exposures_from_the_log_count_once_in_order_and_never_from_before_an_erasure(
    tmp_path: Path,
) -> None:
    store = Exposures(KV(tmp_path / "x"))
    store.record("shop", "u1", ["a"], now=100.0)
    assert store.record_seen("shop", "u1", "a", 90.0), "another process's, arriving late"
    assert not store.record_seen("shop", "u1", "a", 90.0), "a second delivery"
    assert store.record_seen("shop", "u1", "b", 95.0)
    assert store.of("shop", "u1") == {"a": [90.0, 100.0], "b": [95.0]}

    assert store.erase("u1", at=150.0) == 1
    store.record("shop", "u1", ["a"], now=160.0)  # shown after the erasure: kept
    assert not store.record_seen("shop", "u1", "a", 120.0), "from before the erasure"
    assert store.record_seen("shop", "u1", "b", 170.0)
    assert store.of("shop", "u1") == {"a": [160.0], "b": [170.0]}
    assert store.erase("u1", at=140.0) == 0, "an older erasure arriving late keeps the newer"
    assert store.erased_at("u1") == 150.0 and store.of("shop", "u1") == {"a": [160.0], "b": [170.0]}
    assert store.erase("u1", at=200.0) == 1 and store.of("shop", "u1") == {}
    store.kv.close()
