"""The store: the objects in memory, the record batches indexed by partition, and the
cleaner that applies each topic's retention or compaction and packs sealed batches.

A partition's last batch always stays as the broker wrote it, so its end is always
readable; a batch the cleaner removes stays readable (not listed) for RETIRED_SECONDS,
for a fetch that listed it just before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Final

from streams.objectstore.compaction import (
    CHUNK_BYTES,
    dead_records,
    last_offset_delta,
    pack_records,
    packable,
)
from streams.objectstore.log import (
    META,
    RECORDS,
    Batch,
    Blob,
    Partition,
    Policy,
    contents_entry,
    policy,
)

SEAL_SECONDS: Final = 1.0  # older batches are past the tail that followers fetch: rewritable
RETIRED_SECONDS: Final = 30.0  # a removed batch stays readable (not listed) this long
COMPACT_SECONDS: Final = 10.0  # how often compaction reads a changelog partition's keys


class Store:
    """The objects, with the record batches indexed by partition.

    Besides retention and compaction the cleaner packs sealed small batches (most hold one
    record) into batches of about CHUNK_BYTES, as Kafka's log segments hold many: Tansu's
    fetch lists every batch of its partition, so fewer, larger batches keep each fetch
    cheap at any retention. A batch the cleaner removes stays readable for RETIRED_SECONDS,
    for a fetch that listed it just before."""

    def __init__(self) -> None:
        self.objects: dict[str, Blob] = {}
        self.partitions: dict[str, Partition] = {}
        self.retired: dict[str, tuple[Blob, float]] = {}
        self.version = 0
        self.deleted_batches = 0
        self.deleted_bytes = 0
        self.rewritten_batches = 0
        self.requests: dict[str, int] = {}  # by call, for the stats
        self.listed = 0  # keys answered in listings
        self.clock = 0.0  # the last write's time: each write is later (see contents_entry)

    # -- objects ---------------------------------------------------------------------

    def put(self, key: str, data: bytes, modified: float | None = None) -> Blob:
        self.version += 1
        if modified is None:
            modified = self.clock = max(time.time(), self.clock + 1e-6)
        blob = Blob(data, f'"{self.version:x}"', modified)
        blob.listed = contents_entry(key, blob)
        old = self.objects.get(key)
        self.objects[key] = blob
        m = RECORDS.match(key)
        if m:
            p = self.partitions.get(m.group(1))
            if p is None:
                p = self.partitions[m.group(1)] = Partition(m.group(1), m.group(2))
            base = int(m.group(3))
            if old is not None and base in p.batches:
                p.bytes -= len(old.data)
            p.batches[base] = Batch(base, base + last_offset_delta(data), blob)
            p.bytes += len(data)
            p.changed()
        return blob

    def get(self, key: str) -> Blob | None:
        blob = self.objects.get(key)
        if blob is None and key in self.retired:
            blob = self.retired[key][0]
        return blob

    def delete(self, key: str, retired_at: float | None = None) -> None:
        """Remove an object; with `retired_at`, it stays readable until RETIRED_SECONDS after."""
        blob = self.objects.pop(key, None)
        if blob is None:
            return
        if retired_at is not None:
            self.retired[key] = (blob, retired_at)
        m = RECORDS.match(key)
        if m and (p := self.partitions.get(m.group(1))) is not None:
            if p.batches.pop(int(m.group(3)), None) is not None:
                p.bytes -= len(blob.data)
                p.changed()
            if not p.batches:
                del self.partitions[m.group(1)]

    def listing(self, prefix: str) -> Iterator[tuple[str, Blob]]:
        """The objects under `prefix`, in key order."""
        p = self.partitions.get(prefix)
        if p is not None:  # the broker's hot call: one partition's batches
            for b in p.ordered():
                yield f"{prefix}{b.base:020d}.batch", b.blob
            return
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            yield key, self.objects[key]

    # -- retention and compaction ----------------------------------------------------

    def policies(self) -> dict[str, Policy]:
        """Each topic's policy, from the configs the broker keeps in its meta object."""
        out: dict[str, Policy] = {}
        for key, blob in self.objects.items():
            if not META.match(key):
                continue
            try:
                topics = json.loads(blob.data).get("topics", {})
            except (ValueError, AttributeError):
                continue
            for name, meta in topics.items():
                configs = {
                    c.get("name"): c.get("value")
                    for c in (meta.get("topic", {}).get("configs") or [])
                    if isinstance(c, dict)
                }
                out[name] = policy(configs)
        return out

    def clean(self, now: float | None = None, seal_seconds: float = SEAL_SECONDS) -> int:
        """Apply every topic's retention or compaction once, and pack sealed batches; the
        number of batches removed."""
        now = time.time() if now is None else now
        self.retired = {k: v for k, v in self.retired.items() if now - v[1] < RETIRED_SECONDS}
        policies = self.policies()
        removed = 0
        for p in list(self.partitions.values()):
            rule = policies.get(p.topic, Policy())
            if not rule.compact:
                for b in expired(p, rule, now):
                    self.deleted_bytes += len(b.blob.data)
                    self.delete(f"{p.prefix}{b.base:020d}.batch", retired_at=now)
                    removed += 1
            if p.prefix in self.partitions:
                removed += self.pack(p, rule, now, seal_seconds)
        self.deleted_batches += removed
        return removed

    def pack(self, p: Partition, rule: Policy, now: float, seal_seconds: float) -> int:
        """Rewrite runs of sealed batches into batches of about CHUNK_BYTES, leaving out the
        records compaction drops; the number of batches this removed."""
        batches = p.ordered()[:-1]  # the last batch always stays as the broker wrote it
        dead: dict[int, int] = {}
        if rule.compact and now - p.compacted >= COMPACT_SECONDS:
            dead, p.compacted = dead_records(p, rule, now), now
        removed = 0
        run: list[Batch] = []
        for b in batches:
            if now - b.blob.modified < seal_seconds or not packable(b.blob.data):
                removed += self._rewrite(p, run, dead, now)
                run = []
                if now - b.blob.modified < seal_seconds:
                    break
                continue
            big = len(b.blob.data) >= CHUNK_BYTES // 2
            if big and dead.get(b.base, 0) * 2 < len(b.keys or [1]):  # little to gain
                removed += self._rewrite(p, run, dead, now)
                run = []
                continue
            run.append(b)
            if sum(len(r.blob.data) for r in run) >= CHUNK_BYTES:
                removed += self._rewrite(p, run, dead, now)
                run = []
        return removed + self._rewrite(p, run, dead, now)

    def _rewrite(self, p: Partition, run: list[Batch], dead: dict[int, int], now: float) -> int:
        if not run or (len(run) == 1 and not dead.get(run[0].base)):
            return 0
        drop = {o for b in run for o in b.dead}
        out = pack_records(run, drop)
        newest = max(b.blob.modified for b in run)
        for b in run:
            self.delete(f"{p.prefix}{b.base:020d}.batch", retired_at=now)
        for base, data in out:
            self.put(f"{p.prefix}{base:020d}.batch", data, modified=newest)
            p.batches[base].rewritten = True
        self.rewritten_batches += len(run)
        return len(run) - len(out)

    def stats(self) -> dict[str, object]:
        topics: dict[str, list[int]] = {}
        for p in self.partitions.values():
            t = topics.setdefault(p.topic, [0, 0])
            t[0] += len(p.batches)
            t[1] += p.bytes
        return {
            "topics": {k: {"batches": v[0], "bytes": v[1]} for k, v in sorted(topics.items())},
            "objects": len(self.objects),
            "batches": sum(len(p.batches) for p in self.partitions.values()),
            "batch_bytes": sum(p.bytes for p in self.partitions.values()),
            "listed": self.listed,
            "deleted_batches": self.deleted_batches,
            "deleted_bytes": self.deleted_bytes,
            "rewritten_batches": self.rewritten_batches,
            "retired": len(self.retired),
            "requests": dict(self.requests),
        }


def expired(p: Partition, rule: Policy, now: float) -> list[Batch]:
    """The oldest batches written more than retention.ms ago, or beyond retention.bytes;
    never the last."""
    out: list[Batch] = []
    size = p.bytes
    for b in p.ordered()[:-1]:
        too_old = rule.retention_ms >= 0 and (now - b.blob.modified) * 1000 > rule.retention_ms
        too_big = rule.retention_bytes >= 0 and size > rule.retention_bytes
        if not (too_old or too_big):
            break
        out.append(b)
        size -= len(b.blob.data)
    return out
