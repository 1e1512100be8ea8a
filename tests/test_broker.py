"""The broker adapter against the real embedded broker (Tansu)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource

from streams.broker import RangeReader, ensure_topics, topic_configs, topics, true_end_offsets
from streams.settings import Settings

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


def test_the_end_offset_follows_one_record_batches_written_within_a_second(broker: str) -> None:
    """Tansu answers ListOffsets(latest) from the newest LastModified of a partition's
    batches: with the object store's times in whole seconds they tied, the end stayed at
    the first batch's, and a consumer that seeks to the end read everything again."""
    topic = "end-one-by-one"

    async def run() -> tuple[int, list[bytes]]:
        await ensure_topics(broker, {topic: 1})
        producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=0)
        await producer.start()
        for i in range(30):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await consumer.start()
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await producer.send_and_wait(topic, b"new", partition=0)
        seen: list[bytes] = []
        for _ in range(10):
            batches = await consumer.getmany(timeout_ms=200)
            seen += [r.value or b"" for records in batches.values() for r in records]
        await consumer.stop()
        await producer.stop()
        return end, seen

    end, seen = asyncio.run(run())
    assert end == 30 and seen == [b"new"]


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


# -- the embedded broker's bounded log (streams.objectstore) ------------------------------------


def test_embedded_topics_are_created_with_the_retention_the_store_applies(broker: str) -> None:
    """Stream topics get retention.ms and retention.bytes, changelogs compaction and a
    tombstone retention, the epoch no limit: the configs the object store acts on."""
    settings = Settings(topic_prefix="cfg", broker_retention_seconds=90, broker_retention_mb=2)
    configs = topic_configs(settings)
    assert configs["cfg-decisions"] == {"retention.ms": "90000", "retention.bytes": "2097152"}
    assert configs["cfg-worker-join-changelog"] == {
        "cleanup.policy": "compact",
        "delete.retention.ms": "90000",
    }
    assert configs["cfg-epoch"] == {"retention.ms": "-1"}
    assert topic_configs(settings.with_(broker="kafka1:9092"))["cfg-decisions"] == {}

    async def described() -> dict[str, dict[str, str]]:
        await ensure_topics(broker, topics(settings), configs)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            names = ["cfg-decisions", "cfg-worker-profiles-changelog"]
            answers = await admin.describe_configs([ConfigResource("TOPIC", n) for n in names])
        finally:
            await admin.close()
        return {
            name: {e[0]: e[1] for e in resource[4]}
            for answer in answers
            for resource in answer.resources
            for name in [resource[3]]
        }

    found = asyncio.run(described())
    assert found["cfg-decisions"]["retention.ms"] == "90000"
    assert found["cfg-worker-profiles-changelog"]["cleanup.policy"] == "compact"


async def _read_all(bootstrap: str, topic: str, seconds: float = 3.0) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=200)
            out += [(r.offset, r.value or b"") for r in batch.get(tp, [])]
        return out
    finally:
        await consumer.stop()


def test_the_embedded_broker_drops_records_past_retention_and_compacts(broker: str) -> None:
    """With the real embedded broker: a topic with retention.ms keeps its recent records
    only (always its last), a compacted one the latest value of each key (Tansu's own
    memory storage keeps all of both)."""
    stream, changelog = "retained", "compacted-changelog"
    latest = {b"k%d" % (i % 10): b"%d" % i for i in range(290, 300)}
    wanted = [*sorted(v for k, v in latest.items() if k not in (b"k3", b"k9")), b"late"]

    async def run() -> tuple[list[bytes], list[bytes], list[tuple[int, bytes]]]:
        await ensure_topics(
            broker,
            {stream: 1, changelog: 1},
            {
                stream: {"retention.ms": "1500"},
                changelog: {"cleanup.policy": "compact", "delete.retention.ms": "1000"},
            },
        )
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            for i in range(300):  # one record a batch, as the outbox sends them
                await producer.send_and_wait(stream, b"%d" % i, partition=0)
                await producer.send_and_wait(
                    changelog, b"%d" % i, key=b"k%d" % (i % 10), partition=0
                )
            await producer.send_and_wait(changelog, None, key=b"k3", partition=0)
            await asyncio.sleep(4.0)  # past both retentions; the store cleans every second
            alone = [v for _, v in await _read_all(broker, stream)]
            await producer.send_and_wait(stream, b"late", partition=0)
            await producer.send_and_wait(changelog, b"late", key=b"k9", partition=0)
            await asyncio.sleep(2.5)
        finally:
            await producer.stop()
        kept = [v for _, v in await _read_all(broker, stream)]
        deadline = time.monotonic() + 30.0  # compaction reads a partition every 10 s
        while True:
            compacted = await _read_all(broker, changelog, 1.0)
            values = [v for _, v in compacted]
            if sorted(values[:-1]) + values[-1:] == wanted or time.monotonic() > deadline:
                return alone, kept, compacted
            await asyncio.sleep(1.0)

    alone, kept, compacted = asyncio.run(run())
    assert alone == [b"299"]  # a partition's last batch always stays
    assert kept == [b"late"]
    values = [v for _, v in compacted]
    assert sorted(values[:-1]) + values[-1:] == wanted, values
    offsets = [o for o, _ in compacted]
    assert offsets == sorted(offsets) and offsets[-1] == 301  # offsets kept, in order


def test_the_store_packs_small_batches_and_keeps_them_readable() -> None:
    """Sealed one-record batches are packed into one batch holding the same records at the
    same offsets; the batches it replaced stay readable (not listed) for a while."""
    from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

    from streams.objectstore.store import RETIRED_SECONDS, Store

    store = Store()
    prefix = "clusters/c/topics/t/partitions/0000000000/records/"
    for i in range(50):
        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
        builder.append(0, 1_000 + i, b"k%d" % i, b"v%d" % i, [])
        store.put(f"{prefix}{i:020d}.batch", bytes(builder.build()), modified=100.0 + i)
    store.clean(now=1_000.0)
    listed = [key for key, _ in store.listing(prefix)]
    assert listed == [f"{prefix}{0:020d}.batch", f"{prefix}{49:020d}.batch"]
    packed = DefaultRecordBatch(store.objects[listed[0]].data)
    assert packed.validate_crc()
    records = [(r.offset, r.timestamp, r.key, r.value) for r in packed]
    assert records == [(i, 1_000 + i, b"k%d" % i, b"v%d" % i) for i in range(49)]
    assert store.get(f"{prefix}{7:020d}.batch") is not None  # retired, still readable
    store.clean(now=1_000.0 + RETIRED_SECONDS + 1)
    assert store.get(f"{prefix}{7:020d}.batch") is None
