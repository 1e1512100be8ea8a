"""Reading a topic back with its records' timestamps (Kafka CreateTime): the worker's
changelogs say when each event was folded in."""

from __future__ import annotations

from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.settings import Settings


class Record(NamedTuple):
    key: bytes
    ts: float  # the producer's timestamp (Kafka CreateTime), seconds
    size: int  # of the value, bytes


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def read_records(
    settings: Settings,
    topic: str,
    n: int,
    start: dict[int, int] | None = None,
    keys: set[bytes] | None = None,
) -> list[Record]:
    """`n` records of a topic (only those of `keys` if given) from the `start` offsets or
    the beginning, sorted by timestamp; fewer if reads stop bringing any (Tansu may
    under-report end offsets, so those do not say where the end is)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    out: list[Record] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        for tp in tps:
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start[tp.partition])
        idle = 0
        while len(out) < n and idle < 25:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = [r for rs in batches.values() for r in rs]
            idle = 0 if got else idle + 1
            out += [
                Record(r.key or b"", r.timestamp / 1000.0, len(r.value or b""))
                for r in got
                if keys is None or r.key in keys
            ]
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: r.ts)
