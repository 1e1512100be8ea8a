"""A local replica of a Faust table: follows the table's changelog topic into memory.

Serving processes read worker-maintained state (live stock levels, later user features)
from such a replica, never over the network per request. It is the GlobalTable idea for
a process that is not a Faust worker: every partition of the changelog, from the start,
latest value per key wins, an empty value deletes the key.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping

from api.serving.follow import LogFollower

log = logging.getLogger(__name__)
_SERIALS = itertools.count()


class StockView(Mapping[str, float]):
    """Stock levels by SKU over a mirror whose values are (level, ts) pairs."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    def __getitem__(self, sku: str) -> float:
        value = self.mirror.data.get(sku.encode())
        if not isinstance(value, tuple):
            raise KeyError(sku)
        return float(value[0])

    def get(self, sku: str, default: float | None = None) -> float | None:  # type: ignore[override]
        value = self.mirror.data.get(sku.encode())  # hot path: no KeyError round trip
        return float(value[0]) if isinstance(value, tuple) else default

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever any level changes (and differs between mirrors), so a caller
        may keep what it derived from the levels until it does (engine.constraints)."""
        return (self.mirror.serial, self.mirror.changes)

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.mirror.data)

    def __len__(self) -> int:
        return len(self.mirror.data)


class Mirror(LogFollower):
    def __init__(
        self, topic: str, partitions: int, decode: Callable[[bytes], object] = bytes
    ) -> None:
        super().__init__(topic, partitions)
        self.decode = decode
        self.data: dict[bytes, object] = {}
        self.poisoned = 0
        self.serial = next(_SERIALS)  # unique in this process, unlike id()
        self.changes = 0  # counts every change to `data`
        self.bytes = 0  # of the values kept as bytes (the feature store's profiles)

    def get(self, key: bytes) -> object | None:
        return self.data.get(key)

    def discard(self, key: bytes) -> None:
        """Forget a key here at once (its tombstone follows on the changelog)."""
        self.changes += 1
        self._forget(key)

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.offsets[partition] = offset + 1
        if key is None:
            return
        self.changes += 1
        if not value:
            self._forget(key)
            return
        try:
            decoded = self.decode(value)
            self._forget(key)
            self.data[key] = decoded
            self.bytes += len(decoded) if isinstance(decoded, bytes) else 0
        except Exception as exc:  # a foreign value must not stop the replica
            self.poisoned += 1
            log.warning("mirror %s: skipped an unreadable value for %r: %s", self.topic, key, exc)

    def _forget(self, key: bytes) -> None:
        old = self.data.pop(key, None)
        if isinstance(old, bytes):
            self.bytes -= len(old)
