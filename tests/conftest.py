"""Shared fixtures: one real Tansu broker per test session, and real child processes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest

from loopwise.supervisor import Stack as Supervised
from loopwise.supervisor import StackFailed
from streams.broker import EmbeddedBroker, free_port
from streams.settings import from_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu) for the whole session: 'host:port'."""
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = EmbeddedBroker(port, log)
    b.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        b.stop()


def loopwise_env(data_dir: Path, port: int, broker: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LOOPWISE_DATA_DIR": str(data_dir),
            "LOOPWISE_PORT": str(port),
            "LOOPWISE_BROKER": broker,
            "LOOPWISE_TOPIC_PREFIX": f"t{port}",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()  # type: ignore[operator]  # any callable
            if last:
                return
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def ready(url: str) -> bool:
    return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200


class Stack(Supervised):
    """A worker and an API (loopwise.supervisor) against the session's broker, spoken to
    over HTTP."""

    def __init__(self, broker: str, data_dir: Path, **env_extra: str) -> None:
        self.broker = broker  # its address
        self.data = data_dir
        self.port = free_port()
        env = loopwise_env(data_dir, self.port, broker, **env_extra)
        super().__init__(from_env(env), env, cwd=ROOT, supervised=False)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def start(self) -> Self:
        super().start()
        try:
            self.wait_ready()
        except BaseException:  # a stack that does not come up is not left running
            self.stop()
            raise
        return self

    def wait_ready(
        self, timeout: float = 60.0, progress: Callable[[str], None] | None = None
    ) -> None:
        try:
            super().wait_ready(timeout, progress)
        except StackFailed as exc:
            raise AssertionError(
                f"{exc}\nAPI log:\n{self.api.tail()}\nworker log:\n{self.worker.tail()}"
            ) from None

    def wait_worker(self, since: float, timeout: float = 60.0) -> None:
        """Until the worker reports partitions assigned (stats written after `since`)."""

        def consuming() -> bool:
            try:
                stats = json.loads((self.data / "worker-stats.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(stats.get("ts", 0) > since and stats.get("assigned", 0) > 0)

        wait_until(consuming, timeout, "the worker to be assigned its partitions")

    def stop(self, timeout: float = 20.0) -> None:
        self.http.close()
        super().stop(timeout)

    def learned(self, catalog: str) -> int:
        return int(self.http.get(f"/v1/models/{catalog}").json()["learned"])

    def decide(self, catalog: str, **body: object) -> dict[str, object]:
        r = self.http.post("/v1/decide", json={"catalog": catalog, **body})
        assert r.status_code == 200, r.text
        return dict(r.json())


async def read_topic(bootstrap: str, topic: str, timeout: float) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a topic from its start, in order per partition, until a poll
    brings nothing new (or `timeout`). A tombstone's value is b""."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 3:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = [r for records in batches.values() for r in records]
            idle = 0 if got else idle + 1
            out += [(r.key or b"", r.value or b"") for r in got]
    finally:
        await consumer.stop()
    return out


def trace_events(stack: Stack, event_ids: list[str]) -> str:
    """Where each event id stopped: its messages on the decision, reward and training
    topics, and its join entries on the worker's changelog (oldest first)."""
    import asyncio

    import msgspec

    from engine import join

    prefix = f"t{stack.port}"
    topics = {name: f"{prefix}-{name}" for name in ("decisions", "rewards", "training")} | {
        "join-changelog": f"{prefix}-worker-join-changelog"
    }
    found: dict[str, list[str]] = {e: [] for e in event_ids}
    for name, topic in topics.items():
        for key, value in asyncio.run(read_topic(stack.broker, topic, 20.0)):
            for e in event_ids:
                if e.encode() not in key and e.encode() not in value:
                    continue
                if name == "join-changelog" and value:
                    try:
                        entry = join.decode_entry(value)
                        found[e].append(f"{name}: emitted={entry.emitted}")
                        continue
                    except msgspec.DecodeError:
                        pass
                found[e].append(f"{name}: {len(value)} bytes" if value else f"{name}: tombstone")
    return "\n".join(f"{e}: {found[e] or 'nowhere'}" for e in event_ids)
