"""The Faust worker: joins decisions and rewards into training examples.

Decisions and rewards are keyed by event id on topics with the same partition count, so
one agent reading both sees every message of an event id on one partition, in order.
Join state lives in a RocksDB-backed Faust table (changelogged); the transitions are the
pure functions of `engine.join`. Expiry runs inside the stream: a timer sends a Tick to
every partition, and the agent closes the windows that are due on that partition.

A training example is acknowledged by the broker *before* the table records the entry
as emitted, so a crash can repeat an emission (the model replica's ledger drops the
repeat) but never lose one.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import msgspec

from agents.profiler import Profiler
from engine import join
from engine.behaviour import UserErased
from engine.records import (
    DecisionLogged,
    InventoryUpdate,
    RewardObserved,
    Tick,
    decode_stock,
    encode,
    encode_stock,
)
from streams import messages
from streams.broker import (
    RangeReader,
    partitions_for,
    prepare,
    remember_epoch,
    remembered_epoch,
    true_end_offsets,
)
from streams.files import write_atomic
from streams.settings import Settings

log = logging.getLogger(__name__)


MAX_BATCH = 500  # emissions awaited together: one broker round trip acknowledges them all
POSITION = b"\x00position/"  # join-table keys of source positions (no event id has a NUL)


def position_key(topic: str) -> bytes:
    """The key of a source topic's next offset in the join table. The table keeps a
    RocksDB per partition, so one key per topic holds each partition's own position."""
    return POSITION + topic.encode()


@dataclass
class Batch:
    """Join-table writes held in front of the table until the batch's training examples
    are acknowledged. Transitions read the held state first, so a batch chains the same
    event id's messages exactly as one-by-one processing would."""

    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None: delete
    emits: dict[bytes, join.Outcome] = field(default_factory=dict)
    before: dict[bytes, bytes | None] = field(default_factory=dict)  # held before an emission
    failed: set[bytes] = field(default_factory=set)  # not acknowledged: sent at the next tick


