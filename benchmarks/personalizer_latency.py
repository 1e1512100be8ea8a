"""Rank through the Personalizer path beside Loopwise's own decide, in the same run.

Three targets decide over the same 50 actions (each with its features) for the same
10-feature contexts, on catalogs with the same learning settings, on one `loopwise up`:

- `stored`: `POST /v1/decide` on a catalog that stores the 50 actions;
- `inline`: `POST /v1/decide` with the 50 actions and their features in the request;
- `rank`: `POST /loops/{loop}/personalizer/v1.0/rank`, the request the Personalizer SDKs
  send (features as lists of objects, one namespace each), through the adapter.

Server side: open-loop load (benchmarks.load) at a fixed rate, in rounds whose target order
rotates, so the learning each run leaves behind and the machine's other load fall on all
three alike; latency from each request's scheduled time. Client side: the v1.0 SDK's own
`rank()` called one at a time, alternating with the same calls made with httpx (stored and
inline), which adds what the SDK's client (msrest, requests) costs a caller.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
from tqdm import tqdm

from benchmarks import common
from benchmarks.common import quantiles_ms, save_figure, stack, table
from benchmarks.load import request_bytes, run_load
from benchmarks.shapes import Shape, catalog_body, context

SHAPE = Shape(50, 10)
TARGETS = ("stored", "inline", "rank")
RATE = 100.0  # decisions per second, each target in its own run
LOOP = "bench-rank"
CATALOGS = {"stored": "bench-stored", "inline": "bench-inline", "rank": LOOP}
REWARD_WAIT_S = 2.0  # each decision is learned (with the default reward) this long after
LEARNING = {
    # a Personalizer loop's defaults (api.personalizer.loops) on every target alike
    "exploration": {"algorithm": "regcbopt", "min_reward": -1.0, "max_reward": 1.0},
    "reward_wait_seconds": REWARD_WAIT_S,
}
CONSTRAINTS = {"exploration_floor": 0.2}
TARGET_RATIO = 1.5  # inline / stored at p50 and p99 (the target)


def _actions() -> list[dict[str, Any]]:
    """The 50 actions with their features, as catalog_body stores them."""
    body = catalog_body(SHAPE)
    actions: list[dict[str, Any]] = body["actions"]  # type: ignore[assignment]
    return [{"id": a["id"], "features": a["features"]} for a in actions]


def bodies(i: int) -> dict[str, bytes]:
    """Request i of every target: the same context and actions, each in its own words."""
    ctx = context(SHAPE, i)
    actions = _actions()
    personalizer_actions = [
        {"id": a["id"], "features": [{ns: v} for ns, v in a["features"].items()]} for a in actions
    ]
    return {
        "stored": msgspec.json.encode({"catalog": CATALOGS["stored"], "context": ctx}),
        "inline": msgspec.json.encode(
            {"catalog": CATALOGS["inline"], "context": ctx, "actions": actions}
        ),
        "rank": msgspec.json.encode(
            {
                "contextFeatures": [{ns: v} for ns, v in ctx.items()],
                "actions": personalizer_actions,
            }
        ),
    }


PATHS = {
    "stored": "/v1/decide",
    "inline": "/v1/decide",
    "rank": f"/loops/{LOOP}/personalizer/v1.0/rank",
}


def prepare(url: str) -> None:
    """The three catalogs, the same settings; a warm-up that builds every model."""
    stored = {**catalog_body(SHAPE), "learning": LEARNING, "constraints": CONSTRAINTS}
    empty = {"actions": [], "learning": LEARNING, "constraints": CONSTRAINTS}
    for target, name in CATALOGS.items():
        body = stored if target == "stored" else empty
        httpx.put(f"{url}/v1/catalogs/{name}", json=body).raise_for_status()
    for i in range(30):
        for target, request in bodies(i).items():
            r = httpx.post(f"{url}{PATHS[target]}", content=request)
            assert r.status_code in (200, 201), (target, r.status_code, r.text)


def settle(url: str) -> None:
    """Every decision so far learned, so one run's learning is not in the next run."""
    common.settle(url, list(CATALOGS.values()), REWARD_WAIT_S)


