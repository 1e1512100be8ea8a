"""What the other serving processes decided, followed from the decisions log.

A reward, a repeated request or an erasure may reach any API process, not only the one
that made the decision. Each process therefore follows the decisions topic (every
partition, no consumer group, as api.serving.follow does) and applies what other processes
logged to its own stores: the decisions index (so it takes rewards for them), the
replays (so a repeated event id is replayed or refused alike everywhere) and the
exposures (so frequency caps count what was shown elsewhere). Erasures travel on the
same topic, keyed by the user's pseudonym, and reach every process's exposures.

The records apply a few milliseconds after they were decided; `wait_for` lets a route
wait for the ones it needs, and `live` says whether a miss after waiting is a real miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from api.serving.answers import answer
from api.serving.decided import Decided, DecisionIndex
from api.serving.exposures import Exposures
from api.serving.follow import LogFollower
from api.serving.replays import Replays
from engine.behaviour import UserErased
from engine.errors import InvalidInput
from engine.records import DecisionLogged, decode

log = logging.getLogger(__name__)
LIVE_SECONDS = 2.0  # a follower that fetched this recently and has caught up is live
SLATE_SECONDS = 60.0  # the longest a slate's first slots wait for the rest
_json = msgspec.json.Encoder()


@dataclass
class _Slate:
    first_seen: float
    records: list[DecisionLogged]


class Peers(LogFollower):
    def __init__(
        self,
        topic: str,
        partitions: int,
        origin: str,
        index: DecisionIndex,
        replays: Replays,
        exposures: Exposures,
    ) -> None:
        super().__init__(topic, partitions)
        self.origin = origin
        self.index = index
        self.replays = replays
        self.exposures = exposures
        self.slates: dict[str, _Slate] = {}  # slates whose slots have not all arrived
        self.counts: dict[str, int] = {"followed": 0, "erasures": 0, "poisoned": 0}
        self.fetched = float("-inf")  # monotonic time of the last fetch
        self._progress = asyncio.Event()

    @property
    def live(self) -> bool:
        return self.caught_up and time.monotonic() - self.fetched < LIVE_SECONDS

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.offsets[partition] = offset + 1
        try:
            message = decode(value or b"")
        except InvalidInput as exc:  # a foreign record must not stop the follower
            self.counts["poisoned"] += 1
            log.warning(
                "decisions log: skipped an unreadable record at %d/%d: %s", partition, offset, exc
            )
            return
        if isinstance(message, UserErased):
            self.counts["erasures"] += 1
            self.exposures.erase(message.user_id, message.ts)
        elif isinstance(message, DecisionLogged) and message.origin != self.origin:
            self.counts["followed"] += 1
            self._decided(message)

    def _decided(self, r: DecisionLogged) -> None:
        self.index.put(r.event_id, Decided(r.catalog, r.ts, r.wait_seconds, r.deferred))
        if r.slot is not None:  # an activation names the slate, and reaches every slot
            self.index.add_slot(r.event_id.rsplit("/", 1)[0], r.event_id, r.slots, r.position)
        if r.user_id is not None:
            self.exposures.record_seen(r.catalog, r.user_id, r.eligible[r.chosen], r.ts)
        if not r.request:  # logged before requests carried fingerprints
            return
        if r.slot is None:
            self._replayable(r.event_id, [r])
            return
        base = r.event_id.rsplit("/", 1)[0]
        slate = self.slates.setdefault(base, _Slate(time.monotonic(), []))
        if all(s.position != r.position for s in slate.records):
            slate.records.append(r)
        if len(slate.records) >= r.slots:
            del self.slates[base]
            self._replayable(base, sorted(slate.records, key=lambda s: s.position))

    def _replayable(self, event_id: str, records: list[DecisionLogged]) -> None:
        if self.replays.get(event_id) is not None:
            return  # a second delivery
        first = records[0]
        kept = _json.encode(answer(event_id, records, True)) if first.client_event_id else None
        until = first.ts + first.wait_seconds
        self.replays.put(event_id, bytes.fromhex(first.request), first.ts, until, kept)

    async def after_batch(self) -> None:
        self.fetched = time.monotonic()
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()
        stale = self.fetched - SLATE_SECONDS
        for base in [b for b, s in self.slates.items() if s.first_seen < stale]:
            del self.slates[base]  # a slot that never came: the slate is not replayable

    async def wait_for(self, event_ids: Iterable[str], timeout: float) -> set[str]:
        """Wait up to `timeout` seconds until the index holds every event id; the ones
        it still lacks."""
        missing = {e for e in event_ids if e not in self.index}

        def found() -> bool:
            missing.difference_update([e for e in missing if e in self.index])
            return not missing

        await self.wait(found, timeout)
        return missing

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait up to `timeout` seconds, a batch of the log at a time, until `ready()`."""
        deadline = time.monotonic() + timeout
        while not (done := ready()) and (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                return ready()
        return done