class Joiner:
    """The join agent's state outside the table: per-partition due-time heaps, counters."""

    def __init__(
        self, settings: Settings, table: Any, training: Any, max_batch: int = MAX_BATCH
    ) -> None:
        self.settings = settings
        self.config = settings.join
        self.table = table
        self.training = training
        self.max_batch = max_batch
        self.reader = RangeReader(settings.bootstrap)
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.heaps: dict[int, list[tuple[float, bytes]]] = {}
        self.retry: dict[int, list[tuple[float, bytes]]] = {}  # unacknowledged: next tick
        self.counts: Counter[str] = Counter()
        self.assigned: frozenset[int] | None = None

    async def admit(self, topic: str, partition: int, offset: int, raw: bytes) -> None:
        """Join the message at `offset`, and first any the consumer skipped before it.

        The join keeps the next offset of each source partition in its table, written
        after the state the message changed (so it travels in the changelog with it).
        Faust's consumer can jump ahead in a partition after a restart and commit past the
        jump (measured: from offset 6,591 to 6,689; over 25 worker kills 134 decisions and
        161 rewards were never joined). A message below the position was joined
        already and is passed over; one above it has the skipped range read from the
        broker and joined first. Call while the event is current (see `handle`)."""
        key = (topic, partition)
        expected = self.positions.get(key)
        if expected is None:
            expected = self.stored_position(topic)
        if expected is not None and offset < expected:
            self.counts["replayed"] += 1
            return
        raws = [raw]
        if expected is not None and offset > expected:
            skipped = await self.reader.read(topic, partition, expected, offset)
            log.warning(
                "%s[%d]: the consumer skipped offsets %d..%d; joined %d read from the broker",
                topic,
                partition,
                expected,
                offset - 1,
                len(skipped),
            )
            self.counts["skipped_by_consumer"] += offset - expected
            raws = [*skipped, raw]
        self.positions[key] = offset + 1
        await self.handle(raws, partition, position=(topic, offset + 1))

    def stored_position(self, topic: str) -> int | None:
        raw = self.table.get(position_key(topic))
        try:
            return int(raw) if raw is not None else None
        except ValueError:  # unreadable: join what comes, from here on
            self.counts["corrupt_entries"] += 1
            return None

    async def handle(
        self, raws: Sequence[bytes], partition: int, position: tuple[str, int] | None = None
    ) -> None:
        """Join messages of one partition in order, as one batch, then record `position`
        (topic, next offset). Faust writes a table's changelog to the current stream
        event's partition: call this while an event of `partition` is current."""
        batch = Batch()
        for raw in raws:
            try:
                await self.dispatch(batch, raw, partition)
            except Exception:  # a bug must not stop the join for every other event
                self.counts["failed"] += 1
                log.exception("join failed for a message on partition %d", partition)
        if position is not None:
            batch.writes[position_key(position[0])] = b"%d" % position[1]
        await self.flush(batch, partition)

    async def dispatch(self, batch: Batch, raw: bytes, partition: int) -> None:
        message = messages.read(raw, self.counts, f"on partition {partition}")
        if message is None:
            return
        if isinstance(message, Tick):
            await self.tick(batch, message.ts, partition)
        elif (
            isinstance(message, DecisionLogged | RewardObserved) and message.event_id[:1] == "\x00"
        ):
            self.counts["poisoned"] += 1  # not from the API (it refuses control characters)
        elif isinstance(message, DecisionLogged):
            eid = message.event_id.encode()
            entry = await self.load(batch, eid, partition)
            self.stage(batch, eid, join.on_decision(entry, message, self.config), partition)
        elif isinstance(message, RewardObserved):
            eid = message.event_id.encode()
            entry = await self.load(batch, eid, partition)
            self.stage(batch, eid, join.on_reward(entry, message, self.config), partition)
        elif isinstance(message, UserErased):
            self.counts["erasures"] += 1  # for the serving processes' exposures (api.serving.peers)
        else:
            self.counts["unexpected"] += 1

    async def load(self, batch: Batch, eid: bytes, partition: int) -> join.JoinEntry | None:
        """The entry as the batch left it. An entry whose emission is not yet acknowledged
        is flushed first, so an emission is always the last change of its entry in a batch."""
        if eid in batch.emits:
            await self.flush(batch, partition)
        return self.peek(batch, eid)

    def peek(self, batch: Batch, eid: bytes) -> join.JoinEntry | None:
        raw = batch.writes[eid] if eid in batch.writes else self.table.get(eid)
        if raw is None:
            return None
        try:
            return join.decode_entry(raw)
        except msgspec.DecodeError:
            self.counts["corrupt_entries"] += 1
            log.error("dropped an unreadable join entry for %r", eid)
            return None

    def stage(self, batch: Batch, eid: bytes, outcome: join.Outcome, partition: int) -> None:
        if outcome.emit is not None:
            batch.emits[eid] = outcome  # counted once the broker has it
            if eid in batch.writes:
                batch.before[eid] = batch.writes[eid]
        else:
            self.counts.update(outcome.counts)
        if outcome.entry is None:
            batch.writes[eid] = None
        else:
            batch.writes[eid] = join.encode_entry(outcome.entry)
            due = join.due(outcome.entry, self.config)
            heapq.heappush(self.heaps.setdefault(partition, []), (due, eid))

    async def flush(self, batch: Batch, partition: int) -> None:
        """Send the batch's examples, await every acknowledgement, then write the table:
        an entry is recorded as emitted only once the broker has its example."""
        failed = await self.send_all(batch.emits)
        batch.failed |= failed
        for eid in failed:
            if eid in batch.before:  # keep the batch's earlier changes, not the emission
                batch.writes[eid] = batch.before[eid]
            else:
                del batch.writes[eid]
            entry = batch.emits[eid].entry
            if entry is not None:  # retried at the next tick, when it is still due
                deadline = join.deadline(entry, self.config)
                self.retry.setdefault(partition, []).append((deadline, eid))
        for eid, raw in batch.writes.items():
            if raw is not None:
                self.table[eid] = raw
            elif self.table.get(eid) is not None:
                del self.table[eid]
        batch.writes.clear()
        batch.emits.clear()
        batch.before.clear()

    async def send_all(self, emits: dict[bytes, join.Outcome]) -> set[bytes]:
        """The event ids whose training example the broker did not acknowledge."""
        acks: dict[bytes, Any] = {}
        failed: set[bytes] = set()
        for eid, outcome in emits.items():
            example = outcome.emit
            if example is None:
                continue
            try:
                acks[eid] = await self.training.send(
                    key=example.catalog.encode(), value=encode(example)
                )
            except Exception:  # not sent: the entry stays due and is sent again
                failed.add(eid)
                log.exception("could not send the training example for %r", eid)
        results = await asyncio.gather(*acks.values(), return_exceptions=True)
        for eid, result in zip(acks, results, strict=True):
            if isinstance(result, BaseException):
                failed.add(eid)
                log.error("the broker did not acknowledge the example for %r: %r", eid, result)
        for eid, outcome in emits.items():
            if eid not in failed:
                self.counts.update(outcome.counts)
        if failed:
            self.counts["emit_failed"] += len(failed)
        return failed

    async def tick(self, batch: Batch, now: float, partition: int) -> None:
        if self.reassigned():
            await self.flush(batch, partition)  # the heaps are rebuilt from the table
            self.rebuild()
        heap = self.heaps.setdefault(partition, [])
        for item in self.retry.pop(partition, []):
            heapq.heappush(heap, item)
        batch.failed.clear()
        while heap and heap[0][0] <= now:
            _, eid = heapq.heappop(heap)
            entry = self.peek(batch, eid)  # most popped items are stale: no flush for them
            if entry is None or eid in batch.failed or join.due(entry, self.config) > now:
                continue
            if eid in batch.emits:  # emitted in this batch and due again: settle it first
                await self.flush(batch, partition)
                if eid in batch.failed:
                    continue
            self.stage(batch, eid, join.on_tick(entry, now, self.config), partition)
            if len(batch.emits) >= self.max_batch:
                await self.flush(batch, partition)

    def reassigned(self) -> bool:
        assigned = frozenset(
            tp.partition
            for tp in self.table.app.consumer.assignment()
            if tp.topic == self.settings.topic("decisions")
        )
        if assigned == self.assigned:
            return False
        self.assigned = assigned
        return True

    def rebuild(self) -> None:
        self.heaps = {}
        self.retry = {}
        self.positions = {}  # partitions may have moved: read again from the table
        keys: list[tuple[bytes, float]] = []
        for eid, raw in self.table.items():
            if eid.startswith(POSITION):
                continue
            try:
                keys.append((eid, join.due(join.decode_entry(raw), self.config)))
            except msgspec.DecodeError:
                self.counts["corrupt_entries"] += 1
        where = partitions_for([k for k, _ in keys], self.settings.partitions)
        for eid, due in keys:
            heapq.heappush(self.heaps.setdefault(where[eid], []), (due, eid))
        log.info(
            "join state: %d open entries on partitions %s", len(keys), sorted(self.assigned or ())
        )

    def update_stock(self, table: Any, raw: bytes) -> None:
        """Keep the newest stock level per SKU; an older update arriving late is ignored."""
        message = messages.read(raw, self.counts, "among the stock events")
        if message is None:
            return
        if not isinstance(message, InventoryUpdate):
            self.counts["unexpected"] += 1
            return
        key = message.sku.encode()
        current = table.get(key)
        try:
            if current is not None and decode_stock(current)[1] > message.ts:
                self.counts["stale_stock_updates"] += 1
                return
        except msgspec.DecodeError:
            self.counts["corrupt_entries"] += 1
        table[key] = encode_stock(message.level, message.ts)
        self.counts["stock_updates"] += 1

    def write_stats(self, assigned: int) -> None:
        """Counters, open entries and how many partitions this worker consumes (0 until
        the group has assigned it any: not yet ready)."""
        pending = sum(len(h) for h in self.heaps.values())
        body = msgspec.json.encode(
            {
                "counts": dict(self.counts),
                "pending": pending,
                "assigned": assigned,
                "ts": time.time(),
            }
        )
        write_atomic(self.settings.data_dir / "worker-stats.json", body)


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


