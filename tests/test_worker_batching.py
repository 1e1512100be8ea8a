"""The join agent's batching: emissions are acknowledged before the table says "emitted".

The table and the training topic are in-memory fakes whose writes and acknowledgements
are logged in one sequence; the real broker and Faust are covered by test_stack.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.joiner import POSITION, Joiner, position_key
from agents.recovery import CLEAN_STOP, drop_join_after_unclean_stop
from engine import join
from engine.records import (
    DecisionLogged,
    RewardObserved,
    Tick,
    TrainingExample,
    decode,
    encode,
)
from streams.settings import Settings
from tests import test_join

SETTINGS = Settings(partitions=1, orphan_seconds=100.0, retention_seconds=5.0)
CONFIG = SETTINGS.join
DECIDED, WAIT = 1000.0, 10.0
END = DECIDED + WAIT

Log = list[tuple[str, Any]]


class TP(NamedTuple):
    topic: str
    partition: int


class FakeTable(dict[bytes, bytes]):
    """A Faust table's mapping interface; every write is appended to the shared log."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log
        assignment = {TP(SETTINGS.topic("decisions"), 0)}
        self.app = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: assignment))

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key.startswith(POSITION):
            self.log.append(("position", (key, int(value))))
        else:
            self.log.append(("set", (key, join.decode_entry(value))))
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.log.append(("del", key))
        super().__delitem__(key)

    def entries(self) -> dict[bytes, join.JoinEntry]:
        return {k: join.decode_entry(v) for k, v in self.items() if not k.startswith(POSITION)}


class FakeTopic:
    """`send` returns the acknowledgement future: resolved at once, or by the test."""

    def __init__(self, log: Log, auto_ack: bool = True) -> None:
        self.log = log
        self.auto_ack = auto_ack
        self.sent: list[TrainingExample] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        example = decode(value)
        assert isinstance(example, TrainingExample) and key == example.catalog.encode()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(example)
        self.acks.append(ack)
        if self.auto_ack:
            self.ack(len(self.acks) - 1)
        return ack

    def ack(self, i: int, error: Exception | None = None) -> None:
        self.log.append(("ack", self.sent[i].event_id))
        if error is None:
            self.acks[i].set_result(None)
        else:
            self.acks[i].set_exception(error)


def make(auto_ack: bool = True, max_batch: int = 500) -> tuple[Joiner, FakeTable, FakeTopic]:
    log: Log = []
    table, topic = FakeTable(log), FakeTopic(log, auto_ack)
    return Joiner(SETTINGS, table, topic, max_batch=max_batch), table, topic


def decision(eid: str, ts: float = DECIDED, aggregation: str = "earliest") -> DecisionLogged:
    return test_join.decision(aggregation, default=-1.0, eid=eid, ts=ts)


def reward(eid: str, rid: str, value: float, ts: float) -> RewardObserved:
    return RewardObserved(event_id=eid, reward_id=rid, value=value, ts=ts)


def tick(ts: float) -> bytes:
    return encode(Tick(ts=ts))


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def emitted_markers(log: Log) -> Iterator[int]:
    for i, (kind, item) in enumerate(log):
        if kind == "set" and item[1].emitted:
            yield i


def test_no_entry_is_marked_emitted_before_every_ack_of_the_batch() -> None:
    async def scenario() -> None:
        joiner, table, topic = make(auto_ack=False)
        eids = [f"e{i}" for i in range(5)]
        await joiner.handle([tick(DECIDED - 1)], 0)  # the first tick rebuilds the heaps
        for e in eids:  # two messages each: two heap items per entry
            await joiner.handle([encode(decision(e)), encode(reward(e, "r", 1.0, END))], 0)
        task = asyncio.create_task(joiner.handle([tick(END + 1)], 0))
        await until(lambda: len(topic.acks) == len(eids))  # all sent before any ack
        for i in range(len(eids) - 1):
            topic.ack(i)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        assert not any(e.emitted for e in table.entries().values())
        topic.ack(len(eids) - 1)
        await asyncio.wait_for(task, 5)
        assert all(table.entries()[e.encode()].emitted for e in eids)
        last_ack = max(i for i, (kind, _) in enumerate(table.log) if kind == "ack")
        assert min(emitted_markers(table.log)) > last_ack
        assert joiner.counts["emitted"] == len(eids)

    asyncio.run(scenario())


