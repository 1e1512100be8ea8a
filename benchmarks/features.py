"""The feature store: freshness, ingestion throughput and decisions with wide contexts.

freshness  a product_view accepted by the API (202) -> the first decision whose joined
           features show it: a fresh user and category per event, then `POST /v1/decide`
           with `debug: true` every 5 ms until `features` holds the category. The profile
           changelog's timestamps split the wait into its two hops (API -> worker wrote,
           worker wrote -> decision). Reference: Azure Personalizer takes rewards into its
           model every few minutes, and keeps no per-user behaviour features.
ingestion  behaviour events/s aggregated by ONE worker process (`loopwise.cli worker`: profiles,
           then popularity after the repartition by product; RocksDB tables, changelogs)
           beside a passthrough Faust agent that only counts the same messages, in a worker
           process of its own built by the same `create_app` (same Faust settings, same
           idle agents: `python -m benchmarks.features passthrough`). The events are
           produced pre-encoded straight to the topic before a worker starts, so it drains
           a backlog; timed first -> last processed: changelog timestamps for the worker
           (first profile write -> last write of either table), the agent's clock for the
           passthrough.
decide     p50/p99 of a decide with 1,000 context features and 50 actions beside the same
           request with 20 features, at the same open-loop rates (decide_latency's load
           machinery); and the join: decisions for users with a rich profile (200 events
           over 5 sessions) against anonymous ones and the store off, open loop and paired,
           and the profile read in-process.

Every catalog here has a one-hour reward window, so no example is learned while we measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import (
    ROOT,
    Stack,
    env_with,
    quantiles_ms,
    save_figure,
    stack,
    stop,
    table,
)
from benchmarks.decide_latency import ladder
from benchmarks.load import request_bytes
from benchmarks.shapes import THEMES, Shape, catalog_body, context, decide_body
from engine import featurespec, profilefold, profileread, profiles
from engine.behaviour import BehaviourObserved, Product
from engine.features import flatten, merge
from engine.limits import Limits
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

NARROW, WIDE = Shape(50, 20), Shape(50, 1000)
WAIT_SECONDS = 3600.0  # reward window of every catalog here: nothing is learned meanwhile
POLL_SECONDS = 0.005
FRESHNESS_TARGET_MS = 1000.0
INGESTION_TARGET = 0.5
CATEGORIES = (*THEMES, "hiking", "fitness", "golf", "climbing")
BRANDS = tuple(f"brand{i}" for i in range(20))
PRODUCTS = 2000
KINDS = ("product_view", "page_view", "search", "add_to_cart", "remove_from_cart", "purchase")
KIND_WEIGHTS = (55, 20, 10, 8, 2, 5)
DEVICES = ("mobile", "desktop", "tablet")
CHANNELS = ("web", "app", "email")
REFERENCE = (
    "Azure Personalizer: rewards reach the model at its update frequency, minutes "
    "(default 5 min); it keeps no per-user behaviour features"
)


@dataclass(frozen=True)
class Sizes:
    fresh_events: int
    ingest_events: int
    ingest_users: int
    ingest_rounds: int
    rates: tuple[float, ...]
    load_seconds: float
    rich_users: int
    join_rate: float
    join_rounds: int
    join_calls: int
    together: bool  # both ingestion workers at once: quicker, but they share the CPU


QUICK = Sizes(5, 1500, 300, 1, (20.0,), 0.5, 2, 20.0, 1, 50, True)
FULL = Sizes(200, 60_000, 10_000, 2, (50.0, 100.0, 200.0), 5.0, 20, 100.0, 2, 3000, False)


def run(quick: bool, out: Path) -> dict[str, object]:
    size = QUICK if quick else FULL
    ingestion = measure_ingestion(size)  # first, while no stack runs beside it
    with stack() as s:
        for shape in (NARROW, WIDE):
            body = catalog_body(shape, wait=WAIT_SECONDS)
            httpx.put(f"{s.url}/v1/catalogs/{shape.catalog}", json=body).raise_for_status()
            for i in range(20):  # warm-up: models built, caches filled
                httpx.post(f"{s.url}/v1/decide", content=decide_body(shape, i)).raise_for_status()
        wide = measure_wide(s.url, size)
        join = measure_join(s.url, size)
        freshness = measure_freshness(s, size.fresh_events)
    result: dict[str, object] = {
        "settings": {
            "reward_wait_seconds": WAIT_SECONDS,
            "sizes": msgspec.to_builtins(size),
            "shapes": {"narrow": NARROW.name, "wide": WIDE.name},
            "ingestion_subject": "python -m loopwise.cli worker: profiles, then popularity",
            "ingestion_baseline": "create_app's worker + a raw counting agent on the topic",
            "load": "benchmarks.load open loop, 32 connections, one rate at a time",
        },
        "freshness": freshness,
        "ingestion": ingestion,
        "wide_decide": wide,
        "profile_join": join,
    }
    result["targets"] = {
        "freshness_p99<=1s": _get(freshness, "ms", "p99") <= FRESHNESS_TARGET_MS,
        "ingestion_ratio>=0.5": float(str(ingestion["ratio"])) >= INGESTION_TARGET,
    }
    result["plot"] = _plot(result, out)
    return result


def _get(d: object, *keys: str) -> float:
    for k in keys:
        assert isinstance(d, dict)
        d = d[k]
    return float(str(d))


# --- behaviour events -----------------------------------------------------------------------


def product(j: int) -> Product:
    """Product j of the catalog: a fixed category, brand and price."""
    return Product(
        id=f"p{j}",
        category=CATEGORIES[j % len(CATEGORIES)],
        brand=BRANDS[(j * 7) % len(BRANDS)],
        price=float(5 + (j * 13) % 195),
    )


def behaviour(
    rng: random.Random, user: str, session: str, ts: float, products: int = PRODUCTS
) -> BehaviourObserved:
    """One storefront event of a user's session: mostly product views."""
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    item = product(rng.randrange(products)) if kind != "page_view" else None
    return BehaviourObserved(
        kind=kind,
        user_id=user,
        session_id=session,
        ts=ts,
        product=item if kind not in ("search", "purchase") else None,
        query=rng.choice(CATEGORIES) if kind == "search" else None,
        revenue=float(rng.randrange(20, 300)) if kind == "purchase" else 0.0,
        device=rng.choice(DEVICES),
        channel=rng.choice(CHANNELS),
    )


