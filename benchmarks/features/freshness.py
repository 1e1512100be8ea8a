"""Freshness: a product_view accepted by the API (202) -> the first decision whose joined
features show it, a fresh user and category per event, polled with `debug: true`; the
profile changelog's timestamps split the wait into its two hops (API -> worker wrote,
worker wrote -> decision)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx
import numpy as np

from benchmarks.common import (
    Stack,
    quantiles_ms,
)
from benchmarks.features.sizes import NARROW
from benchmarks.features.topics import end_offsets, read_records
from benchmarks.shapes import context
from streams.broker import (
    profiles_changelog,
)
from streams.settings import from_env

POLL_SECONDS = 0.005


REFERENCE = (
    "Azure Personalizer: rewards reach the model at its update frequency, minutes "
    "(default 5 min); it keeps no per-user behaviour features"
)


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
