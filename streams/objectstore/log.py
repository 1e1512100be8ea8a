"""What the object store holds: objects (`Blob`), a topic partition's record batches
(`Batch`, `Partition`), found by their keys, and a topic's retention configs (`Policy`).

Tansu writes each produced batch as one object,
`clusters/<c>/topics/<t>/partitions/<p>/records/<offset>.batch`, and keeps its topics'
configs in `clusters/<c>/meta.json`. A blob carries the entry it is listed with in a
ListObjectsV2 answer, rendered once when it is written: listing is the broker's hot call.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Final

RECORDS = re.compile(r"^(clusters/[^/]+/topics/([^/]+)/partitions/\d+/records/)(\d{20})\.batch$")
META = re.compile(r"^clusters/[^/]+/meta\.json$")
NEVER: Final = -1
DEFAULT_DELETE_RETENTION_MS: Final = 86_400_000  # Kafka's delete.retention.ms


@dataclass(slots=True)
class Blob:
    data: bytes
    etag: str
    modified: float  # time.time() of the write (of the newest record, once rewritten)
    listed: bytes = b""  # this object's <Contents> entry of a ListObjectsV2 answer


@dataclass(slots=True)
class Batch:
    """One stored record batch: where it starts and ends, and (for compaction) its keys."""

    base: int
    last: int
    blob: Blob
    keys: list[tuple[bytes | None, int, bool]] | None = None  # (key, offset, tombstone)
    rewritten: bool = False  # written by the cleaner, not by the broker
    dead: set[int] = field(default_factory=set)  # offsets compaction drops, last pass


@dataclass(slots=True)
class Partition:
    prefix: str  # ".../records/"
    topic: str
    batches: dict[int, Batch] = field(default_factory=dict)  # base offset -> batch
    bytes: int = 0
    compacted: float = 0.0  # when compaction last looked at it
    _order: list[Batch] | None = None

    def ordered(self) -> list[Batch]:
        if self._order is None:
            self._order = sorted(self.batches.values(), key=lambda b: b.base)
        return self._order

    def changed(self) -> None:
        self._order = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A topic's configs as Kafka names them; -1 is 'no limit'."""

    compact: bool = False
    retention_ms: int = NEVER
    retention_bytes: int = NEVER
    delete_retention_ms: int = DEFAULT_DELETE_RETENTION_MS


def policy(configs: dict[str | None, str | None]) -> Policy:
    def number(name: str, default: int) -> int:
        try:
            return int(configs.get(name) or default)
        except ValueError:
            return default

    return Policy(
        compact="compact" in (configs.get("cleanup.policy") or ""),
        retention_ms=number("retention.ms", NEVER),
        retention_bytes=number("retention.bytes", NEVER),
        delete_retention_ms=number("delete.retention.ms", DEFAULT_DELETE_RETENTION_MS),
    )


def contents_entry(key: str, blob: Blob) -> bytes:
    # Microseconds: Tansu answers ListOffsets(latest) from the newest LastModified of a
    # partition's batches, so batches written within one second must not tie.
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(blob.modified))
    modified = f"{whole}.{int(blob.modified * 1e6) % 1_000_000:06d}Z"
    return (
        f"<Contents><Key>{xml_escape(key)}</Key><Size>{len(blob.data)}</Size>"
        f"<LastModified>{modified}</LastModified><ETag>{xml_escape(blob.etag)}</ETag></Contents>"
    ).encode()


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
