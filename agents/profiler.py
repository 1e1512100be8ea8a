"""The feature store's agent logic: fold behaviour events into per-user profiles.

Behaviour events are keyed by user id, so all of a user's events (and its erasure) reach
one partition in order, and the profile table's changelog is written from that partition.
The transitions are `engine.profiles.observe`; this class only reads and writes the table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import MutableMapping

import msgspec

from engine import profiles
from engine.behaviour import BehaviourObserved, UserErased
from engine.errors import EngineError
from engine.records import decode

log = logging.getLogger(__name__)


class Profiler:
    def __init__(self, table: MutableMapping[bytes, bytes], counts: Counter[str]) -> None:
        self.table = table
        self.counts = counts

    def handle(self, raw: bytes) -> None:
        try:
            message = decode(raw)
        except EngineError as exc:
            self.counts["poisoned"] += 1
            log.warning("skipped a poisoned behaviour event: %s", exc)
            return
        if isinstance(message, BehaviourObserved):
            key = profiles.key(message.user_id)
            self.table[key] = profiles.encode(profiles.observe(self.load(key), message))
            self.counts["behaviour_events"] += 1
        elif isinstance(message, UserErased):
            key = profiles.key(message.user_id)
            if self.table.get(key) is not None:
                del self.table[key]
            self.counts["users_erased"] += 1
        else:
            self.counts["unexpected"] += 1

    def load(self, key: bytes) -> profiles.Profile | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        try:
            return profiles.decode(raw)
        except msgspec.DecodeError:
            self.counts["corrupt_entries"] += 1
            log.error("dropped an unreadable profile for %r", key)
            return None
