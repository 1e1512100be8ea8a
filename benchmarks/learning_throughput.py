"""Learning throughput: rewards/s through API -> broker -> join -> VW, against bare VW.

N decisions are made as fast as the API takes them (a few in flight), each rewarded at
once (batches of 100); the catalog's reward window is short, so the join emits examples
soon after. Throughput = N / (first decision -> /v1/models learned == N). In the same run,
bare `vowpalwabbit` learns N pre-built text examples of the same shape with the same
command line: the ratio is how much of VW's own speed survives the pipeline.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import vowpalwabbit
from tqdm import tqdm

from benchmarks.common import stack, table
from benchmarks.shapes import Shape, catalog_body, context
from engine import vwformat
from engine.features import flatten
from engine.learning import Learning
from engine.limits import Limits
from engine.sampling import rng_for
from policies.vw import vw_args

SHAPE = Shape(10, 20)
WAIT_SECONDS = 0.2
IN_FLIGHT = 8


def run(quick: bool, out: Path) -> dict[str, object]:
    n = 60 if quick else 3000
    bare = bare_vw(n)
    with stack() as s:
        httpx.put(
            f"{s.url}/v1/catalogs/learn", json=catalog_body(SHAPE, wait=WAIT_SECONDS)
        ).raise_for_status()
        pipeline = asyncio.run(_pipeline(s.url, n))
    ratio = pipeline["end_to_end_per_s"] / bare["learn_per_s"]
    return {
        "settings": {
            "examples": n,
            "shape": SHAPE.name,
            "reward_wait_seconds": WAIT_SECONDS,
            "decisions_in_flight": IN_FLIGHT,
            "reward_batch": 100,
        },
        "bare_vw": bare,
        "pipeline": pipeline,
        "ratio_pipeline_over_bare_vw": ratio,
        "targets": {"ratio>=0.3": ratio >= 0.3},
    }


def bare_vw(n: int) -> dict[str, float]:
    """VW learn on N pre-built examples of the same shape, the replica's command line."""
    limits = Limits()
    body = catalog_body(SHAPE)
    actions = body["actions"]
    assert isinstance(actions, list)
    bodies = [vwformat.action_body(flatten(a["features"], limits), a["id"]) for a in actions]
    examples: list[list[str]] = []
    for i in range(n):
        chosen = int(rng_for(str(i)).random() * len(bodies))
        label = vwformat.cb_label(-float(i % 2), 1.0 / len(bodies))
        shared = vwformat.shared_line(flatten(context(SHAPE, i), limits))
        lines = [shared]
        lines += [vwformat.labeled(b, label if j == chosen else None) for j, b in enumerate(bodies)]
        examples.append(lines)
    ws = vowpalwabbit.Workspace(vw_args(Learning()))
    started = time.perf_counter()
    for lines in examples:
        ws.learn(lines)
    elapsed = time.perf_counter() - started
    ws.finish()
    return {"learn_per_s": n / elapsed, "us_per_example": elapsed / n * 1e6}


async def _pipeline(url: str, n: int) -> dict[str, float]:
    learned_log: list[tuple[float, int]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        start_learned = int((await client.get("/v1/models/learn")).json()["learned"])
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        pending: list[str] = []
        bar = tqdm(total=n, desc="learning: learned", leave=False)

        async def flush() -> None:
            batch, pending[:] = pending[:], []
            if batch:
                rewards = [{"event_id": e, "value": 1.0} for e in batch]
                r = await client.post("/v1/rewards", json={"rewards": rewards})
                r.raise_for_status()

        async def decider() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post(
                    "/v1/decide", json={"catalog": "learn", "context": context(SHAPE, i)}
                )
                pending.append(r.raise_for_status().json()["event_id"])
                if len(pending) >= 100:
                    await flush()

        t0 = time.perf_counter()
        await asyncio.gather(*(decider() for _ in range(IN_FLIGHT)))
        await flush()
        posted = time.perf_counter() - t0
        deadline = time.perf_counter() + 120.0
        learned = 0
        while time.perf_counter() < deadline:
            learned = int((await client.get("/v1/models/learn")).json()["learned"]) - start_learned
            learned_log.append((time.perf_counter() - t0, learned))
            bar.n = learned
            bar.refresh()
            if learned >= n:
                break
            await asyncio.sleep(0.05)
        bar.close()
        total = time.perf_counter() - t0
    return {
        "posted_seconds": posted,
        "post_rate_per_s": n / posted,
        "all_learned_seconds": total,
        "end_to_end_per_s": learned / total,
        "lag_after_last_post_s": total - posted,
        "learned": float(learned),
        "learn_rate_after_posting_per_s": _slope(learned_log),
    }


def _slope(log: list[tuple[float, int]]) -> float:
    if len(log) < 3:
        return float("nan")
    t = np.array([x for x, _ in log])
    y = np.array([v for _, v in log], dtype=np.float64)
    if y[-1] <= y[0]:
        return float("nan")
    return float((y[-1] - y[0]) / (t[-1] - t[0])) if t[-1] > t[0] else float("nan")


def report(result: dict[str, object]) -> str:
    bare = result["bare_vw"]
    pipe = result["pipeline"]
    assert isinstance(bare, dict) and isinstance(pipe, dict)
    rows = [
        ["bare VW learn (examples/s)", bare["learn_per_s"]],
        ["pipeline end to end (examples/s)", pipe["end_to_end_per_s"]],
        ["  decide+reward posting rate (/s)", pipe["post_rate_per_s"]],
        ["  lag after the last post (s)", pipe["lag_after_last_post_s"]],
        ["ratio pipeline / bare VW", result["ratio_pipeline_over_bare_vw"]],
    ]
    return "learning_throughput\n" + table(["measure", "value"], rows)
