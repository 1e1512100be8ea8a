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

Reading guide:
  sizes      the sizes of a run, and the two catalog shapes
  traffic    synthetic behaviour events
  topics     reading a topic back with its records' timestamps
  ingestion  the worker against the passthrough agent (and that agent's process)
  decide     wide contexts and the profile join
  freshness  event accepted -> first decision using it
  __main__   `python -m benchmarks.features passthrough`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from benchmarks.common import save_figure, stack, table
from benchmarks.features.decide import measure_join, measure_wide
from benchmarks.features.freshness import REFERENCE, measure_freshness
from benchmarks.features.ingestion import measure_ingestion
from benchmarks.features.sizes import FULL, NARROW, QUICK, WAIT_SECONDS, WIDE
from benchmarks.shapes import catalog_body, decide_body

FRESHNESS_TARGET_MS = 1000.0
INGESTION_TARGET = 0.5


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
