"""A durable, bounded outbox between the API and Kafka.

`put` writes the message to a local RocksDB store and returns at once: a decision never
waits on the broker, and what was accepted survives a crash of the API process. A task
drains the outbox in order, and deletes a message only after the broker acknowledged it.
Delivery is at least once; consumers deduplicate by event id and reward id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import NamedTuple

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.kv import KV

log = logging.getLogger(__name__)
PREFIX = b"o:"


class Pending(NamedTuple):
    seq: bytes
    topic: str
    key: bytes
    value: bytes


class Outbox:
    def __init__(self, kv: KV, capacity: int, batch: int = 500) -> None:
        self.kv = kv
        self.capacity = capacity
        self.batch = batch
        self.pending: deque[Pending] = deque()
        for seq, raw in kv.scan(PREFIX):
            topic, key, value = msgspec.msgpack.decode(raw, type=tuple[str, bytes, bytes])
            self.pending.append(Pending(seq, topic, key, value))
        self._next = int(self.pending[-1].seq[len(PREFIX) :]) + 1 if self.pending else 0
        self._wake = asyncio.Event()
        self.connected = False
        self.sent = 0
        self.refused = 0
        self.failures = 0
        if self.pending:
            log.info("outbox: %d messages from before the restart still to send", len(self.pending))

    def put(self, topic: str, key: bytes, value: bytes) -> bool:
        """Persist one message for sending; False when the outbox is full."""
        if len(self.pending) >= self.capacity:
            self.refused += 1
            return False
        seq = PREFIX + b"%020d" % self._next
        self._next += 1
        self.kv.put(seq, msgspec.msgpack.encode((topic, key, value)))
        self.pending.append(Pending(seq, topic, key, value))
        self._wake.set()
        return True

    def __len__(self) -> int:
        return len(self.pending)

    async def run(self, bootstrap: str) -> None:
        """Drain forever; reconnects with backoff while the broker is away."""
        backoff = 0.1
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap, acks="all", linger_ms=1, request_timeout_ms=10_000
            )
            try:
                await producer.start()
                self.connected = True
                backoff = 0.1
                await self._drain(producer)
            except (KafkaError, OSError) as exc:
                self.failures += 1
                log.warning("outbox: broker %s unavailable (%s); retrying", bootstrap, exc)
            finally:
                self.connected = False
                await _stop_quietly(producer)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _drain(self, producer: AIOKafkaProducer) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            batch = [self.pending[i] for i in range(min(self.batch, len(self.pending)))]
            futures = [await producer.send(p.topic, p.value, key=p.key) for p in batch]
            await asyncio.gather(*futures)
            self.kv.write({}, [p.seq for p in batch])
            for _ in batch:
                self.pending.popleft()
            self.sent += len(batch)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(KafkaError, OSError):  # best effort on a dead connection
        await producer.stop()