def traffic(n: int, users: int, seed: int = 0, active: int = 200) -> list[BehaviourObserved]:
    """N events of `active` interleaved sessions (3-12 events each) of random users, over
    the last hour."""
    rng = random.Random(seed)
    now = time.time()
    sessions: list[list[Any]] = []
    out: list[BehaviourObserved] = []
    started = 0
    while len(out) < n:
        while len(sessions) < active:
            sessions.append([f"u{rng.randrange(users)}", f"s{started}", rng.randint(3, 12)])
            started += 1
        k = rng.randrange(len(sessions))
        user, session, left = sessions[k]
        out.append(behaviour(rng, user, session, now - 3600.0 + 3600.0 * len(out) / n))
        if left <= 1:
            sessions.pop(k)
        else:
            sessions[k][2] = left - 1
    return out


def rich_history(
    user: str, seed: int, events: int = 200, sessions: int = 5
) -> list[BehaviourObserved]:
    """A returning user's last two hours: `events` events over `sessions` sessions, on
    products p0-p199 (so the join catalog's p0-p49 have a popularity)."""
    rng = random.Random(seed)
    now = time.time()
    return [
        behaviour(
            rng, user, f"{user}-s{i * sessions // events}", now - 7200 + 7000 * i / events, 200
        )
        for i in range(events)
    ]


def as_json(event: BehaviourObserved) -> dict[str, object]:
    """The POST /v1/events body of an event."""
    body = msgspec.to_builtins(event)
    body.pop("type")  # the record tag
    body["type"] = body.pop("kind")
    if event.kind != "purchase":
        body.pop("revenue", None)
    return {k: v for k, v in body.items() if v is not None}


