"""agents.guard: a message that raises is logged and counted, and the agent goes on."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from agents.guard import FAILED, guard, per_message


class FakeStream:
    """What an agent reads of a Faust stream: events with a message and a value."""

    def __init__(self, values: list[bytes], topic: str = "t-events", partition: int = 2) -> None:
        self.events_ = [
            SimpleNamespace(
                value=v, message=SimpleNamespace(topic=topic, partition=partition, offset=10 + i)
            )
            for i, v in enumerate(values)
        ]

    async def events(self) -> AsyncIterator[Any]:
        for event in self.events_:
            yield event


def test_a_failing_message_is_logged_counted_and_the_rest_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts: Counter[str] = Counter()
    handled: list[bytes] = []

    @per_message("stock", counts)
    async def agent(event: Any) -> None:
        if event.value == b"poison":
            raise ValueError("a bug")
        handled.append(event.value)

    with caplog.at_level(logging.ERROR, logger="agents.guard"):
        asyncio.run(agent(FakeStream([b"a", b"poison", b"b", b"poison", b"c"])))
    assert handled == [b"a", b"b", b"c"]
    assert counts == Counter({FAILED: 2})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "stock: the message at t-events[2] offset 11 failed; going on with the next",
        "stock: the message at t-events[2] offset 13 failed; going on with the next",
    ]
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_the_agent_keeps_the_handlers_name() -> None:
    """Faust names an agent after its function: the wrapper must not rename it."""

    @per_message("join", Counter())
    async def join_agent(event: Any) -> None:
        return None

    assert join_agent.__name__ == "join_agent"
    assert join_agent.__qualname__.endswith("join_agent")


def test_cancellation_is_not_swallowed() -> None:
    counts: Counter[str] = Counter()
    with pytest.raises(asyncio.CancelledError), guard("join", "at t[0] offset 0", counts):
        raise asyncio.CancelledError
    assert not counts


def test_a_guard_around_a_good_message_counts_nothing() -> None:
    counts: Counter[str] = Counter()
    with guard("join", "at t[0] offset 0", counts):
        counts["seen"] += 1
    assert counts == Counter({"seen": 1})
