"""One poisoned message never stops an agent: every message is handled under a guard.

A Faust agent that raises stops, and with it every later message of its partitions. An
exception from one message is logged with the stream's name and the message's place
(topic, partition, offset), counted as `failed` (`loopwise_join_failed_total`), and the
agent goes on with the next message.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from faust import EventT, StreamT

log = logging.getLogger(__name__)

FAILED = "failed"  # the counter of messages that raised

Handler = Callable[[EventT[bytes]], Awaitable[None]]
Agent = Callable[[StreamT[bytes]], Coroutine[Any, Any, None]]


@contextmanager
def guard(name: str, where: str, counts: Counter[str]) -> Iterator[None]:
    """Run the block for one message; an exception is logged (naming `name` and `where`),
    counted and swallowed."""
    try:
        yield
    except Exception:  # a bug must not stop the stream for every other message
        counts[FAILED] += 1
        log.exception("%s: the message %s failed; going on with the next", name, where)


def place(topic: str, partition: int, offset: int) -> str:
    return f"at {topic}[{partition}] offset {offset}"


def per_message(name: str, counts: Counter[str]) -> Callable[[Handler], Agent]:
    """Turn a handler of one event into a Faust agent that handles every event of its
    stream under a `guard`, one at a time: the event stays current while the handler
    writes a table, so its changelog goes to the event's partition (Faust's `stream.take`
    runs the stream in another task, where table writes fail)."""

    def decorate(handle: Handler) -> Agent:
        @functools.wraps(handle)
        async def agent(stream: StreamT[bytes]) -> None:
            async for event in stream.events():
                m = event.message
                with guard(name, place(m.topic, m.partition, m.offset), counts):
                    await handle(event)

        return agent

    return decorate
