"""The broker adapter against the real embedded broker (Tansu)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.broker import RangeReader, ensure_topics, true_end_offsets

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def produce_concurrently(
    bootstrap: str, topic: str, producers: int, each: int
) -> dict[int, int]:
    """Several producers at once, as the API and the worker write one topic; returns the
    highest acknowledged offset + 1 per partition."""

    async def one(name: int) -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        try:
            acks = [
                await producer.send(topic, b"v", key=f"{name}-{i}".encode()) for i in range(each)
            ]
            return [(r.partition, r.offset) for r in await asyncio.gather(*acks)]
        finally:
            await producer.stop()

    ends: dict[int, int] = defaultdict(int)
    for acked in await asyncio.gather(*(one(n) for n in range(producers))):
        for partition, offset in acked:
            ends[partition] = max(ends[partition], offset + 1)
    return dict(ends)


async def reported_ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def test_true_end_offsets_reads_past_a_lagging_end_to_the_last_record(broker: str) -> None:
    topic = "end-offsets"

    async def run() -> tuple[dict[int, int], dict[int, int], dict[tuple[str, int], int]]:
        await ensure_topics(broker, {topic: PARTITIONS})
        acked = await produce_concurrently(broker, topic, producers=3, each=1500)
        reported = await reported_ends(broker, topic)
        found = await true_end_offsets(broker, {(topic, p): o for p, o in reported.items()})
        return acked, reported, found

    acked, reported, found = asyncio.run(run())
    print(f"acknowledged ends {acked}, reported by the broker {reported}")
    assert found == {(topic, p): acked[p] for p in range(PARTITIONS)}
    # the same from an end that is already right, and from the start of the log
    again = asyncio.run(true_end_offsets(broker, {(topic, p): acked[p] for p in range(PARTITIONS)}))
    assert again == found
    assert asyncio.run(true_end_offsets(broker, {(topic, 0): 0})) == {(topic, 0): acked[0]}
    assert asyncio.run(true_end_offsets(broker, {})) == {}


def test_range_reader_reads_exactly_the_asked_offsets_in_order(broker: str) -> None:
    topic = "ranges"

    async def run() -> tuple[list[bytes], list[bytes], list[bytes]]:
        await ensure_topics(broker, {topic: PARTITIONS})
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            for i in range(300):
                await producer.send_and_wait(topic, b"%d" % i, partition=1)
        finally:
            await producer.stop()
        reader = RangeReader(broker)
        try:
            return (
                await reader.read(topic, 1, 17, 242),
                await reader.read(topic, 1, 0, 1),
                await reader.read(topic, 1, 5, 5),
            )
        finally:
            await reader.close()

    middle, first, empty = asyncio.run(run())
    assert middle == [b"%d" % i for i in range(17, 242)]
    assert first == [b"0"] and empty == []