def exact_recovery_highwaters(bootstrap: str) -> None:
    """Faust recovers a table by reading its changelog up to the end offsets the broker
    reports. Tansu's lag its log (`true_end_offsets`), so recovery could stop short and
    leave a partition's table older than the changelog. In the worker process, recovery
    reads on from the reported end to the real one; on Kafka that read finds nothing."""
    from faust.tables.recovery import Recovery

    build = Recovery._build_highwaters
    if getattr(build, "loopwise_exact", False):
        return

    async def exact(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await build(self, consumer, tps, destination, title)
        reported = {(tp.topic, tp.partition): destination[tp] + 1 for tp in tps}
        ends = await true_end_offsets(bootstrap, reported)
        for tp in tps:
            last = ends[(tp.topic, tp.partition)] - 1
            if last > destination[tp]:
                log.info("%s[%d] ends at %d, not %d", tp.topic, tp.partition, last, destination[tp])
                destination[tp] = last

    exact.loopwise_exact = True  # type: ignore[attr-defined]
    Recovery._build_highwaters = exact  # type: ignore[method-assign]  # see the docstring


# Per RocksDB instance, and Faust opens one per partition of each table (4 tables x 4
# partitions here): its defaults (64 MB write buffers, up to 3, and a 2 GB block cache
# each) let the worker grow by gigabytes before a memtable is flushed.
ROCKSDB = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


def bounded_rocksdb(options: dict[str, int] = ROCKSDB) -> None:
    """Make `options` the defaults of every table store this process opens."""
    from faust.stores.rocksdb import RocksDBOptions

    for name, value in options.items():
        setattr(RocksDBOptions, name, value)


def create_app(settings: Settings, consistency_check: bool = True) -> faust.App:
    bound_fetch_wait(settings.fetch_wait_ms)
    bounded_rocksdb()
    exact_recovery_highwaters(settings.bootstrap)
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=";".join(f"kafka://{h}" for h in settings.bootstrap.split(",")),
        store="rocksdb://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger=0.0,
        recovery_consistency_check=consistency_check,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    decisions = app.topic(settings.topic("decisions"), **raw)
    source = app.topic(settings.topic("decisions"), settings.topic("rewards"), **raw)
    training = app.topic(settings.topic("training"), **raw)
    table = app.Table(
        "join", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )  # bytes types are stored raw
    joiner = Joiner(settings, table, training)
    stock = app.Table("stock", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    events = app.topic(settings.topic("events"), **raw)
    profiles = app.Table(
        "profiles", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    popularity = app.Table(
        "popularity", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    profiler = Profiler(profiles, popularity, joiner.counts)
    behaviour = app.topic(settings.topic("behaviour"), **raw)
    by_product = app.topic(settings.topic("behaviour-by-product"), **raw)
    app.joiner = joiner  # type: ignore[attr-defined]  # reached by tests through the app

    @app.agent(source)
    async def join_agent(stream: Any) -> None:
        # One event at a time keeps it current while its changelog writes are made (Faust's
        # stream.take runs the stream in another task, so table writes fail there). Only a
        # Tick emits, and it emits every due entry of its partition as one batch.
        async for event in stream.events():
            m = event.message
            try:
                await joiner.admit(m.topic, m.partition, m.offset, event.value)
            except Exception:  # a bug must not stop the join for every other event
                joiner.counts["failed"] += 1
                log.exception("join failed for a message on partition %d", m.partition)

    @app.agent(events)
    async def stock_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                joiner.update_stock(stock, event.value)
            except Exception:  # a bug must not stop stock updates for every other SKU
                joiner.counts["failed"] += 1
                log.exception("stock update failed")

    @app.agent(behaviour)
    async def profile_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                product = profiler.handle(event.value)
                if product is not None:  # repartition by product for its popularity
                    await by_product.send(key=product, value=event.value)
            except Exception:  # a bug must not stop the feature store for every other user
                joiner.counts["failed"] += 1
                log.exception("profile update failed")

    @app.agent(by_product)
    async def popularity_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                profiler.count_product(event.value)
            except Exception:  # a bug must not stop popularity for every other product
                joiner.counts["failed"] += 1
                log.exception("popularity update failed")

    @app.timer(settings.tick_seconds)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def ticker() -> None:
        body = encode(Tick(ts=time.time()))
        for p in range(settings.partitions):
            await decisions.send(value=body, partition=p)

    @app.timer(2.0)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def stats() -> None:
        joiner.write_stats(len(app.consumer.assignment()))
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager only
        if recovery.crashed:  # Faust would wait forever; exit so the supervisor restarts us
            log.critical("table recovery crashed (%r): exiting", recovery.crash_reason)
            os._exit(70)

    return app


def run(settings: Settings) -> None:
    """Prepare topics, recover from a broker that lost its log, and run the worker."""
    import asyncio

    broker = asyncio.run(prepare(settings))
    epoch = broker.epoch
    epoch_file = settings.data_dir / "worker.epoch"
    before = remembered_epoch(epoch_file)
    if before is not None and before != epoch:
        log.warning(
            "the broker lost its log (epoch %s -> %s): dropping the worker's table state, "
            "which referred to the lost log",
            before,
            epoch,
        )
        shutil.rmtree(settings.data_dir / "worker", ignore_errors=True)
    remember_epoch(epoch_file, epoch)
    if drop_join_after_unclean_stop(settings.data_dir):
        log.warning("the worker did not stop cleanly: its join table is rebuilt from the changelog")
    # On Tansu too: recovery reads to the real end of a changelog (`exact_recovery_highwaters`),
    # so a table that remembers more than the changelog holds means a lost log.
    check = settings.consistency_check == "on"
    app = create_app(settings, consistency_check=check)
    worker = faust.Worker(app, loglevel="info", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:  # Faust always ends so; 0 after SIGTERM, once it stopped
        if stop.code in (0, None):  # its tables and flushed their changelogs
            (settings.data_dir / CLEAN_STOP).touch()
        raise


CLEAN_STOP = "worker.clean"  # written when the worker stops cleanly; removed at start


def drop_join_after_unclean_stop(data_dir: Path) -> bool:
    """Delete the join table's local RocksDB unless the worker last stopped cleanly; True
    if it did. After a SIGKILL the local table is newer than its changelog, and Faust
    replays the changelog from its last acknowledged offset over it: keys whose last
    writes never reached the changelog keep their newer values, the others go back to
    older ones, and the table mixes two moments (found with scripts/chaos.py: a join entry
    back to "reward only" while the decision's stored position was past the decision;
    1 of 8,880 decisions never learned in 8 kills). The changelog alone is a consistent
    prefix, entries before their positions; what came after it is joined again from the
    positions, and the model replica's ledger drops the examples emitted twice."""
    marker = data_dir / CLEAN_STOP
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    tables = sorted((data_dir / "worker" / "v1" / "tables").glob("join-*.db"))
    if clean or not tables:
        return False
    for table in tables:
        shutil.rmtree(table)
    return True
