"""The learned-event ledger: which training examples a model already holds.

Kafka and Faust deliver at least once, so a training example can arrive twice; the
ledger turns that into exactly-once learning. It is bounded: duplicates only arrive
close together in the log (a re-emission after a crash), so the newest `capacity` keys
are enough. It is saved inside the checkpoint, next to the model it describes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from engine.errors import InvalidInput


class Ledger:
    def __init__(self, capacity: int = 200_000, keys: Iterable[str] = ()) -> None:
        if capacity <= 0:
            raise InvalidInput(f"ledger capacity must be > 0, got {capacity}", field="capacity")
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
        for key in keys:
            self.add(key)

    def add(self, key: str) -> bool:
        """Record `key`; False when it was already there (the caller must not learn)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)