# --- ingestion ------------------------------------------------------------------------------


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


class Record(NamedTuple):
    key: bytes
    ts: float  # the producer's timestamp (Kafka CreateTime), seconds
    size: int  # of the value, bytes


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def read_records(
    settings: Settings,
    topic: str,
    n: int,
    start: dict[int, int] | None = None,
    keys: set[bytes] | None = None,
) -> list[Record]:
    """`n` records of a topic (only those of `keys` if given) from the `start` offsets or
    the beginning, sorted by timestamp; fewer if reads stop bringing any (Tansu may
    under-report end offsets, so those do not say where the end is)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    out: list[Record] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        for tp in tps:
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start[tp.partition])
        idle = 0
        while len(out) < n and idle < 25:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = [r for rs in batches.values() for r in rs]
            idle = 0 if got else idle + 1
            out += [
                Record(r.key or b"", r.timestamp / 1000.0, len(r.value or b""))
                for r in got
                if keys is None or r.key in keys
            ]
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: r.ts)


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


# --- decide: wide contexts and the profile join ---------------------------------------------


def measure_wide(url: str, size: Sizes) -> dict[str, object]:
    """Both shapes at each rate, interleaved, on the same server."""
    host, port = url.removeprefix("http://").split(":")
    reqs = {
        shape.name: [
            request_bytes(host, int(port), "/v1/decide", decide_body(shape, i)) for i in range(64)
        ]
        for shape in (NARROW, WIDE)
    }
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in reqs}
    for rate in size.rates:
        for name, bodies in reqs.items():
            rows[name] += ladder(name, host, int(port), bodies, [rate], size.load_seconds)
    stated = size.rates[len(size.rates) // 2]
    at = {name: next(r for r in rs if r["rate"] == stated) for name, rs in rows.items()}
    return {
        "rows": rows,
        "stated_rate": stated,
        "p50_ms": {name: r["p50_ms"] for name, r in at.items()},
        "p99_ms": {name: r["p99_ms"] for name, r in at.items()},
        "p99_ratio_wide_over_narrow": float(str(at[WIDE.name]["p99_ms"]))
        / float(str(at[NARROW.name]["p99_ms"])),
    }


def measure_join(url: str, size: Sizes) -> dict[str, object]:
    """Decide for users with rich profiles, anonymously, and with the store off: the same
    actions (products with a popularity) and context. Open loop at a stated rate for
    p50/p99; then one request of each kind after the other, many times over, for the
    paired differences (the join's cost, little moved by a noisy neighbour)."""
    histories = [rich_history(f"rich{k}", k) for k in range(size.rich_users)]
    used = _store_profiles(url, histories)
    bodies = {
        "store_off": _join_bodies("join-off", None),
        "anonymous": _join_bodies("join", None),
        "rich_user": _join_bodies("join", histories),
    }
    host, port = url.removeprefix("http://").split(":")
    latencies: dict[str, list[dict[str, object]]] = {name: [] for name in bodies}
    for _ in range(size.join_rounds):
        for name, raw in bodies.items():
            reqs = [request_bytes(host, int(port), "/v1/decide", b) for b in raw]
            latencies[name] += ladder(
                name, host, int(port), reqs, [size.join_rate], size.load_seconds
            )
    p50 = {k: float(np.median([float(str(r["p50_ms"])) for r in v])) for k, v in latencies.items()}
    p99 = {k: float(np.median([float(str(r["p99_ms"])) for r in v])) for k, v in latencies.items()}
    return {
        "rate": size.join_rate,
        "rounds": latencies,
        "p50_ms": p50,
        "p99_ms": p99,
        "paired": paired(url, bodies, size.join_calls // 6),
        "features_joined": {
            "user_and_session": sum(len(v) for k, v in used["features"].items() if k != "context"),
            "actions_with_popularity": len(used["action_features"]),
        },
        "in_process": join_cpu(histories, size.join_calls),
    }


def _store_profiles(url: str, histories: list[list[BehaviourObserved]]) -> dict[str, Any]:
    """The join catalogs, the users' events posted and in the API's replicas; the
    features a decision for the first user joins."""
    products = {e.product.id for h in histories for e in h if e.product is not None}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for name, spec in (("join", None), ("join-off", [])):
            client.put(f"/v1/catalogs/{name}", json=join_catalog(spec)).raise_for_status()
            for warm in _join_bodies(name, None)[:20]:  # warm-up: model built, caches filled
                client.post("/v1/decide", content=warm).raise_for_status()
        for events in histories:
            body = {"events": [as_json(e) for e in events]}
            client.post("/v1/events", json=body).raise_for_status()
        _poll(
            lambda: all(_stored_events(client, h[0].user_id) >= len(h) for h in histories),
            "every event of the rich users",
        )
        _poll(lambda: _gauge(client, "products") >= len(products), "every product's popularity")
        probe = {**msgspec.json.decode(_join_bodies("join", histories)[0]), "debug": True}
        return dict(client.post("/v1/decide", json=probe).raise_for_status().json())


def _stored_events(client: httpx.Client, user: str) -> int:
    r = client.get(f"/v1/users/{user}/features")
    return int(r.json()["events"]) if r.status_code == 200 else 0


def _gauge(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"loopwise_feature_store_{name} "):
            return float(line.split()[1])
    return 0.0


def _poll(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not reach the API's replica in {timeout:g} s")
        time.sleep(0.1)


def paired(url: str, bodies: dict[str, list[bytes]], n: int) -> dict[str, float]:
    """Median latencies of one request of each kind after the other (the order rotating),
    and the medians of the differences within each turn."""
    names = list(bodies)
    ms: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for i in range(n):
            for name in names[i % 3 :] + names[: i % 3]:
                started = time.perf_counter()
                client.post("/v1/decide", content=bodies[name][i % 64]).raise_for_status()
                ms[name].append((time.perf_counter() - started) * 1000)
    x = {name: np.array(v) for name, v in ms.items()}
    return {
        "turns": float(n),
        **{f"{name}_p50_ms": float(np.median(v)) for name, v in x.items()},
        "user_join_ms": float(np.median(x["rich_user"] - x["anonymous"])),
        "popularity_join_ms": float(np.median(x["anonymous"] - x["store_off"])),
    }


def join_catalog(spec: list[object] | None) -> dict[str, object]:
    """The narrow catalog, each action showing product p<j>; `spec` None: the default."""
    body = catalog_body(NARROW, wait=WAIT_SECONDS)
    actions: list[dict[str, Any]] = body["actions"]  # type: ignore[assignment]  # as built
    for j, action in enumerate(actions):
        action["metadata"]["product_id"] = f"p{j}"
    if spec is not None:
        body["features"] = spec
    return body


def _join_bodies(catalog: str, histories: list[list[BehaviourObserved]] | None) -> list[bytes]:
    """64 decide bodies; with `histories`, each for one of the users and its sessions."""
    out: list[bytes] = []
    for i in range(64):
        body: dict[str, object] = {"catalog": catalog, "context": context(NARROW, i)}
        if histories is not None:
            event = histories[i % len(histories)][(i * 37) % len(histories[0])]
            body.update(user_id=event.user_id, session_id=event.session_id)
        out.append(msgspec.json.encode(body))
    return out


def join_cpu(histories: list[list[BehaviourObserved]], calls: int) -> dict[str, float]:
    """What the API does per decision to join a stored profile: decode it from the
    replica's bytes, read the declared features, merge them under the request's."""
    limits = Limits()
    user = None
    for event in histories[0]:
        user = profilefold.observe(user, event)
    assert user is not None
    raw = profiles.encode(user)
    session = histories[0][-1].session_id
    request = flatten(context(NARROW, 0), limits)
    now = time.time()
    started = time.perf_counter()
    for _ in range(calls):
        stored = profileread.features(featurespec.DEFAULT_SPEC, profiles.decode(raw), session, now)
        merge(stored, request)
    elapsed = time.perf_counter() - started
    t0 = time.perf_counter()
    for _ in range(calls):
        profiles.decode(raw)
    decode_s = time.perf_counter() - t0
    return {
        "us_per_join": elapsed / calls * 1e6,
        "us_decode": decode_s / calls * 1e6,
        "profile_bytes": float(len(raw)),
        "stored_features": float(sum(len(v) for v in stored.values())),
    }


# --- freshness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fresh:
    """One event: its user, when the API accepted it and when a decision first used it
    (wall clock, seconds), and how many decisions that took."""

    user: str
    accepted: float
    used: float
    polls: int


def measure_freshness(s: Stack, n: int) -> dict[str, object]:
    """Events one at a time, a random 50-150 ms apart, each for a fresh user and category;
    the worker's changelog timestamps split each wait into its two hops."""
    settings = from_env().with_(broker=_broker_of(s))
    topic = profiles_changelog(settings)
    start = asyncio.run(end_offsets(settings, topic))
    samples, missing = asyncio.run(_fresh_events(s.url, n))
    users = {x.user.encode() for x in samples}
    records = asyncio.run(read_records(settings, topic, len(users), start, users))
    written = {r.key: r.ts for r in records}
    hops = [
        (written[k] - x.accepted, x.used - written[k])
        for x in samples
        if (k := x.user.encode()) in written
    ]
    return {
        "events": n,
        "poll_interval_ms": POLL_SECONDS * 1000,
        "ms": quantiles_ms([x.used - x.accepted for x in samples]),
        "accepted_to_worker_wrote_ms": quantiles_ms([h[0] for h in hops]),
        "worker_wrote_to_used_ms": quantiles_ms([h[1] for h in hops]),
        "samples_ms": [round((x.used - x.accepted) * 1000, 2) for x in samples],
        "decisions_per_event": float(np.mean([x.polls for x in samples])) if samples else 0.0,
        "not_seen_within_10s": missing,
        "reference": REFERENCE,
    }


def _broker_of(s: Stack) -> str:
    """The stack's embedded broker, from its command line."""
    args = [str(a) for a in s.process.args]  # type: ignore[union-attr]  # a list here
    return f"127.0.0.1:{args[args.index('--broker-port') + 1]}"


async def _fresh_events(url: str, n: int) -> tuple[list[Fresh], int]:
    rng = random.Random(1)
    samples: list[Fresh] = []
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        for i in range(n):
            await asyncio.sleep(rng.uniform(0.05, 0.15))
            got = await _first_use(client, i)
            if got is not None:
                samples.append(got)
    return samples, n - len(samples)


async def _first_use(client: httpx.AsyncClient, i: int) -> Fresh | None:
    user, category = f"fresh{i}-{time.time_ns()}", f"fresh{i}"
    item = {"id": f"f{i}", "category": category, "brand": "acme", "price": 80}
    event = {"type": "product_view", "user_id": user, "session_id": "s1", "product": item}
    decide = {"catalog": NARROW.catalog, "context": context(NARROW, i), "debug": True}
    decide.update(user_id=user, session_id="s1")
    wanted = f"views_1h.{category}"
    r = await client.post("/v1/events", json=event)
    if r.status_code != 202:
        raise RuntimeError(f"the event was not accepted: {r.status_code} {r.text}")
    accepted = time.time()
    polls = 0
    while time.time() < accepted + 10.0:
        polls += 1
        used = (await client.post("/v1/decide", json=decide)).raise_for_status().json()
        if wanted in used["features"].get("user_features", {}):
            return Fresh(user, accepted, time.time(), polls)
        await asyncio.sleep(POLL_SECONDS)
    return None


# --- plot and report ------------------------------------------------------------------------


def _plot(result: dict[str, object], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fresh, ingest, wide = result["freshness"], result["ingestion"], result["wide_decide"]
    assert isinstance(fresh, dict) and isinstance(ingest, dict) and isinstance(wide, dict)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    samples = np.sort(np.array(fresh["samples_ms"], dtype=np.float64))
    axes[0].step(samples, np.arange(1, samples.size + 1) / max(samples.size, 1), where="post")
    axes[0].axvline(FRESHNESS_TARGET_MS, color="grey", lw=0.8, ls="--", label="target p99")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("event accepted -> first decision using it (ms)")
    axes[0].set_ylabel("fraction of events")
    axes[0].legend(fontsize=8)
    rounds = ingest["rounds"]
    assert isinstance(rounds, list)
    x = np.arange(len(rounds))
    axes[1].bar(x - 0.2, [r["passthrough_per_s"] for r in rounds], 0.4, label="passthrough")
    axes[1].bar(x + 0.2, [r["aggregated_per_s"] for r in rounds], 0.4, label="aggregated")
    axes[1].set_xticks(x, [f"round {i + 1}" for i in x])
    axes[1].set_ylabel("behaviour events / s, one worker")
    axes[1].legend(fontsize=8)
    for (name, rows), color in zip(wide["rows"].items(), ("C0", "C1"), strict=True):
        rates = [float(r["rate"]) for r in rows]
        axes[2].plot(rates, [float(r["p99_ms"]) for r in rows], "o-", c=color, label=f"{name} p99")
        axes[2].plot(rates, [float(r["p50_ms"]) for r in rows], "x--", c=color, label=f"{name} p50")
    axes[2].set_xlabel("offered rate (req/s, open loop)")
    axes[2].set_ylabel("decide latency (ms)")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    return save_figure(
        fig, out / "features.png", "feature store: freshness, ingestion, wide decisions"
    )


def report(result: dict[str, object]) -> str:
    fresh, ingest = result["freshness"], result["ingestion"]
    wide, join = result["wide_decide"], result["profile_join"]
    assert isinstance(fresh, dict) and isinstance(ingest, dict)
    assert isinstance(wide, dict) and isinstance(join, dict)
    rate, at = wide["stated_rate"], f"at {join['rate']:g} req/s"
    cpu, joined, pair = join["in_process"], join["features_joined"], join["paired"]
    rows = [
        ["freshness: event accepted -> first decision using it (ms)", *_qs(fresh["ms"])],
        ["  accepted -> worker wrote the profile (ms)", *_qs(fresh["accepted_to_worker_wrote_ms"])],
        ["  worker wrote -> a decision used it (ms)", *_qs(fresh["worker_wrote_to_used_ms"])],
        ["ingestion: passthrough agent (events/s)", ingest["passthrough_per_s"], ""],
        ["ingestion: aggregated, profiles + popularity (events/s)", ingest["aggregated_per_s"], ""],
        ["ingestion: ratio aggregated / passthrough", ingest["ratio"], ""],
        ["ingestion: mean profile written per event (bytes)", ingest["profile_bytes"], ""],
        [f"decide {NARROW.name} at {rate:g} req/s (ms)", *_qs(wide, NARROW.name)],
        [f"decide {WIDE.name} at {rate:g} req/s (ms)", *_qs(wide, WIDE.name)],
        [f"decide {at}, feature store off (ms)", *_qs(join, "store_off")],
        [f"decide {at}, anonymous: popularity joined (ms)", *_qs(join, "anonymous")],
        [f"decide {at}, rich user: + user and session (ms)", *_qs(join, "rich_user")],
        ["user join: paired delta rich - anonymous, median (ms)", pair["user_join_ms"], ""],
        ["popularity join: paired delta anonymous - off (ms)", pair["popularity_join_ms"], ""],
        ["user join in-process: decode + features + merge (us)", cpu["us_per_join"], ""],
        [
            "features joined: user+session / actions with popularity",
            joined["user_and_session"],
            joined["actions_with_popularity"],
        ],
    ]
    text = table(["measure", "p50 / value", "p99"], rows)
    return f"features\n{text}\nreference: {REFERENCE}\ntargets: {result['targets']}"


def _qs(d: dict[str, Any], name: str | None = None) -> list[object]:
    if name is None:
        return [d["p50"], d["p99"]]
    return [d["p50_ms"][name], d["p99_ms"][name]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.features")
    sub = parser.add_subparsers(required=True, dest="command")
    p = sub.add_parser("passthrough", help="the ingestion baseline: a counting Faust agent")
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    passthrough_worker(args.topic, args.events, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
