"""Ingestion: behaviour events/s aggregated by ONE worker process (`loopwise.cli worker`:
profiles, then popularity after the repartition by product; RocksDB tables, changelogs)
beside a passthrough Faust agent that only counts the same messages, in a worker process
of its own built by the same `create_app` (`python -m benchmarks.features passthrough`).
The events are produced pre-encoded straight to the topic before a worker starts, so it
drains a backlog."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from benchmarks.common import (
    ROOT,
    env_with,
    stop,
)
from benchmarks.features.sizes import Sizes
from benchmarks.features.topics import read_records
from benchmarks.features.traffic import traffic
from engine.behaviour import BehaviourObserved
from engine.records import encode
from streams.broker import (
    EmbeddedBroker,
    free_port,
    popularity_changelog,
    prepare,
    profiles_changelog,
)
from streams.files import write_atomic
from streams.settings import Settings, from_env


def measure_ingestion(size: Sizes) -> dict[str, object]:
    events = traffic(size.ingest_events, size.ingest_users)
    rounds: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="loopwise-ingest-") as tmp:
        # Tansu's own storage keeps every record: the changelogs are read back whole to time
        # each fold, and the bounded store compacts them while the run goes on.
        broker = EmbeddedBroker(free_port(), Path(tmp) / "broker.log", storage="memory")
        broker.start()
        try:
            bootstrap = f"127.0.0.1:{broker.port}"
            for r in range(size.ingest_rounds):
                where = Path(tmp) / f"r{r}"
                rounds.append(_ingestion_round(bootstrap, where, events, r, size.together))
        finally:
            broker.stop()
    worker = np.array([float(str(r["aggregated_per_s"])) for r in rounds])
    baseline = np.array([float(str(r["passthrough_per_s"])) for r in rounds])
    return {
        "events": len(events),
        "users": size.ingest_users,
        "product_events": sum(1 for e in events if e.product is not None),
        "rounds": rounds,
        "aggregated_per_s": float(np.median(worker)),
        "passthrough_per_s": float(np.median(baseline)),
        "ratio": float(np.median(worker / baseline)),
        "profile_bytes": float(
            np.mean([float(str(r["profile_changelog_mean_bytes"])) for r in rounds])
        ),
    }


def _ingestion_round(
    bootstrap: str, data: Path, events: list[BehaviourObserved], r: int, together: bool
) -> dict[str, object]:
    """Produce the events to a fresh topic, then drain it with each worker in turn (the
    order alternating by round), or with both at once in the quick mode."""
    prefix = f"ingest{free_port()}"
    settings = Settings(data_dir=data, broker=bootstrap, topic_prefix=prefix)
    asyncio.run(_produce(settings, [(e.user_id.encode(), encode(e)) for e in events]))
    runs = [_aggregated, _passthrough][:: -1 if r % 2 else 1]
    measured: dict[str, object] = {"prefix": prefix, "order": "at once"}
    if together:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(measure, settings, events) for measure in runs]:
                measured.update(done.result())
    else:
        measured["order"] = " first, then ".join(m.__name__.strip("_") for m in runs)
        for measure in runs:
            measured.update(measure(settings, events))
    measured["ratio"] = float(str(measured["aggregated_per_s"])) / float(
        str(measured["passthrough_per_s"])
    )
    return measured


async def _produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    await prepare(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        topic = settings.topic("behaviour")
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _loopwise_env(settings: Settings) -> dict[str, str]:
    return env_with(
        {
            "LOOPWISE_BROKER": settings.bootstrap,
            "LOOPWISE_DATA_DIR": str(settings.data_dir),
            "LOOPWISE_TOPIC_PREFIX": settings.topic_prefix,
        }
    )


def _aggregated(settings: Settings, events: list[BehaviourObserved]) -> dict[str, object]:
    """`loopwise.cli worker` drains the topic into profiles, and (repartitioned by product) into
    popularity; its stats file says when it is done, its changelogs' timestamps when each
    event was folded in: first profile write -> last write of either table."""
    n, m = len(events), sum(1 for e in events if e.product is not None)
    data = settings.data_dir / "worker"
    stats = data / "worker-stats.json"
    env = _loopwise_env(settings.with_(data_dir=data))
    with _child(["-m", "loopwise.cli", "worker"], env, data / "worker.log"):
        _wait_for(lambda: _count(stats, "behaviour_events") >= n, n, data)
        _wait_for(lambda: _count(stats, "product_events") >= m, m, data)
    users = asyncio.run(read_records(settings, profiles_changelog(settings), n))
    products = asyncio.run(read_records(settings, popularity_changelog(settings), m))
    first, last = users[0].ts, max(users[-1].ts, products[-1].ts if products else 0.0)
    return {
        "aggregated_per_s": (n - 1) / (last - first),
        "aggregated_seconds": last - first,
        "profiles_only_per_s": (len(users) - 1) / (users[-1].ts - first),
        "profile_changelog_records": len(users),
        "popularity_changelog_records": len(products),
        "profile_changelog_mean_bytes": float(np.mean([r.size for r in users])),
        "popularity_changelog_mean_bytes": float(np.mean([r.size for r in products or users])),
    }


def _passthrough(settings: Settings, events: list[BehaviourObserved]) -> dict[str, object]:
    """The counting agent drains the same topic in its own worker process."""
    n = len(events)
    data = settings.data_dir / "passthrough"
    stats = data / "passthrough-stats.json"
    env = _loopwise_env(settings.with_(data_dir=data, topic_prefix=f"{settings.topic_prefix}p"))
    command = ["-m", "benchmarks.features", "passthrough", "--topic", settings.topic("behaviour")]
    command += ["--events", str(n), "--stats", str(stats)]
    with _child(command, env, data / "passthrough.log") as process:
        _wait_for(lambda: _count(stats, "count") >= n, n, data)
        seen = json.loads(stats.read_text())
        if seen["pid"] != process.pid:
            raise RuntimeError(f"the passthrough ran in pid {seen['pid']}, not {process.pid}")
    return {
        "passthrough_per_s": (seen["count"] - 1) / (seen["last"] - seen["first"]),
        "passthrough_seconds": seen["last"] - seen["first"],
        "passthrough_pid": seen["pid"],
    }


def _count(path: Path, name: str) -> int:
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    return int(stats.get("counts", stats).get(name, 0))


def _wait_for(done: Callable[[], bool], n: int, data: Path) -> None:
    deadline = time.monotonic() + 60.0 + n / 200.0
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{n} events were not processed in time; see the logs in {data}")


@contextlib.contextmanager
def _child(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        stop(process, signal.SIGTERM, 20.0)


class Passthrough:
    """Counts messages; writes pid, count and the first and last times at the last one."""

    def __init__(self, expected: int, stats: Path) -> None:
        self.expected, self.stats = expected, stats
        self.count, self.first = 0, 0.0

    def seen(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.time()
        elif self.count == self.expected:
            body = {
                "pid": os.getpid(),
                "count": self.count,
                "first": self.first,
                "last": time.time(),
            }
            write_atomic(self.stats, json.dumps(body).encode())


def passthrough_worker(topic: str, expected: int, stats: Path) -> None:
    """The baseline: the worker's own `create_app` (settings from LOOPWISE_*, another topic
    prefix) plus one agent that reads `topic` raw and only counts."""
    import faust

    from agents.app import create_app

    settings = from_env()
    asyncio.run(prepare(settings))
    app = create_app(settings)
    counter = Passthrough(expected, stats)
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(topic, key_type=bytes, value_type=bytes, **raw)

    @app.agent(source)
    async def passthrough(stream: Any) -> None:
        async for _ in stream.events():
            counter.seen()

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
