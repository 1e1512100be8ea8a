"""Experiments' and evaluations' cost to decisions (`python -m benchmarks experiments`).

1. Overhead: the real decide handler (api.decide.decide_route on a Starlette Request, the
   API's own stores, no server) on one catalog without an experiment and on the same
   catalog with three arms (its model, an epsilon model of its own, a priority rule),
   calls interleaved one by one so both see the same machine; p50 and p99 per call and
   their ratio (the issue's target: <= 1.1x).
2. Beside an evaluation: a real stack (`loopwise up`) decides and learns a log, then
   decide latency over HTTP is sampled with no job running and while an evaluation job
   replays the log in its own process (rule and learning candidates), interleaved in
   rounds; the ratio of p50 and p99, and the job's rows per second.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from api.serving.state import State, open_state
from benchmarks.common import quantiles_ms, stack, table
from benchmarks.cost_stages import decide_directly
from streams.settings import Settings

ACTIONS = [{"id": f"a{i}", "features": {"banner": {"i": i, "c": f"c{i % 5}"}}} for i in range(50)]
EPSILON = {"learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.1}}}
ARMS = {
    "name": "bench",
    "arms": [
        {"name": "model", "share": 0.5},
        {"name": "eps", "share": 0.25, "policy": EPSILON},
        {"name": "merch", "share": 0.25, "policy": {"rule": "priority", "priority": ["a3"]}},
    ],
}


def run(quick: bool, out: Path) -> dict[str, object]:
    calls = 300 if quick else 6000
    overhead = _overhead(calls)
    beside = _beside_evaluation(200 if quick else 5000, 100 if quick else 1500)
    return {"overhead": overhead, "beside_evaluation": beside}


def _overhead(calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        state = open_state(Settings(data_dir=Path(tmp)))
        try:
            for name, extra in (("plain", {}), ("experiment", {"experiment": ARMS})):
                state.catalogs.put(name, {"actions": ACTIONS, **extra}, time.time())
            times = asyncio.run(_interleaved(state, ("plain", "experiment"), calls))
        finally:
            state.replica.close()
    plain, arms = quantiles_ms(times["plain"]), quantiles_ms(times["experiment"])
    return {
        "calls": calls,
        "actions": len(ACTIONS),
        "plain_ms": plain,
        "experiment_ms": arms,
        "p50_ratio": round(arms["p50"] / plain["p50"], 3),
        "p99_ratio": round(arms["p99"] / plain["p99"], 3),
    }


async def _interleaved(
    state: State, catalogs: tuple[str, ...], calls: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {c: [] for c in catalogs}

    async def one(catalog: str, i: int) -> float:
        body = b'{"catalog": "%s", "user_id": "u%d", "context": {"user": {"segment": "s%d"}}}' % (
            catalog.encode(),
            i % 997,
            i % 4,
        )
        started = time.perf_counter()
        await decide_directly(state, body)
        return time.perf_counter() - started

    for i in range(100):  # warm both
        for c in catalogs:
            await one(c, i)
    for i in range(calls):
        for c in catalogs if i % 2 else reversed(catalogs):
            out[c].append(await one(c, i))
        if i % max(1, calls // 10) == 0:
            print(f"  overhead: {i}/{calls} calls", flush=True)
    return out


def _beside_evaluation(decisions: int, samples: int) -> dict[str, object]:
    catalog = {"actions": ACTIONS[:10], "learning": {"reward_wait_seconds": 1.0}}
    with stack() as s, httpx.Client(base_url=s.url, timeout=30.0) as http:
        http.put("/v1/catalogs/shop", json=catalog).raise_for_status()
        rng = np.random.default_rng(1)
        started = time.time()
        for n in range(decisions):
            d = http.post("/v1/decide", json=_body(n)).json()
            if rng.random() < 0.3:
                http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1.0})
            if n % max(1, decisions // 10) == 0:
                print(f"  log: {n}/{decisions} decisions", flush=True)
        _wait_learned(http, decisions)
        idle: list[float] = []
        busy: list[float] = []
        job: dict[str, Any] | None = None
        result: dict[str, Any] = {}
        for round_ in range(4):  # idle, job, idle, job: the machine's drift falls on both
            running = round_ % 2 == 1
            if running:
                job = http.post(
                    "/v1/catalogs/shop/evaluations",
                    json={
                        "since": started - 60,
                        "candidates": [
                            {"name": "first", "rule": "first"},
                            {"name": "eps", **EPSILON},
                        ],
                    },
                ).json()
            sink = busy if running else idle
            for k in range(samples // 2):
                t = time.perf_counter()
                http.post("/v1/decide", json=_body(k)).raise_for_status()
                sink.append(time.perf_counter() - t)
            if running and job is not None:
                result = _wait_job(http, job["location"])
            print(f"  latency round {round_ + 1}/4 ({'with' if running else 'without'} a job)")
    idle_q, busy_q = quantiles_ms(idle), quantiles_ms(busy)
    return {
        "decisions_logged": decisions,
        "idle_ms": idle_q,
        "with_evaluation_ms": busy_q,
        "p50_ratio": round(busy_q["p50"] / idle_q["p50"], 3),
        "p99_ratio": round(busy_q["p99"] / idle_q["p99"], 3),
        "evaluation_rows": result.get("rows"),
        "evaluation_rows_per_second": result.get("rows_per_second"),
        "evaluation_state": result.get("state"),
    }


def _body(n: int) -> dict[str, Any]:
    return {"catalog": "shop", "user_id": f"u{n % 500}", "context": {"user": {"s": f"s{n % 4}"}}}


def _wait_learned(http: httpx.Client, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(http.get("/v1/models/shop").json()["learned"]) >= n:
            return
        time.sleep(0.5)
    raise RuntimeError("the log was not learned in time")


def _wait_job(http: httpx.Client, location: str, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = http.get(location).json()
        if status["state"] in ("done", "failed", "stopped"):
            return status
        time.sleep(0.5)
    raise RuntimeError("the evaluation did not finish in time")


def report(result: dict[str, object]) -> str:
    o: Any = result["overhead"]
    b: Any = result["beside_evaluation"]
    rows = [
        _row("3 arms vs none (handler)", o, "plain_ms", "experiment_ms"),
        _row("evaluation beside (HTTP)", b, "idle_ms", "with_evaluation_ms"),
    ]
    head = ["decide", "base p50 ms", "p50 ms", "ratio", "base p99 ms", "p99 ms", "ratio"]
    job = (
        f"evaluation job: {b['evaluation_rows']} rows at {b['evaluation_rows_per_second']} "
        f"rows/s (2 candidates, one of them learning), {b['evaluation_state']}"
    )
    return table(head, rows) + "\n" + job


def _row(name: str, r: Any, base: str, subject: str) -> list[object]:
    return [
        name,
        round(r[base]["p50"], 3),
        round(r[subject]["p50"], 3),
        r["p50_ratio"],
        round(r[base]["p99"], 3),
        round(r[subject]["p99"], 3),
        r["p99_ratio"],
    ]