def test_a_window_closes_only_once_both_topics_ticks_have_passed_it() -> None:
    """One agent reads decisions and rewards with no order between the two topics: when
    the rewards partition is read behind, a decisions tick past the deadline must not
    close the window before the rewards sent inside it are read."""

    async def scenario() -> None:
        joiner, _, topic = make()
        decisions, rewards = SETTINGS.topic("decisions"), SETTINGS.topic("rewards")
        await joiner.handle([encode(decision("e0"))], 0, position=(decisions, 1))
        await joiner.handle([tick(END + 1)], 0, position=(decisions, 2))
        assert topic.sent == []  # the rewards topic has not been read that far
        await joiner.handle([encode(reward("e0", "r", 1.0, END - 1))], 0, position=(rewards, 1))
        await joiner.handle([tick(END - 5)], 0, position=(rewards, 2))
        assert topic.sent == []  # the earlier of the two ticks is before the deadline
        await joiner.handle([tick(END + 1)], 0, position=(rewards, 3))
        assert [(e.event_id, e.reward, e.reason) for e in topic.sent] == [("e0", 1.0, "reward")]
        assert joiner.counts["late_rewards"] == 0

    asyncio.run(scenario())


def test_an_unacknowledged_example_is_not_marked_and_is_sent_again() -> None:
    async def scenario() -> None:
        joiner, table, topic = make(auto_ack=False)
        await joiner.handle([encode(decision(e)) for e in ("e0", "e1", "e2")], 0)
        task = asyncio.create_task(joiner.handle([tick(END + 1)], 0))
        await until(lambda: len(topic.acks) == 3)
        topic.ack(0)
        topic.ack(1, ConnectionError("broker went away"))
        topic.ack(2)
        await asyncio.wait_for(task, 5)
        entries = table.entries()
        assert entries[b"e0"].emitted and entries[b"e2"].emitted
        assert not entries[b"e1"].emitted
        assert joiner.counts["emitted"] == 2 and joiner.counts["emit_failed"] == 1

        task = asyncio.create_task(joiner.handle([tick(END + 1.1)], 0))
        await until(lambda: len(topic.acks) == 4)
        assert topic.sent[3].event_id == "e1"
        topic.ack(3)
        await asyncio.wait_for(task, 5)
        assert table.entries()[b"e1"].emitted
        assert joiner.counts["emitted"] == 3

    asyncio.run(scenario())


def test_a_failed_emission_keeps_the_batchs_earlier_changes_of_its_entry() -> None:
    async def scenario() -> None:
        joiner, table, topic = make(auto_ack=False)
        await joiner.handle([tick(DECIDED - 1)], 0)  # the first tick flushes to rebuild
        batch = [encode(decision("e")), encode(reward("e", "r", 2.5, DECIDED + 1))]
        task = asyncio.create_task(joiner.handle([*batch, tick(END + 1)], 0))
        await until(lambda: len(topic.acks) == 1)
        topic.ack(0, ConnectionError("broker went away"))
        await asyncio.wait_for(task, 5)
        assert len(topic.sent) == 1, "sent again at the next tick, not in a loop"
        entry = table.entries()[b"e"]
        assert not entry.emitted and entry.rewards == [join.HeldReward(2.5, DECIDED + 1)]

        topic.auto_ack = True
        await joiner.handle([tick(END + 2)], 0)
        assert [x.reward for x in topic.sent] == [2.5, 2.5]
        assert table.entries()[b"e"].emitted

    asyncio.run(scenario())


def test_poisoned_and_failing_messages_do_not_stop_the_rest_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_decision = join.on_decision

    def buggy(entry: Any, message: DecisionLogged, config: join.JoinConfig) -> join.Outcome:
        if message.event_id == "bug":
            raise RuntimeError("a bug")
        return on_decision(entry, message, config)

    monkeypatch.setattr(join, "on_decision", buggy)
    joiner, table, topic = make()
    raws = [b"not a message", encode(decision("bug")), encode(decision("ok")), tick(END + 1)]
    asyncio.run(joiner.handle(raws, 0))
    assert joiner.counts["poisoned"] == 1 and joiner.counts["failed"] == 1
    assert list(table.entries()) == [b"ok"] and table.entries()[b"ok"].emitted
    assert [x.event_id for x in topic.sent] == ["ok"]