def server_side(url: str, rounds: int, duration: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    requests = {
        target: [
            request_bytes(host, int(port), PATHS[target], bodies(i)[target]) for i in range(256)
        ]
        for target in TARGETS
    }
    latencies: dict[str, list[float]] = {t: [] for t in TARGETS}
    runs: list[dict[str, Any]] = []
    with tqdm(total=rounds * len(TARGETS), desc=f"open loop at {RATE:g}/s", unit="run") as bar:
        for r in range(rounds):
            order = TARGETS[r % 3 :] + TARGETS[: r % 3]
            for target in order:
                result = run_load(host, int(port), requests[target], RATE, duration)
                latencies[target] += result.latencies
                q = quantiles_ms(result.latencies)
                runs.append(
                    {
                        "round": r,
                        "target": target,
                        "p50_ms": q["p50"],
                        "p99_ms": q["p99"],
                        "ok": result.ok,
                        "sent": result.sent,
                        "errors": result.errors,
                    }
                )
                bar.update(1)
                settle(url)
    quantiles = {t: quantiles_ms(latencies[t]) for t in TARGETS}
    return {
        "rate": RATE,
        "duration_s": duration,
        "rounds": rounds,
        "quantiles_ms": quantiles,
        "ratios": _ratios(quantiles),
        "per_round_p50_ratio": _per_round(runs),
        "runs": runs,
        "samples_ms": {t: [x * 1000.0 for x in latencies[t]] for t in TARGETS},  # the plot's
    }


def _ratios(q: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for target in ("inline", "rank"):
        for level in ("p50", "p99"):
            out[f"{target}/stored {level}"] = round(q[target][level] / q["stored"][level], 3)
    return out


def _per_round(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median over rounds of each round's p50 ratio to stored: robust to a round that
    the machine's other load slowed for all."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["target"]] = run["p50_ms"]
    return {
        target: round(statistics.median(r[target] / r["stored"] for r in by_round.values()), 3)
        for target in ("inline", "rank")
    }


def client_side(url: str, calls: int) -> dict[str, Any]:
    """The v1.0 SDK's rank() against httpx's stored and inline decides, one call at a time,
    alternating; each call's wall time as its caller sees it."""
    from azure.cognitiveservices.personalizer import PersonalizerClient
    from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
    from msrest.authentication import CognitiveServicesCredentials

    # the SDK is untyped (msrest); it is the subject here, called as its users call it
    sdk = PersonalizerClient(  # type: ignore[no-untyped-call]
        f"{url}/loops/{LOOP}", CognitiveServicesCredentials("unused")
    )
    http = httpx.Client(base_url=url)
    times: dict[str, list[float]] = {"sdk rank": [], "httpx stored": [], "httpx inline": []}

    def sdk_rank(i: int) -> None:
        rank = msgspec.json.decode(bodies(i)["rank"])
        actions = [RankableAction(id=a["id"], features=a["features"]) for a in rank["actions"]]
        request = RankRequest(actions=actions, context_features=rank["contextFeatures"])
        sdk.rank(request)  # type: ignore[no-untyped-call]

    def decide(target: str) -> Callable[[int], None]:
        def call(i: int) -> None:
            http.post("/v1/decide", content=bodies(i)[target]).raise_for_status()

        return call

    calls_by_name = {
        "sdk rank": sdk_rank,
        "httpx stored": decide("stored"),
        "httpx inline": decide("inline"),
    }
    try:
        for i in tqdm(range(calls), desc="one caller", unit="round"):
            for name, call in calls_by_name.items():
                started = time.perf_counter()
                call(i)
                times[name].append(time.perf_counter() - started)
    finally:
        http.close()
    return {"calls": calls, "quantiles_ms": {n: quantiles_ms(t) for n, t in times.items()}}


def run(quick: bool, out: Path) -> dict[str, object]:
    rounds, duration, calls = (1, 1.0, 20) if quick else (6, 8.0, 300)
    with stack() as s:
        prepare(s.url)
        settle(s.url)
        server = server_side(s.url, rounds, duration)
        client = client_side(s.url, calls)
    server["plot"] = _plot(server.pop("samples_ms"), float(server["rate"]), out)
    return {
        "shape": {"actions": SHAPE.actions, "context_features": SHAPE.features},
        "learning": LEARNING,
        "constraints": CONSTRAINTS,
        "target_ratio": TARGET_RATIO,
        "server": server,
        "client": client,
    }


def _plot(samples_ms: dict[str, list[float]], rate: float, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for target in TARGETS:
        samples = np.sort(np.asarray(samples_ms[target]))
        if samples.size:
            ax.plot(samples, np.arange(1, samples.size + 1) / samples.size, label=target)
    ax.set_xscale("log")
    ax.set_xlabel("latency from the scheduled time (ms, log)")
    ax.set_ylabel("share of requests")
    ax.grid(alpha=0.3)
    ax.legend()
    title = f"50 actions x 10 context features at {rate:g}/s, open loop"
    return save_figure(fig, out / "personalizer_latency.png", title)


def report(result: dict[str, object]) -> str:
    server: dict[str, Any] = result["server"]  # type: ignore[assignment]
    client: dict[str, Any] = result["client"]  # type: ignore[assignment]
    q = server["quantiles_ms"]
    stored = q["stored"]
    rows = [
        [
            t,
            f"{q[t]['p50']:.2f}",
            f"{q[t]['p99']:.2f}",
            f"{q[t]['p50'] / stored['p50']:.2f}x",
            f"{q[t]['p99'] / stored['p99']:.2f}x",
        ]
        for t in TARGETS
    ]
    lines = [
        f"server side, open loop at {server['rate']:g}/s, {server['rounds']} rounds of "
        f"{server['duration_s']:g} s per target:",
        table(["target", "p50 ms", "p99 ms", "p50 vs stored", "p99 vs stored"], rows),
        f"median over rounds of the p50 ratio to stored: {server['per_round_p50_ratio']}",
        f"target: inline <= {result['target_ratio']}x stored",
        f"one caller, {client['calls']} calls each, alternating:",
        table(
            ["caller", "p50 ms", "p99 ms"],
            [[n, f"{v['p50']:.2f}", f"{v['p99']:.2f}"] for n, v in client["quantiles_ms"].items()],
        ),
    ]
    return "\n".join(lines)
