"""The join agent's logic: decisions, rewards and activations into training examples.

Decisions and rewards are keyed by event id on topics with the same partition count, so
one agent reading both sees every message of an event id on one partition, in order.
Join state lives in a RocksDB-backed Faust table (changelogged); the transitions are the
pure functions of `engine.join`. Expiry runs inside the stream: a timer sends a Tick to
every partition of both topics, and the agent closes the windows of a partition that are
due by the *earlier* of the two topics' latest ticks there. Ticks are in order with
their own topic's messages only: one agent reading two topics gets no order between
them, and when it read the rewards partition behind the decisions one (a loaded
machine), windows closed on the decisions' tick before rewards sent inside them had
been read, and those rewards were counted late and never learned (2.5-25% of clicks in
`loopwise tour` runs). A rewards tick at T means every reward the API had written to
that partition before T has been read.

A training example is acknowledged by the broker *before* the table records the entry
as emitted, so a crash can repeat an emission (the model replica's ledger drops the
repeat) but never lose one.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agents.clockgap import ClockGap
from agents.guard import guard, place
from engine import join
from engine.behaviour import UserErased
from engine.records import DecisionLogged, EventActivated, RewardObserved, Tick, encode
from streams import messages
from streams.broker import RangeReader, partitions_for
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
        self,
        settings: Settings,
        table: Any,
        training: Any,
        max_batch: int = MAX_BATCH,
        sources: tuple[str, ...] | None = None,
    ) -> None:
        """`sources`: the topics whose ticks gate closing (by default decisions and
        rewards)."""
        self.settings = settings
        self.config = settings.join
        self.table = table
        self.training = training
        self.max_batch = max_batch
        self.reader = RangeReader(settings.bootstrap)
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.heaps: dict[int, list[tuple[float, bytes]]] = {}
        self.retry: dict[int, list[tuple[float, bytes]]] = {}  # unacknowledged: next tick
        # (topic, partition) -> the latest tick read there; a partition's windows close by
        # the earlier of its two topics' (module docstring)
        self.ticks: dict[tuple[str, int], float] = {}
        self.sources = sources or (settings.topic("decisions"), settings.topic("rewards"))
        self.counts: Counter[str] = Counter()
        self.assigned: frozenset[int] | None = None
        self.clock_gap = ClockGap()  # the API's clocks against this worker's (metrics)

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
        topic = position[0] if position is not None else None
        for i, raw in enumerate(raws):
            with guard("join", _where(i, len(raws), partition, position), self.counts):
                await self.dispatch(batch, raw, partition, topic)
        if position is not None:
            batch.writes[position_key(position[0])] = b"%d" % position[1]
        await self.flush(batch, partition)

    async def dispatch(
        self, batch: Batch, raw: bytes, partition: int, topic: str | None = None
    ) -> None:
        """Join one message; `topic` is where it was read (None: a tick of every source)."""
        message = messages.read(raw, self.counts, f"on partition {partition}")
        if message is None:
            return
        if isinstance(message, Tick):
            now = self.watermark(partition, message.ts, topic)
            if now is not None:
                await self.tick(batch, now, partition)
        elif (
            isinstance(message, DecisionLogged | RewardObserved | EventActivated)
            and message.event_id[:1] == "\x00"
        ):
            self.counts["poisoned"] += 1  # not from the API (it refuses control characters)
        elif isinstance(message, DecisionLogged):
            self.clock_gap.observe(message.ts, time.time())
            eid = message.event_id.encode()
            entry = await self.load(batch, eid, partition)
            self.stage(batch, eid, join.on_decision(entry, message, self.config), partition)
        elif isinstance(message, RewardObserved):
            self.clock_gap.observe(message.ts, time.time())
            eid = message.event_id.encode()
            entry = await self.load(batch, eid, partition)
            self.stage(batch, eid, join.on_reward(entry, message, self.config), partition)
        elif isinstance(message, EventActivated):
            eid = message.event_id.encode()
            entry = await self.load(batch, eid, partition)
            self.stage(batch, eid, join.on_activation(entry, message, self.config), partition)
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
            log.error("dropped an unreadable join entry for %r", eid, extra=_about(eid))
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
                log.exception("could not send the training example for %r", eid, extra=_about(eid))
        results = await asyncio.gather(*acks.values(), return_exceptions=True)
        for eid, result in zip(acks, results, strict=True):
            if isinstance(result, BaseException):
                failed.add(eid)
                log.error(
                    "the broker did not acknowledge the example for %r: %r",
                    eid,
                    result,
                    extra=_about(eid),
                )
        for eid, outcome in emits.items():
            if eid not in failed:
                self.counts.update(outcome.counts)
        if failed:
            self.counts["emit_failed"] += len(failed)
        return failed

    def watermark(self, partition: int, ts: float, topic: str | None) -> float | None:
        """Record a tick read on `topic`; the time up to which `partition`'s windows may
        close: the earlier of its topics' latest ticks (None until each has one). A tick
        of no topic (messages handed over without their source) is taken as it is."""
        if topic is None:
            return ts
        # the latest read, not the largest: a tick from a worker whose clock runs behind
        # holds windows open a little longer, never closes one early
        self.ticks[(topic, partition)] = ts
        seen = [self.ticks.get((source, partition)) for source in self.sources]
        if any(t is None for t in seen):
            return None
        return min(t for t in seen if t is not None)

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

    def pending(self) -> int:
        """Decisions whose reward windows are open (in this worker's partitions)."""
        return sum(len(h) for h in self.heaps.values())

    def write_stats(self, assigned: int, metrics_port: int | None = None) -> None:
        """Counters, open entries, how many partitions this worker consumes (0 until the
        group has assigned it any: not yet ready) and where its /metrics is served."""
        body = msgspec.json.encode(
            {
                "counts": dict(self.counts),
                "pending": self.pending(),
                "assigned": assigned,
                "metrics_port": metrics_port,
                "ts": time.time(),
            }
        )
        write_atomic(self.settings.data_dir / "worker-stats.json", body)


def _where(i: int, n: int, partition: int, position: tuple[str, int] | None) -> str:
    """Which message of a batch failed: the admitted one is last, at the offset before
    `position`; those before it were read from the broker or came with a tick."""
    if position is not None and i == n - 1:
        return place(position[0], partition, position[1] - 1)
    return f"{i + 1} of {n} on partition {partition}"


def _about(eid: bytes) -> dict[str, str]:
    """The structured log fields of a message about one decision (streams.logs)."""
    return {"event_id": eid.decode(errors="replace")}