def test_a_batch_larger_than_the_bound_is_flushed_in_bounded_chunks() -> None:
    async def scenario() -> None:
        joiner, table, topic = make(auto_ack=False, max_batch=2)
        await joiner.handle([encode(decision(f"e{i}")) for i in range(5)], 0)
        task = asyncio.create_task(joiner.handle([tick(END + 1)], 0))
        await until(lambda: len(topic.acks) == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(topic.acks) == 2, "the next chunk waits for this one's acks"
        for i in range(5):
            await until(lambda: len(topic.acks) > i)  # noqa: B023  # awaited at once
            topic.ack(i)
        await asyncio.wait_for(task, 5)
        assert all(e.emitted for e in table.entries().values())

    asyncio.run(scenario())


# -- batch == one by one == the engine's transitions applied in order --------------------

EIDS = ["a", "b", "c"]
TS = st.floats(min_value=DECIDED - 5, max_value=END + 3 * CONFIG.retention_seconds)
messages_strategy = st.lists(
    st.one_of(
        st.builds(
            decision,
            st.sampled_from(EIDS),
            st.sampled_from([DECIDED, DECIDED + 3]),
            st.sampled_from(["earliest", "sum"]),
        ),
        st.builds(
            reward,
            st.sampled_from(EIDS),
            st.sampled_from(["r1", "r2", "r3"]),
            st.floats(min_value=-5, max_value=5, allow_nan=False),
            TS,
        ),
        st.builds(Tick, ts=TS),
    ),
    max_size=30,
)


def reference(
    messages: list[DecisionLogged | RewardObserved | Tick],
) -> tuple[dict[bytes, join.JoinEntry], list[TrainingExample], Counter[str]]:
    """engine.join applied one message at a time; a tick closes whatever is due."""
    entries: dict[str, join.JoinEntry] = {}
    emitted: list[TrainingExample] = []
    counts: Counter[str] = Counter()

    def apply(eid: str, out: join.Outcome) -> None:
        counts.update(out.counts)
        if out.emit is not None:
            emitted.append(out.emit)
        if out.entry is None:
            entries.pop(eid, None)
        else:
            entries[eid] = out.entry

    for m in messages:
        if isinstance(m, DecisionLogged):
            apply(m.event_id, join.on_decision(entries.get(m.event_id), m, CONFIG))
        elif isinstance(m, RewardObserved):
            apply(m.event_id, join.on_reward(entries.get(m.event_id), m, CONFIG))
        else:
            while due := [e for e, x in entries.items() if join.due(x, CONFIG) <= m.ts]:
                for eid in due:
                    apply(eid, join.on_tick(entries[eid], m.ts, CONFIG))
    return {k.encode(): v for k, v in entries.items()}, emitted, counts


def by_event(examples: list[TrainingExample]) -> list[TrainingExample]:
    return sorted(examples, key=lambda x: (x.event_id, x.emitted_ts))


@settings(max_examples=300, deadline=None)
@given(messages=messages_strategy, max_batch=st.sampled_from([1, 2, 500]))
def test_a_batch_ends_where_one_by_one_processing_and_the_engine_end(
    messages: list[DecisionLogged | RewardObserved | Tick], max_batch: int
) -> None:
    raws = [encode(m) for m in messages]
    batched, batched_table, batched_topic = make(max_batch=max_batch)
    single, single_table, single_topic = make()

    async def scenario() -> None:
        await batched.handle(raws, 0)
        for raw in raws:
            await single.handle([raw], 0)

    asyncio.run(scenario())
    entries, emitted, counts = reference(messages)
    assert dict(batched_table) == dict(single_table)
    assert batched_table.entries() == entries
    assert batched_topic.sent == single_topic.sent
    assert by_event(batched_topic.sent) == by_event(emitted)
    assert batched.counts == single.counts == counts


class LogReader:
    """One partition's log, read back by offset: the broker's part in `Joiner.admit`."""

    def __init__(self, raws: list[bytes]) -> None:
        self.raws = raws
        self.reads: list[tuple[int, int]] = []

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[bytes]:
        assert (topic, partition) == (TOPIC, 0)
        self.reads.append((start, end))
        return self.raws[start:end]


TOPIC = SETTINGS.topic("decisions")

# How a faulty consumer delivers a log: runs that each start anywhere (a restart from a
# stale or a too-new committed offset) except the first (a new group reads from the start),
# go forward in steps (1: in order; more: it skipped some), and may come from a new worker
# on the same table (restart: `True`).
runs_strategy = st.lists(
    st.tuples(st.integers(0, 40), st.lists(st.integers(1, 4), max_size=40), st.booleans()),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(messages=messages_strategy, runs=runs_strategy)
def test_whatever_the_consumer_delivers_each_message_is_joined_once_in_log_order(
    messages: list[DecisionLogged | RewardObserved | Tick],
    runs: list[tuple[int, list[int], bool]],
) -> None:
    raws = [encode(m) for m in messages]
    log: Log = []
    table, topic, reader = FakeTable(log), FakeTopic(log), LogReader(raws)
    workers: list[Joiner] = []

    def worker() -> Joiner:
        workers.append(Joiner(SETTINGS, table, topic, sources=(TOPIC,)))  # one topic
        workers[-1].reader = reader  # type: ignore[assignment]  # the log, not a broker
        return workers[-1]

    async def scenario() -> None:
        joiner = worker()
        for i, (start, steps, restart) in enumerate(runs):
            if restart:
                joiner = worker()
            offset = start if i else 0
            for step in [0, *steps]:
                offset += step
                if offset >= len(raws):
                    break
                await joiner.admit(TOPIC, 0, offset, raws[offset])
        if raws:  # in the end the consumer reaches the last message
            await joiner.admit(TOPIC, 0, len(raws) - 1, raws[-1])

    asyncio.run(scenario())
    entries, emitted, counts = reference(messages)
    assert table.entries() == entries
    assert by_event(topic.sent) == by_event(emitted)
    joined = sum((w.counts for w in workers), Counter())
    for kind in ("replayed", "skipped_by_consumer"):
        joined.pop(kind, None)
    assert joined == counts
    if raws:
        assert int(table[position_key(TOPIC)]) == len(raws)


def test_a_skipped_range_is_read_from_the_log_and_a_replay_is_passed_over() -> None:
    raws = [encode(decision(f"e{i}")) for i in range(6)]
    joiner, table, _ = make()
    reader = LogReader(raws)
    joiner.reader = reader  # type: ignore[assignment]  # the log, not a broker

    async def scenario() -> None:
        for offset in (0, 1, 4, 2, 5):
            await joiner.admit(TOPIC, 0, offset, raws[offset])

    asyncio.run(scenario())
    assert reader.reads == [(2, 4)]
    assert sorted(table.entries()) == [f"e{i}".encode() for i in range(6)]
    assert joiner.counts["skipped_by_consumer"] == 2 and joiner.counts["replayed"] == 1
    assert joiner.counts["decisions"] == 6 and "duplicate_decisions" not in joiner.counts
    # a new worker on the same table resumes from the stored position
    again, _, _ = make()
    again.table = table
    assert again.stored_position(TOPIC) == 6


def test_the_join_table_is_dropped_after_an_unclean_stop_only(tmp_path: Path) -> None:
    tables = tmp_path / "worker" / "v1" / "tables"
    assert not drop_join_after_unclean_stop(tmp_path)  # a first start: nothing to drop
    for name in ("join-0.db", "join-1.db", "profiles-0.db"):
        (tables / name).mkdir(parents=True)
    (tmp_path / CLEAN_STOP).touch()  # the last stop was clean: the local table is kept
    assert not drop_join_after_unclean_stop(tmp_path)
    assert (tables / "join-0.db").exists() and not (tmp_path / CLEAN_STOP).exists()
    assert drop_join_after_unclean_stop(tmp_path)  # no marker: killed
    assert sorted(p.name for p in tables.iterdir()) == ["profiles-0.db"]
