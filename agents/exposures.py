"""Per-user, per-catalog exposures (what each user was shown, when), for frequency caps.

Counted by the serving process at decision time, from the decisions it actually shows,
so a cap holds exactly for the next request: one local RocksDB read per decision, one
write per decision with a user id. With several API replicas, route a user to one
replica (sticky) for exact caps.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from agents.kv import KV
from engine.constraints import MAX_CAP_LIMIT, MAX_CAP_WINDOW_SECONDS

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

    def erase(self, user_id: str) -> int:
        """Forget every exposure of this user, in every catalog; how many records went."""
        keys = [k for k, _ in self.kv.scan(_user_prefix(user_id))]
        self.kv.write({}, keys)
        return len(keys)


def _user_prefix(user_id: str) -> bytes:
    return b"u:" + user_id.encode() + b"\x00"


def _key(catalog: str, user_id: str) -> bytes:
    return _user_prefix(user_id) + catalog.encode()
