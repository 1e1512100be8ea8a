"""The learned-event ledger: which training examples a model already holds.

Kafka and Faust deliver at least once, so a training example can arrive twice; the
ledger turns that into exactly-once learning. It is bounded: duplicates only arrive
close together in the log (a re-emission after a crash), so the newest `capacity` keys
are enough. It is saved inside the checkpoint, next to the model it describes.

Saving it must not stall the serving loop. JSON-encoding a full ledger in one call holds
the GIL long enough to stall decisions, every checkpoint, from whichever thread does it
(docs/decisions/model-replica.md); so keys are encoded once, in sealed chunks of `CHUNK`,
and a checkpoint only joins the chunks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

import msgspec

from engine.errors import CorruptCheckpoint, InvalidInput

CHUNK = 4096
_decode_chunk = msgspec.json.Decoder(list[str]).decode


class Ledger:
    def __init__(
        self, capacity: int = 200_000, keys: Iterable[str] = (), chunk: int = CHUNK
    ) -> None:
        if capacity <= 0:
            raise InvalidInput(f"ledger capacity must be > 0, got {capacity}", field="capacity")
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._sealed: deque[tuple[bytes, int]] = deque()  # (JSON array, its key count)
        self._open: list[str] = []
        self._encoded = 0  # keys in the sealed chunks and the open one
        self.chunk = chunk
        for key in keys:
            self.add(key)

    def add(self, key: str) -> bool:
        """Record `key`; False when it was already there (the caller must not learn)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        self._open.append(key)
        self._encoded += 1
        if len(self._open) >= self.chunk:
            self._sealed.append((msgspec.json.encode(self._open), len(self._open)))
            self._open = []
        # a sealed chunk goes once every key in it has been forgotten (keys leave in order)
        while self._sealed and self._encoded - self._sealed[0][1] >= len(self._keys):
            self._encoded -= self._sealed.popleft()[1]
        return True

    def encoded(self) -> bytes:
        """The keys as lines of JSON arrays, oldest first (maybe a few already forgotten:
        `decode` into a ledger of the same capacity forgets them again)."""
        return b"\n".join([*(chunk for chunk, _ in self._sealed), msgspec.json.encode(self._open)])

    @staticmethod
    def decode(raw: bytes) -> list[str]:
        try:
            return [key for line in raw.split(b"\n") for key in _decode_chunk(line)]
        except msgspec.DecodeError as exc:
            raise CorruptCheckpoint(f"the checkpoint's ledger is unreadable: {exc}") from exc

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)
