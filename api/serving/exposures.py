"""Per-user, per-catalog exposures (what each user was shown, when), for frequency caps.

Counted by the serving process at decision time, from the decisions it actually shows,
so a cap holds exactly for the next request: one local RocksDB read per decision, one
write per decision with a user id. The decisions other serving processes log arrive
through the decisions log (api.serving.peers) a few milliseconds later, so with several API
processes a cap is exact for a user routed to one of them (sticky) and otherwise exact
up to that lag. An erasure leaves a tombstone: exposures from before it that arrive
late from the log are not counted again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import msgspec

from engine.caps import MAX_CAP_LIMIT, MAX_CAP_WINDOW_SECONDS
from streams.kv import KV

HORIZON_SECONDS = MAX_CAP_WINDOW_SECONDS  # the longest window a cap may have
PER_ACTION = MAX_CAP_LIMIT  # the largest limit a cap may have

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(dict[str, list[float]])


class Exposures:
    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def of(self, catalog: str, user_id: str) -> dict[str, list[float]]:
        raw = self.kv.get(_key(catalog, user_id))
        return _decoder.decode(raw) if raw else {}

    def record(
        self,
        catalog: str,
        user_id: str,
        action_ids: Iterable[str],
        now: float,
        known: dict[str, list[float]] | None = None,
    ) -> None:
        seen = self.of(catalog, user_id) if known is None else known
        oldest = now - HORIZON_SECONDS
        fresh = {a: [t for t in ts if t > oldest] for a, ts in seen.items()}
        for action_id in action_ids:
            fresh.setdefault(action_id, []).append(now)
        fresh = {a: ts[-PER_ACTION:] for a, ts in fresh.items() if ts}
        self.kv.put(_key(catalog, user_id), _encoder.encode(fresh))

    def record_seen(self, catalog: str, user_id: str, action_id: str, ts: float) -> bool:
        """Count an exposure another process made, once however often it arrives, and
        not at all if the user was erased after it; whether it was counted."""
        if ts <= self.erased_at(user_id):
            return False
        seen = self.of(catalog, user_id)
        times = seen.setdefault(action_id, [])
        if ts in times:
            return False
        bisect.insort(times, ts)  # the log brings them out of order, across partitions
        oldest = max(max(t) for t in seen.values() if t) - HORIZON_SECONDS
        fresh = {a: [t for t in ts_ if t > oldest][-PER_ACTION:] for a, ts_ in seen.items()}
        self.kv.put(_key(catalog, user_id), _encoder.encode({a: t for a, t in fresh.items() if t}))
        return True

    def erase(self, user_id: str, at: float) -> int:
        """Forget every exposure of this user from before `at`, in every catalog, and
        remember when; how many records went."""
        at = max(at, self.erased_at(user_id))
        puts, deletes = {_tombstone(user_id): _encoder.encode(at)}, []
        for key, raw in self.kv.scan(_user_prefix(user_id)):
            after = {a: [t for t in ts if t > at] for a, ts in _decoder.decode(raw).items()}
            after = {a: ts for a, ts in after.items() if ts}  # made after the erasure
            if after:
                puts[key] = _encoder.encode(after)
            else:
                deletes.append(key)
        self.kv.write(puts, deletes)
        return len(deletes)

    def erased_at(self, user_id: str) -> float:
        raw = self.kv.get(_tombstone(user_id))
        return float(msgspec.msgpack.decode(raw, type=float)) if raw else float("-inf")


def _user_prefix(user_id: str) -> bytes:
    return b"u:" + user_id.encode() + b"\x00"


def _tombstone(user_id: str) -> bytes:
    return b"e:" + user_id.encode()


def _key(catalog: str, user_id: str) -> bytes:
    return _user_prefix(user_id) + catalog.encode()
