"""The decisions index: which event ids this process can take rewards for, and until when.

Filled by the decide route for the decisions this process makes and by the peers
follower (api.serving.peers) for those every other serving process logs, so a reward may land on
any process. Entries live as long as rewards are taken (RocksDB's TTL drops them).

A slate's own event id is not a decision (rewards name a slot), but an activation names
it: the index keeps its slots' event ids beside, under a key no event id can have.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from streams.kv import KV

TTL_SECONDS = 8 * 24 * 3600  # longer than any reward window (engine.learning bounds it)
SLATE = b"\x00slate/"  # + a slate's event id -> its slots' event ids (ids have no NUL)

# entries written before `deferred` have three fields
_decoder = msgspec.msgpack.Decoder(list[str | float | bool])
_encoder = msgspec.msgpack.Encoder()
_slate_decoder = msgspec.msgpack.Decoder(tuple[int, list[str]])


class Decided(NamedTuple):
    catalog: str
    ts: float
    wait_seconds: float  # the reward window
    deferred: bool = False  # learned only once activated


class DecisionIndex:
    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, event_id: str) -> Decided | None:
        raw = self.kv.get(event_id.encode())
        if raw is None:
            return None
        fields = _decoder.decode(raw)
        deferred = len(fields) > 3 and fields[3] is True
        return Decided(str(fields[0]), float(fields[1]), float(fields[2]), deferred)

    def __contains__(self, event_id: str) -> bool:
        return self.kv.get(event_id.encode()) is not None

    def put(self, event_id: str, decided: Decided) -> None:
        self.kv.put(event_id.encode(), _encoder.encode(tuple(decided)))

    def put_slate(self, event_id: str, slots: list[str], size: int | None = None) -> None:
        """The slots' event ids of the slate `event_id` (`size`: how many it has, when
        only some are known yet)."""
        total = len(slots) if size is None else size
        self.kv.put(SLATE + event_id.encode(), _encoder.encode((total, slots)))

    def add_slot(self, event_id: str, slot_event_id: str, size: int, position: int) -> None:
        """One slot of the slate `event_id` (of `size` slots) at its `position`, as the
        log brings them: the slots' partitions arrive in any order, so a slot not known
        yet is an empty id in its place."""
        raw = self.kv.get(SLATE + event_id.encode())
        slots = _slate_decoder.decode(raw)[1] if raw is not None else []
        if slot_event_id in slots or not 0 <= position < max(size, 1):
            return
        slots = [*slots, *[""] * (size - len(slots))]
        slots[position] = slot_event_id
        self.put_slate(event_id, slots, size)

    def slate(self, event_id: str) -> tuple[int, list[str]] | None:
        """(slots the slate has, the slots' event ids known here, in slot order), or None:
        not a slate."""
        raw = self.kv.get(SLATE + event_id.encode())
        if raw is None:
            return None
        size, slots = _slate_decoder.decode(raw)
        return size, [s for s in slots if s]
