"""The one adapter around rocksdict: small local RocksDB key-value stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

# RocksDB's default 64 MB write buffer per store let the API grow by about 250 MB in a
# 30-minute soak (5 stores, each memtable filling before its first flush: 54 MB of WAL in
# the exposures store at minute 16); 4 MB keeps each store's memtables under 8 MB.
WRITE_BUFFER_BYTES = 4 << 20
# What every RocksDB store of one process may hold in memory together: one LRU block cache
# (data, index and filter blocks), which the memtables are charged to as well. Without it
# each store keeps its own cache, and a process's memory creeps up for as long as its
# stores' files grow, which in a soak looks like a leak.
MEMORY_BYTES = 32 << 20
MEMTABLE_BYTES = 16 << 20  # of MEMORY_BYTES, flushed once the memtables hold this much


class Memory:
    """The one block cache and write-buffer manager all of a process's stores share."""

    _shared: Memory | None = None

    def __init__(self, total: int = MEMORY_BYTES, memtables: int = MEMTABLE_BYTES) -> None:
        self.cache = Cache(total)
        self.memtables = WriteBufferManager.new_write_buffer_manager_with_cache(
            memtables, False, self.cache
        )

    @classmethod
    def shared(cls) -> Memory:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def bound(self, options: Options, bloom_bits: int | None = None) -> None:
        """Make a store opened with `options` draw on this budget."""
        table = BlockBasedOptions()
        if bloom_bits:
            table.set_bloom_filter(bloom_bits, True)
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.memtables)

    def usage(self) -> dict[str, int]:
        """Bytes held now: the whole cache (memtables included) and the memtables."""
        return {"cache": self.cache.get_usage(), "memtables": self.memtables.get_usage()}


class KV:
    """Bytes to bytes, with prefix scans and atomic batches. `ttl` drops old keys lazily."""

    def __init__(
        self, path: Path, ttl_seconds: int | None = None, memory: Memory | None = None
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        (memory or Memory.shared()).bound(options)
        access = AccessType.with_ttl(ttl_seconds) if ttl_seconds else AccessType.read_write()
        self.path = path
        self._db = Rdict(str(path), options=options, access_type=access)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def put(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        del self._db[key]

    def write(self, puts: dict[bytes, bytes], deletes: list[bytes] = []) -> None:  # noqa: B006
        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            batch.put(key, value)
        for key in deletes:
            batch.delete(key)
        self._db.write(batch)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, value

    def flush(self) -> None:
        self._db.flush(wait=True)

    def close(self) -> None:
        self._db.close()
