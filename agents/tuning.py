"""Process-wide settings of Faust and aiokafka in the worker: how long a fetch may wait
on an idle partition, and how much memory each table's RocksDB may hold."""

from __future__ import annotations

from typing import Any

from streams.kv import Memory


def bound_fetch_wait(wait_ms: int) -> None:
    """Faust hard-codes fetch_max_wait_ms=1500, and Tansu holds every fetch that long when
    a partition is idle (measured: up to 1.2 s per hop at 1500 ms, <= 55 ms at 50 ms).
    Kafka answers as soon as data arrives, so a short wait costs it only idle polls.
    Faust builds its consumer as `aiokafka.AIOKafkaConsumer(...)`: in the worker process,
    that name becomes a subclass that fixes the wait."""
    import aiokafka

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "loopwise_fetch_wait_ms", None) == wait_ms:
        return

    class Consumer(base):  # type: ignore[misc, valid-type]  # aiokafka's class is untyped
        loopwise_fetch_wait_ms = wait_ms

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = wait_ms
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = Consumer  # see the docstring


# Per RocksDB instance, and Faust opens one per partition of each table (4 tables x 4
# partitions here): its defaults (64 MB write buffers, up to 3, and a 2 GB block cache
# each) let the worker grow by gigabytes before a memtable is flushed.
ROCKSDB = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


def bounded_rocksdb(options: dict[str, int] = ROCKSDB) -> None:
    """Make `options` the defaults of every table store this process opens."""
    from faust.stores.rocksdb import RocksDBOptions

    for name, value in options.items():
        setattr(RocksDBOptions, name, value)
    if getattr(RocksDBOptions, "loopwise_shared", False):
        return
    build = RocksDBOptions.as_options

    def as_options(self: Any) -> Any:
        """Faust's options with the process's one cache and write-buffer manager, which
        bound all the stores' memory together (each store would otherwise keep a cache)."""
        db_options = build(self)
        if self.use_rocksdict:
            Memory.shared().bound(db_options, bloom_bits=self.bloom_filter_size)
        return db_options

    RocksDBOptions.as_options = as_options  # type: ignore[method-assign]  # see as_options
    setattr(RocksDBOptions, "loopwise_shared", True)  # noqa: B010  # once per process
