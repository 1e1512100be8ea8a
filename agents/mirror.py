"""A local replica of a Faust table: follows the table's changelog topic into memory.

Serving processes read worker-maintained state (live stock levels, later user features)
from such a replica, never over the network per request. It is the GlobalTable idea for
a process that is not a Faust worker: every partition of the changelog, from the start,
latest value per key wins, an empty value deletes the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class StockView(Mapping[str, float]):
    """Stock levels by SKU over a mirror whose values are (level, ts) pairs."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    def __getitem__(self, sku: str) -> float:
        value = self.mirror.data.get(sku.encode())
        if not isinstance(value, tuple):
            raise KeyError(sku)
        return float(value[0])

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.mirror.data)

    def __len__(self) -> int:
        return len(self.mirror.data)


class Mirror:
    def __init__(
        self, topic: str, partitions: int, decode: Callable[[bytes], object] = bytes
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.decode = decode
        self.data: dict[bytes, object] = {}
        self.offsets: dict[int, int] = {}
        self.caught_up = False
        self.poisoned = 0

    def get(self, key: bytes) -> object | None:
        return self.data.get(key)

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.offsets[partition] = offset + 1
        if key is None:
            return
        if not value:
            self.data.pop(key, None)
            return
        try:
            self.data[key] = self.decode(value)
        except Exception as exc:  # a foreign value must not stop the replica
            self.poisoned += 1
            log.warning("mirror %s: skipped an unreadable value for %r: %s", self.topic, key, exc)

    async def run(self, bootstrap: str, fetch_wait_ms: int) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                enable_auto_commit=False,
                fetch_max_wait_ms=fetch_wait_ms,
                auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
                await self._follow(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("mirror %s: broker unavailable (%s); retrying", self.topic, exc)
            finally:
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
            await asyncio.sleep(1.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        for tp in tps:
            if tp.partition in self.offsets:
                consumer.seek(tp, self.offsets[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=1000)
            for tp, records in batches.items():
                for r in records:
                    self.apply(tp.partition, r.offset, r.key, r.value)
            if not self.caught_up and all(
                self.offsets.get(tp.partition, 0) >= ends[tp] for tp in tps
            ):
                self.caught_up = True
