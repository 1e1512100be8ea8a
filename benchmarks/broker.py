"""The embedded broker's CPU against the size of its log: why the tail grows on Tansu.

Tansu (the embedded default) keeps its topics in memory, without retention (and refuses
DeleteRecords). The same load, 250 messages a second produced while three consumers follow
them (as the worker follows decisions and the API follows training examples), is measured
on a fresh log (the baseline, in the same run) and again after the log has grown. Producing
alone costs the same at every size; a fetch that finds new data costs more the longer the
log. Batching the producer (linger 10 ms instead of 1) did not lower it: 1.43-1.48 cores
either way at 100,000 messages, and more on smaller logs. Apache Kafka finds a fetch's
offset through its segment index, without that growth.

It also measures what a consumer's fetch wait (`LOOPWISE_FETCH_WAIT_MS`) costs one hop of
the learning loop: Tansu holds a fetch up to that wait, so each hop's delivery latency
follows it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tqdm import tqdm

from benchmarks.common import proc_stat, quantiles_ms, save_figure, table
from streams.broker import EmbeddedBroker, ensure_topics, free_port

TOPIC, PARTITIONS, RATE, CONSUMERS = "growth", 4, 250.0, 3
PAYLOAD = b"x" * 600  # about a training example of the 50 x 20 shape
LINGER_MS = 1  # the outbox's
# Hop latency against the consumers' fetch wait: Tansu holds a fetch up to the wait
HOP_TOPIC, HOP_RATE, HOP_MESSAGES, FETCH_WAITS_MS = "hop", 100.0, 300, (10, 50, 200)


def run(quick: bool, out: Path) -> dict[str, object]:
    sizes = (0, 2_000) if quick else (0, 40_000, 100_000)
    seconds = 1.0 if quick else 5.0
    rows, hops = asyncio.run(
        _measure(sizes, seconds, HOP_MESSAGES // 10 if quick else HOP_MESSAGES)
    )
    fresh = {r["consumers"]: r["broker_cores"] for r in rows if r["filled_to"] == sizes[0]}
    for r in rows:
        r["vs_fresh_log"] = round(r["broker_cores"] / max(fresh[r["consumers"]], 1e-9), 2)
    return {
        "settings": {
            "rate_per_s": RATE,
            "consumers": [0, CONSUMERS],
            "partitions": PARTITIONS,
            "message_bytes": len(PAYLOAD),
            "linger_ms": LINGER_MS,
            "seconds_per_point": seconds,
        },
        "points": rows,
        "largest_log_vs_fresh_with_consumers": rows[-1]["vs_fresh_log"],
        "hop_latency_by_fetch_wait": hops,
        "plot": _plot(rows, hops, out),
    }


def _plot(rows: list[dict[str, float]], hops: list[dict[str, float]], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hop_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for consumers, label in (
        (0, "producing alone"),
        (CONSUMERS, f"{CONSUMERS} consumers following"),
    ):
        points = [r for r in rows if r["consumers"] == consumers]
        ax.plot(
            [r["log_messages"] for r in points],
            [r["broker_cores"] for r in points],
            "o-",
            label=label,
        )
    ax.set_xlabel("messages in the broker's log")
    ax.set_ylabel("broker CPU (cores)")
    ax.set_title(f"CPU at {RATE:g} msg/s against the log size", fontsize=9)
    ax.legend()
    waits = [h["fetch_wait_ms"] for h in hops]
    for key in ("p50_ms", "p99_ms"):
        hop_ax.plot(waits, [h[key] for h in hops], "o-", label=key.removesuffix("_ms"))
    hop_ax.set_xlabel("consumer fetch wait (ms)")
    hop_ax.set_ylabel("produce -> consume (ms)")
    hop_ax.set_title(f"one hop at {HOP_RATE:g} msg/s", fontsize=9)
    hop_ax.legend()
    return save_figure(fig, out / "broker.png", "embedded broker (Tansu)")


async def _measure(
    sizes: tuple[int, ...], seconds: float, hop_messages: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="loopwise-broker-") as tmp:
        broker = EmbeddedBroker(port, Path(tmp) / "tansu.log")
        broker.start()
        assert broker.process is not None
        pid, bootstrap = broker.process.pid, f"127.0.0.1:{port}"
        rows: list[dict[str, float]] = []
        try:
            await ensure_topics(bootstrap, {TOPIC: PARTITIONS, HOP_TOPIC: PARTITIONS})
            hops = [await _hop(bootstrap, wait, hop_messages) for wait in FETCH_WAITS_MS]
            written = 0
            bar = tqdm(total=2 * len(sizes), desc="broker: log size x consumers", leave=False)
            for size in sizes:
                written += await _fill(bootstrap, max(0, size - written))
                for consumers in (0, CONSUMERS):
                    before, started = proc_stat(pid)[1], time.monotonic()
                    written += await _steady(bootstrap, consumers, seconds)
                    cores = (proc_stat(pid)[1] - before) / (time.monotonic() - started)
                    row = {"filled_to": size, "log_messages": written, "consumers": consumers}
                    rows.append({**row, "broker_cores": round(cores, 3)})
                    bar.update()
            bar.close()
        finally:
            broker.stop()
    return rows, hops


async def _fill(bootstrap: str, n: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        pending: list[Awaitable[object]] = []
        for i in range(n):
            pending.append(await producer.send(TOPIC, PAYLOAD, partition=i % PARTITIONS))
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


async def _steady(bootstrap: str, followers: int, seconds: float) -> int:
    """RATE messages a second for `seconds`, while `followers` consumers follow the end."""
    consumers = [
        AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=50)
        for _ in range(followers)
    ]
    parts = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    for c in consumers:
        await c.start()
        c.assign(parts)
        await c.seek_to_end(*parts)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS)
    await producer.start()
    done = asyncio.Event()

    async def follow(c: AIOKafkaConsumer) -> None:
        while not done.is_set():
            await c.getmany(timeout_ms=100)

    tasks = [asyncio.create_task(follow(c)) for c in consumers]
    n = int(RATE * seconds)
    try:
        start = time.monotonic()
        for i in range(n):
            await producer.send(TOPIC, PAYLOAD, partition=i % PARTITIONS)
            delay = start + (i + 1) / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        done.set()
        await asyncio.gather(*tasks)
        await producer.stop()
        for c in consumers:
            await c.stop()
    return n


async def _hop(bootstrap: str, wait_ms: int, n: int) -> dict[str, float]:
    """Produce -> consume latency of one hop at HOP_RATE, for a consumer fetching with
    `wait_ms` (LOOPWISE_FETCH_WAIT_MS): what the wait costs each hop of the learning loop."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms)
    parts = [TopicPartition(HOP_TOPIC, p) for p in range(PARTITIONS)]
    await consumer.start()
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS)
    await producer.start()
    latencies: list[float] = []
    done = asyncio.Event()

    async def follow() -> None:
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            latencies.extend(now - float(r.value or b"0") for rs in batches.values() for r in rs)

    task = asyncio.create_task(follow())
    try:
        for i in range(n):
            await producer.send(HOP_TOPIC, str(time.time()).encode(), partition=i % PARTITIONS)
            await asyncio.sleep(1.0 / HOP_RATE)
        await producer.flush()
        await asyncio.sleep(2 * wait_ms / 1000 + 0.2)  # the last fetch comes back
    finally:
        done.set()
        await task
        await producer.stop()
        await consumer.stop()
    q = quantiles_ms(latencies)
    return {
        "fetch_wait_ms": wait_ms,
        "received": len(latencies),
        "p50_ms": q["p50"],
        "p99_ms": q["p99"],
    }


def report(result: dict[str, object]) -> str:
    points = result["points"]
    assert isinstance(points, list)
    rows = [
        [p["log_messages"], p["consumers"], p["broker_cores"], p["vs_fresh_log"]] for p in points
    ]
    text = table(["log (messages)", "consumers", "broker cores", "x fresh log"], rows)
    hop_rows = result["hop_latency_by_fetch_wait"]
    assert isinstance(hop_rows, list)
    hops = table(
        ["fetch wait (ms)", "received", "p50 ms", "p99 ms"],
        [[h["fetch_wait_ms"], h["received"], h["p50_ms"], h["p99_ms"]] for h in hop_rows],
    )
    return (
        f"embedded broker (Tansu), {RATE:g} msg/s produced, alone and with {CONSUMERS} "
        f"consumers following\n{text}\nlargest log with consumers: "
        f"{result['largest_log_vs_fresh_with_consumers']}x the broker CPU on a fresh log\n"
        f"one hop, produce -> consume, at {HOP_RATE:g} msg/s on a fresh topic:\n{hops}"
    )
