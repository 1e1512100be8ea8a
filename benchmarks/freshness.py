"""Freshness: how soon a reward is in the model, on the real stack.

Every decision is learned when its reward window closes, so reward -> learned is about the
window (`reward_wait_seconds`) plus window close -> model updated; the second part is what
the replica reports in GET /v1/models `freshness_seconds`. Decisions are spread over time
(a few per second) so each one is measured on an otherwise quiet pipeline. Reference:
Azure Personalizer refreshed its model every few minutes (model update frequency).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from benchmarks.common import quantiles_ms, stack, table
from benchmarks.shapes import Shape, catalog_body, context

WAIT_SECONDS = 0.5
SHAPE = Shape(10, 20)


def run(quick: bool, out: Path) -> dict[str, object]:
    n = 10 if quick else 150
    rate = 10.0
    with stack() as s:
        body = catalog_body(SHAPE, wait=WAIT_SECONDS)
        httpx.put(f"{s.url}/v1/catalogs/fresh", json=body).raise_for_status()
        samples = asyncio.run(_measure(s.url, n, rate))
        model = httpx.get(f"{s.url}/v1/models/fresh").json()
    reward_to_learned = np.array([x for x in samples if x is not None])
    missing = sum(1 for x in samples if x is None)
    fresh = model.get("freshness_seconds", {})
    q = quantiles_ms(reward_to_learned)
    return {
        "settings": {
            "decisions": n,
            "rate_per_s": rate,
            "reward_wait_seconds": WAIT_SECONDS,
            "poll_interval_ms": 5,
        },
        "reward_to_learned_ms": q,
        "reward_to_learned_minus_wait_ms": {k: v - WAIT_SECONDS * 1000 for k, v in q.items()},
        "window_close_to_model_ms": {k: 1000 * float(v) for k, v in fresh.items()},
        "not_learned_within_timeout": missing,
        "learned_reported": model.get("learned"),
        "targets": {
            "window_close_to_model_p99<=1s": float(fresh.get("0.99", float("inf"))) <= 1.0,
            "reward_to_learned_p99<=1s+wait": q["p99"] <= 1000 + WAIT_SECONDS * 1000,
        },
        "reference": "Azure Personalizer: model update frequency of minutes (default 5 min)",
    }


async def _measure(url: str, n: int, rate: float) -> list[float | None]:
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        bar = tqdm(total=n, desc="freshness", leave=False)

        async def one(i: int) -> float | None:
            await asyncio.sleep(i / rate)
            r = await client.post(
                "/v1/decide", json={"catalog": "fresh", "context": context(SHAPE, i)}
            )
            event_id = r.raise_for_status().json()["event_id"]
            posted = time.perf_counter()
            reward = {"event_id": event_id, "value": float(i % 2)}
            (await client.post("/v1/rewards", json=reward)).raise_for_status()
            deadline = posted + 30.0
            while time.perf_counter() < deadline:
                state = (await client.get(f"/v1/events/{event_id}")).json()
                if state["learned"]:
                    bar.update()
                    return time.perf_counter() - posted
                await asyncio.sleep(0.005)
            bar.update()
            return None

        samples = await asyncio.gather(*(one(i) for i in range(n)))
        bar.close()
        return list(samples)


def report(result: dict[str, object]) -> str:
    rows = []
    for key in ("reward_to_learned_ms", "reward_to_learned_minus_wait_ms"):
        q = result[key]
        assert isinstance(q, dict)
        rows.append([key, q["p50"], q["p99"], q["max"]])
    fresh = result["window_close_to_model_ms"]
    assert isinstance(fresh, dict)
    rows.append(
        [
            "window_close_to_model_ms",
            fresh.get("0.5", float("nan")),
            fresh.get("0.99", float("nan")),
            "",
        ]
    )
    text = table(["measure", "p50", "p99", "max"], rows)
    return f"freshness (reward_wait_seconds={WAIT_SECONDS})\n{text}\ntargets: {result['targets']}"
