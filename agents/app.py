"""The worker's Faust app: its topics and tables, the four agents and two timers.

Each agent handles one message at a time under `agents.guard`: the join (decisions and
rewards, `agents.joiner`), stock (inventory events, `agents.stock`), profiles (behaviour
events by user, `agents.profiler`) and popularity (the same events again, by product).
Its /metrics (agents.metrics) is served from a thread once it starts.
A timer sends a Tick to every partition of the decisions and rewards topics (a window
closes when both have passed its deadline, agents.joiner); another writes the worker's
counters and exits when table recovery crashed.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust
from faust import EventT

from agents import metrics, recovery, stock, tuning
from agents.guard import per_message
from agents.joiner import Joiner
from agents.profiler import Profiler
from engine.records import Tick, encode
from streams.settings import Settings

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {  # every topic carries bytes, decoded by the agents
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def create_app(settings: Settings, consistency_check: bool = True) -> faust.App:
    tuning.bound_fetch_wait(settings.fetch_wait_ms)
    tuning.bounded_rocksdb()
    recovery.exact_recovery_highwaters(settings.bootstrap)
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=";".join(f"kafka://{h}" for h in settings.bootstrap.split(",")),
        store="rocksdb://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger=0.0,
        recovery_consistency_check=consistency_check,
    )
    ticked = [app.topic(settings.topic(t), **RAW) for t in ("decisions", "rewards")]
    source = app.topic(settings.topic("decisions"), settings.topic("rewards"), **RAW)
    training = app.topic(settings.topic("training"), **RAW)
    events = app.topic(settings.topic("events"), **RAW)
    behaviour = app.topic(settings.topic("behaviour"), **RAW)
    by_product = app.topic(settings.topic("behaviour-by-product"), **RAW)

    def table(name: str) -> Any:  # bytes keys and values are stored raw
        return app.Table(name, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    joiner = Joiner(settings, table("join"), training)
    stock_levels = table("stock")
    profiler = Profiler(table("profiles"), table("popularity"), joiner.counts)
    counts = joiner.counts  # the worker's counters, written to worker-stats.json
    app.joiner = joiner  # type: ignore[attr-defined]  # reached by tests through the app
    served = metrics.registry(joiner, lambda: app.consumer)
    serving: dict[str, int] = {}  # the port, once the worker has started

    # Only a Tick emits, and it emits every due entry of its partition as one batch.
    @app.agent(source)
    @per_message("join", counts)
    async def join_agent(event: EventT[bytes]) -> None:
        m = event.message
        await joiner.admit(m.topic, m.partition, m.offset, event.value)

    @app.agent(events)
    @per_message("stock", counts)
    async def stock_agent(event: EventT[bytes]) -> None:
        stock.update(stock_levels, event.value, counts)

    @app.agent(behaviour)
    @per_message("profiles", counts)
    async def profile_agent(event: EventT[bytes]) -> None:
        product = profiler.handle(event.value)
        if product is not None:  # repartitioned by product for its popularity
            await by_product.send(key=product, value=event.value)

    @app.agent(by_product)
    @per_message("popularity", counts)
    async def popularity_agent(event: EventT[bytes]) -> None:
        profiler.count_product(event.value)

    @app.timer(settings.tick_seconds)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def ticker() -> None:
        body = encode(Tick(ts=time.time()))
        for topic in ticked:
            for p in range(settings.partitions):
                await topic.send(value=body, partition=p)

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped here
    async def serve_metrics() -> None:
        serving["port"] = served.serve(settings.host, settings.worker_metrics_port)
        log.info("worker metrics on http://%s:%d/metrics", settings.host, serving["port"])

    @app.timer(2.0)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def stats() -> None:
        joiner.write_stats(len(app.consumer.assignment()), serving.get("port"))
        restore = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager only
        if restore.crashed:  # Faust would wait forever; exit so the supervisor restarts us
            log.critical("table recovery crashed (%r): exiting", restore.crash_reason)
            os._exit(70)

    return app
