"""`event_id` as an idempotency key: one event id, one decision.

For every decision this process made or followed from the decisions log it keeps the
request's fingerprint (as long as rewards are taken: the decisions index's lifetime) and
its answer (until the reward window closes, then purged: answers are large). A repeat
with the same fingerprint replays the answer; with another one it is refused (409); after
the window it is refused either way, since the decision has been learned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgspec

from streams.kv import KV

_FINGERPRINT = b"f:"  # event id -> (fingerprint, decided ts, window end)
_ANSWER = b"a:"  # event id -> the answer's JSON
_EXPIRY = b"x:"  # window end (ms, big-endian) + event id -> b"" (what to purge when)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[bytes, float, float])


@dataclass(frozen=True, slots=True)
class Seen:
    fingerprint: bytes
    decided: float
    until: float  # the end of the reward window
    answer: bytes | None  # None once purged, or when another process answered


class Replays:
    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, event_id: str) -> Seen | None:
        raw = self.kv.get(_FINGERPRINT + event_id.encode())
        if raw is None:
            return None
        fingerprint, decided, until = _decoder.decode(raw)
        return Seen(fingerprint, decided, until, self.kv.get(_ANSWER + event_id.encode()))

    def put(
        self, event_id: str, fingerprint: bytes, decided: float, until: float, answer: bytes | None
    ) -> None:
        key = event_id.encode()
        puts = {_FINGERPRINT + key: _encoder.encode((fingerprint, decided, until))}
        if answer is not None:
            puts[_ANSWER + key] = answer
            puts[_expiry_key(until, key)] = b""
        self.kv.write(puts)

    def purge(self, now: float, most: int = 10_000) -> int:
        """Drop the answers whose reward window closed before `now`; how many went."""
        deletes: list[bytes] = []
        limit = _expiry_key(now, b"")
        for key, _ in self.kv.scan(_EXPIRY):
            if key >= limit or len(deletes) >= 2 * most:
                break
            deletes += [key, _ANSWER + key[len(_EXPIRY) + 8 :]]
        if deletes:
            self.kv.write({}, deletes)
        return len(deletes) // 2


def _expiry_key(until: float, event_id: bytes) -> bytes:
    return _EXPIRY + struct.pack(">Q", max(0, int(until * 1000))) + event_id
