"""The feature store's agent logic: fold behaviour events into per-user profiles.

Behaviour events are keyed by user id, so all of a user's events (and its erasure) reach
one partition in order, and the profile table's changelog is written from that partition.
The transitions are `engine.profilefold.observe`; this class only reads and writes the table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import MutableMapping

import msgspec

from engine import profilefold, profiles
from engine.behaviour import BehaviourObserved, UserErased
from streams import messages

log = logging.getLogger(__name__)


class Profiler:
    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        popularity: MutableMapping[bytes, bytes],
        counts: Counter[str],
    ) -> None:
        self.table = table
        self.popularity = popularity
        self.counts = counts

    def handle(self, raw: bytes) -> bytes | None:
        """Fold one message into its user's profile; the product key under which the
        event must also be counted (on the topic keyed by product), if any."""
        message = messages.read(raw, self.counts, "among the behaviour events")
        if isinstance(message, BehaviourObserved):
            key = profiles.key(message.user_id)
            profile = self.load(key)
            if profilefold.duplicate(profile, message):  # a client retry: counted once already
                self.counts["duplicate_behaviour_events"] += 1
                return None
            self.table[key] = profiles.encode_bounded(profilefold.observe(profile, message))
            self.counts["behaviour_events"] += 1
            return message.product.id.encode() if message.product else None
        if isinstance(message, UserErased):
            key = profiles.key(message.user_id)
            if self.table.get(key) is not None:
                del self.table[key]
            self.counts["users_erased"] += 1
        elif message is not None:
            self.counts["unexpected"] += 1
        return None

    def count_product(self, raw: bytes) -> None:
        """Count a product event into the product's popularity (aggregates, not personal:
        erasure leaves them)."""
        message = messages.read(raw, self.counts, "among the behaviour events")
        if isinstance(message, BehaviourObserved) and message.product is not None:
            key = message.product.id.encode()
            stats = self.load(key, self.popularity)
            self.popularity[key] = profiles.encode(profilefold.observe_product(stats, message))
            self.counts["product_events"] += 1
        elif message is not None:
            self.counts["unexpected"] += 1

    def load(
        self, key: bytes, table: MutableMapping[bytes, bytes] | None = None
    ) -> profiles.Profile | None:
        raw = (self.table if table is None else table).get(key)
        if raw is None:
            return None
        try:
            return profiles.decode(raw)
        except msgspec.DecodeError:
            self.counts["corrupt_entries"] += 1
            # not the key: a user's profile is keyed by the user id, which no log holds
            log.error("dropped an unreadable profile of %d bytes", len(raw))
            return None
