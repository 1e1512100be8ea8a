"""Compaction and packing, read off Kafka record batches (magic 2).

`dead_records` finds, per batch, the records compaction drops: those a later record with
the same key replaced, and tombstones older than `delete.retention.ms`. `pack_records`
writes the records of a run of batches (but the dropped ones) into batches of about
CHUNK_BYTES, offsets and timestamps unchanged. Only batches whose records can move as they
are (`packable`: uncompressed, not transactional nor control, not idempotent) are read.
"""

from __future__ import annotations

import struct
from typing import Final

from streams.objectstore.log import Batch, Partition, Policy

CHUNK_BYTES: Final = 256 * 1024  # the cleaner packs small batches into batches this big
HEADER: Final = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, baseOffset .. recordsCount


def last_offset_delta(data: bytes) -> int:
    if len(data) < HEADER.size:
        return 0
    return int(HEADER.unpack_from(data)[6])


def packable(data: bytes) -> bool:
    """Uncompressed, not transactional nor a control batch, not from an idempotent producer:
    its records can move into another batch as they are."""
    if len(data) < HEADER.size or data[16] != 2:
        return False
    fields = HEADER.unpack_from(data)
    return bool(fields[5] & 0x37 == 0 and fields[9] == -1)


def record_keys(data: bytes, base: int) -> list[tuple[bytes | None, int, bool]]:
    """(key, absolute offset, is a tombstone) of every record of a batch stored at `base`;
    [] for a batch that cannot be packed (then compaction leaves it)."""
    if not packable(data):
        return []
    from aiokafka.record.default_records import DefaultRecordBatch

    batch = DefaultRecordBatch(data)
    return [(r.key, base + r.offset - batch.base_offset, r.value is None) for r in batch]


def pack_records(run: list[Batch], drop: set[int]) -> list[tuple[int, bytes]]:
    """The records of `run` but `drop` (absolute offsets), in new batches of about
    CHUNK_BYTES: (base offset, bytes) each, offsets and timestamps kept."""
    from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

    out: list[tuple[int, bytes]] = []
    builder: DefaultRecordBatchBuilder | None = None
    base = size = 0
    for b in run:
        batch = DefaultRecordBatch(b.blob.data)
        for r in batch:
            offset = b.base + r.offset - batch.base_offset
            if offset in drop:
                continue
            if builder is None or size >= CHUNK_BYTES:
                if builder is not None:
                    out.append((base, bytes(builder.build())))
                builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
                base, size = offset, 0
            builder.append(offset - base, r.timestamp, r.key, r.value, list(r.headers))
            size += len(r.key or b"") + len(r.value or b"") + 16
    if builder is not None:
        out.append((base, bytes(builder.build())))
    return out


def dead_records(p: Partition, rule: Policy, now: float) -> dict[int, int]:
    """Compaction: per batch base, how many of its records a later one with the same key
    replaced (or are tombstones older than delete.retention.ms)."""
    latest: dict[bytes, int] = {}
    batches = p.ordered()
    for b in batches:
        if b.keys is None:
            b.keys = record_keys(b.blob.data, b.base)
        for key, offset, _ in b.keys:
            if key is not None:
                latest[key] = offset
    dead: dict[int, int] = {}
    for b in batches[:-1]:
        old = (now - b.blob.modified) * 1000 > rule.delete_retention_ms
        b.dead = {
            offset
            for key, offset, tombstone in b.keys or []
            if key is not None and (latest[key] > offset or (tombstone and old))
        }
        if b.dead:
            dead[b.base] = len(b.dead)
    return dead
