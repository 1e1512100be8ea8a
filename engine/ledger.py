"""The learned-event ledger: which training examples a model already holds.

Kafka and Faust deliver at least once, so a training example can arrive twice; the
ledger turns that into exactly-once learning. It is bounded: duplicates only arrive
close together in the log (a re-emission after a crash), so the newest `capacity` keys
are enough. It is saved inside the checkpoint, next to the model it describes.

Its memory is fixed when it is made, not when it fills: a ledger that grew with every
key it held made a serving process grow for as long as it took to fill (tens of minutes
at an ordinary rate), which no operator can tell from a leak. So it keeps a 64-bit digest
of each key, not the key: a ring of digests in arrival order (which one to forget next)
and an open-addressing hash table of them (is this one known?), both allocated and
written in full at once. Two different ids share a digest with odds of about
capacity / 2**64 per lookup, so a false "already learned" is out of reach in practice.

Saving it must not stall the serving loop: the checkpoint blob is the ring's bytes, one
copy, whatever the count.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable

import msgspec

from engine.errors import CorruptCheckpoint, InvalidInput

MAGIC = b"LWL1"  # a ledger blob of digests; older blobs are lines of JSON arrays of keys
_decode_chunk = msgspec.json.Decoder(list[str]).decode


def digest(key: str) -> int:
    """A stable, nonzero 64-bit digest of `key` (Python's hash() changes per process)."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1  # 0 marks an empty slot


class Ledger:
    def __init__(self, capacity: int = 200_000, keys: Iterable[str | int] = ()) -> None:
        if capacity <= 0:
            raise InvalidInput(f"ledger capacity must be > 0, got {capacity}", field="capacity")
        self.capacity = capacity
        slots = 1 << max(4, (2 * capacity - 1).bit_length())  # at most half full
        self._mask = slots - 1
        self._table = array("Q", bytes(8 * slots))
        self._ring = array("Q", bytes(8 * capacity))  # digests, oldest at `_head` when full
        self._head = 0
        self._size = 0
        for key in keys:
            self.add(key)

    def add(self, key: str | int) -> bool:
        """Record `key` (an id or its digest); False when it was already there (the caller
        must not learn)."""
        h = key if isinstance(key, int) else digest(key)
        i = self._slot(h)
        if self._table[i]:
            return False
        self._table[i] = h
        if self._size == self.capacity:
            self._remove(self._ring[self._head])
        else:
            self._size += 1
        self._ring[self._head] = h
        self._head = (self._head + 1) % self.capacity
        return True

    def _slot(self, h: int) -> int:
        """Where `h` is in the table, or the empty slot where it would go."""
        table, mask = self._table, self._mask
        i = h & mask
        while table[i] and table[i] != h:
            i = (i + 1) & mask
        return i

    def _remove(self, h: int) -> None:
        """Delete `h` (held) from the table by shifting its cluster back (no tombstones)."""
        table, mask = self._table, self._mask
        i = self._slot(h)
        j = i
        while True:
            j = (j + 1) & mask
            if not table[j]:
                break
            home = table[j] & mask
            # the entry at j may move to i unless its home lies cyclically in (i, j]
            if (i < j and not i < home <= j) or (j < i and j < home <= i):
                table[i] = table[j]
                i = j
        table[i] = 0

    def _oldest_first(self) -> tuple[array[int], array[int]]:
        if self._size < self.capacity:
            return self._ring[: self._size], array("Q")
        return self._ring[self._head :], self._ring[: self._head]

    def keys(self) -> list[int]:
        """The digests held, oldest first."""
        older, newer = self._oldest_first()
        return older.tolist() + newer.tolist()

    def encoded(self) -> bytes:
        """The checkpoint blob: the digests, oldest first."""
        older, newer = self._oldest_first()
        return b"".join((MAGIC, older.tobytes(), newer.tobytes()))

    @staticmethod
    def decode(raw: bytes) -> list[int] | list[str]:
        """A blob's digests, or the keys of a blob written before digests."""
        if raw.startswith(MAGIC):
            body = raw[len(MAGIC) :]
            if len(body) % 8:
                raise CorruptCheckpoint("the checkpoint's ledger is cut inside a digest")
            return array("Q", body).tolist()
        try:
            return [key for line in raw.split(b"\n") for key in _decode_chunk(line)]
        except msgspec.DecodeError as exc:
            raise CorruptCheckpoint(f"the checkpoint's ledger is unreadable: {exc}") from exc

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | int):
            return False
        return bool(self._table[self._slot(key if isinstance(key, int) else digest(key))])

    def __len__(self) -> int:
        return self._size
