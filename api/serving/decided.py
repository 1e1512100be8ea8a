"""The decisions index: which event ids this process can take rewards for, and until when.

Filled by the decide route for the decisions this process makes and by the peers
follower (api.serving.peers) for those every other serving process logs, so a reward may land on
any process. Entries live as long as rewards are taken (RocksDB's TTL drops them).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from streams.kv import KV

TTL_SECONDS = 8 * 24 * 3600  # longer than any reward window (engine.learning bounds it)

_decoder = msgspec.msgpack.Decoder(tuple[str, float, float])
_encoder = msgspec.msgpack.Encoder()


class Decided(NamedTuple):
    catalog: str
    ts: float
    wait_seconds: float  # the reward window


class DecisionIndex:
    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, event_id: str) -> Decided | None:
        raw = self.kv.get(event_id.encode())
        return Decided(*_decoder.decode(raw)) if raw is not None else None

    def __contains__(self, event_id: str) -> bool:
        return self.kv.get(event_id.encode()) is not None

    def put(self, event_id: str, decided: Decided) -> None:
        self.kv.put(event_id.encode(), _encoder.encode(tuple(decided)))
