"""A Personalizer-style storefront learns on the real stack
(`python -m benchmarks personalizer_storefront`).

The world (`benchmarks.storefront_world`): 500 products, each request a different random
30 of them with per-request features (discount, so price; stock level and a low-stock
flag), a known click model in which context x product features matter, per-request ones
included. Three catalogs on one `loopwise up` (embedded Tansu broker) play the same
visitors, candidates and click draws, interleaved visitor by visitor:

- `inline`: `POST /v1/decide` with the 30 `actions` inline, stable and per-request
  features on each; the catalog stores no actions, only its learning settings.
- `stored`: the catalog stores the 500 products with their stable features; a request
  names its 30 in `candidates`. A request cannot send features per action, so this arm
  decides on the visitor and the stable features alone (and the product id).
- `uniform`: the inline requests on a catalog with `learning.policy: uniform`.

Every click is posted as a reward (`POST /v1/rewards`, value 1); no click is learned as
the default reward 0 after the reward wait (1 s). Per window of decisions: each arm's CTR
and its expected CTR (the true click probability of what it showed), beside the oracle
(the best of the 30), the best a policy blind to the per-request features can do, and
uniform's expectation; mean and 95% interval over seeds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from benchmarks import storefront_world as world
from benchmarks.common import Floats, curve_ci, mean_ci, quantiles_ms, save_figure, stack, table
from sim.simulate import wait_learned

ARMS = ("inline", "stored", "uniform")
REWARD_WAIT_S = 1.0
CONCURRENCY = 3  # visitors in flight, as sim/simulate.py's end-to-end storefront
LAST_SHARE = 0.25  # "learned": the last quarter of the decisions


@dataclass
class Arm:
    """What one arm showed, and what it cost, over one seed's visitors."""

    shown: list[int]  # column of the candidate shown, per visitor (-1 until decided)
    logged_probability: list[float]
    latency_s: list[float] = field(default_factory=list)
    policies: Counter[str] = field(default_factory=Counter)
    rewards: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    learned: int = 0
    lag: list[int] = field(default_factory=list)  # decided - learned, sampled each second
    freshness_s: dict[str, float] = field(default_factory=dict)  # reward wait included


def run(quick: bool, out: Path) -> dict[str, object]:
    visitors = 300 if quick else 6000
    seeds = (0,) if quick else (0, 1, 2)
    window = 100 if quick else 500
    played = [_play(seed, visitors) for seed in seeds]
    result = _summarise(played, visitors, window)
    result["settings"] = {
        "visitors_per_seed": visitors,
        "decisions_per_arm_per_seed": visitors,
        "seeds": list(seeds),
        "window": window,
        "concurrency": CONCURRENCY,
        "reward_wait_seconds": REWARD_WAIT_S,
        "products": world.PRODUCTS,
        "shown_per_request": world.SHOWN,
        "segments": dict(zip(world.SEGMENTS, world.SEGMENT_WEIGHTS, strict=True)),
        "discounts": dict(zip(map(str, world.DISCOUNTS), world.DISCOUNT_WEIGHTS, strict=True)),
        "low_stock_share": world.LOW_STOCK_SHARE,
        "learning": "catalog defaults (optimistic RegCB, interactions ca, ci)",
    }
    result["plot"] = _plot(result, out / "personalizer_storefront.png")
    return result


@dataclass
class Played:
    seed: int
    probability: Floats  # [N, 30] true click probabilities
    stable_best: world.Ints  # [N] the column the best feature-blind policy picks
    visits: world.Visits
    arms: dict[str, Arm]
    seconds: float
    stack_ready_seconds: float


def _play(seed: int, n: int) -> Played:
    products, visits = world.catalog(seed), world.visits(seed, n)
    with stack() as s:
        started = time.monotonic()
        arms = asyncio.run(_session(s.url, seed, products, visits))
        seconds = time.monotonic() - started
        ready = s.ready_seconds
    return Played(
        seed=seed,
        probability=world.click_probability(products, visits),
        stable_best=world.stable_best(products, visits),
        visits=visits,
        arms=arms,
        seconds=seconds,
        stack_ready_seconds=ready,
    )


def _catalogs(products: world.Catalog) -> dict[str, dict[str, object]]:
    learning = {"reward_wait_seconds": REWARD_WAIT_S}
    stored = [
        {"id": pid, "features": {"product": products.stable_features(j)}}
        for j, pid in enumerate(products.ids())
    ]
    return {
        "inline": {"learning": learning},  # no actions: every request sends its own
        "stored": {"actions": stored, "learning": learning},
        "uniform": {"learning": {**learning, "policy": "uniform"}},
    }


async def _session(
    url: str, seed: int, products: world.Catalog, visits: world.Visits
) -> dict[str, Arm]:
    n = len(visits)
    arms = {a: Arm([-1] * n, [0.0] * n) for a in ARMS}
    probability = world.click_probability(products, visits)
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        for arm, body in _catalogs(products).items():
            (await http.put(f"/v1/catalogs/{arm}", json=body)).raise_for_status()
        queue = iter(range(n))
        with tqdm(total=n, desc=f"  seed {seed}", unit="visitor", leave=False) as bar:

            async def shopper() -> None:
                for i in queue:  # one iterator shared by the shoppers: each visitor once
                    for arm in ARMS[i % 3 :] + ARMS[: i % 3]:  # the arms take turns first
                        await _visit(http, arms[arm], arm, seed, i, products, visits, probability)
                    bar.update()

            lag = asyncio.create_task(_sample_lag(http, arms))
            await asyncio.gather(*(shopper() for _ in range(CONCURRENCY)))
            lag.cancel()
        for arm in ARMS:
            arms[arm].learned = await wait_learned(http, arm, n, REWARD_WAIT_S)
            model = (await http.get(f"/v1/models/{arm}")).json()
            arms[arm].freshness_s = {k: float(v) for k, v in model["freshness_seconds"].items()}
    return arms


async def _visit(
    http: httpx.AsyncClient,
    record: Arm,
    arm: str,
    seed: int,
    i: int,
    products: world.Catalog,
    visits: world.Visits,
    probability: Floats,
) -> None:
    event_id = f"{arm}-{seed}-{i}"
    body: dict[str, Any] = {"catalog": arm, "event_id": event_id, "context": visits.context(i)}
    ids = [f"p{j:03d}" for j in visits.candidates[i].tolist()]
    if arm == "stored":
        body["candidates"] = ids
    else:
        body["actions"] = visits.inline_actions(products, i)
    started = time.perf_counter()
    response = await http.post("/v1/decide", json=body)
    record.latency_s.append(time.perf_counter() - started)
    response.raise_for_status()
    answer = response.json()
    chosen = answer["chosen"]
    if chosen is None:
        raise RuntimeError(f"{arm}: nothing chosen for visitor {i}: {answer}")
    column = ids.index(chosen["id"])
    record.shown[i] = column
    record.logged_probability[i] = float(chosen["probability"])
    record.policies[str(answer["policy"])] += 1
    record.fallbacks += bool(answer.get("fallback"))
    if visits.draw[i] < probability[i, column]:  # a click: the storefront posts it
        reward = await http.post("/v1/rewards", json={"event_id": event_id, "value": 1.0})
        reward.raise_for_status()
        record.rewards[str(reward.json()["status"])] += 1


async def _sample_lag(http: httpx.AsyncClient, arms: dict[str, Arm]) -> None:
    """Each second, how many decisions each arm has made that its model has not learned:
    what the learning loop (reward wait, join, training log, replica) holds back."""
    while True:
        await asyncio.sleep(1.0)
        for arm, record in arms.items():
            response = await http.get(f"/v1/models/{arm}")
            if response.status_code == 200:
                record.lag.append(len(record.latency_s) - int(response.json()["learned"]))


def _summarise(played: list[Played], n: int, window: int) -> dict[str, object]:
    windows = n // window
    rows = np.arange(n)
    expected = {a: np.array([p.probability[rows, p.arms[a].shown] for p in played]) for a in ARMS}
    clicked = {
        a: np.array([p.visits.draw < expected[a][k] for k, p in enumerate(played)]) for a in ARMS
    }
    references = {
        "oracle": np.array([p.probability.max(axis=1) for p in played]),
        "stable_best": np.array([p.probability[rows, p.stable_best] for p in played]),
        "uniform_expected": np.array([p.probability.mean(axis=1) for p in played]),
    }

    def per_window(x: Floats) -> Floats:  # [seeds, n] -> [seeds, windows]
        out: Floats = x[:, : windows * window].reshape(len(played), windows, window).mean(axis=2)
        return out

    curves: dict[str, object] = {"decisions": [window * (w + 1) for w in range(windows)]}
    for name, x in [*expected.items(), *references.items()]:
        mean, half = curve_ci(per_window(x))
        curves[f"{name}_expected_ctr" if name in ARMS else name] = _pair(mean, half)
    for a in ARMS:
        mean, half = curve_ci(per_window(clicked[a].astype(np.float64)))
        curves[f"{a}_ctr"] = _pair(mean, half)
    last = slice(n - int(n * LAST_SHARE), n)
    periods = {"last_quarter": last, "whole_run": slice(0, n)}
    summary = {name: _period(expected, clicked, references, part) for name, part in periods.items()}
    return {
        "curves": curves,
        "summary": summary,
        "per_segment_last_quarter": _segments(expected, references, played, last),
        "per_seed": [_seed_row(p, expected, clicked, k) for k, p in enumerate(played)],
    }


def _pair(mean: Floats, half: Floats) -> dict[str, list[float]]:
    return {"mean": [round(float(x), 5) for x in mean], "ci95": [round(float(x), 5) for x in half]}


def _period(
    expected: dict[str, Floats],
    clicked: dict[str, Any],
    references: dict[str, Floats],
    part: slice,
) -> dict[str, object]:
    def per_seed(x: Floats) -> Floats:
        out: Floats = x[:, part].mean(axis=1)
        return out

    ref = {name: per_seed(x) for name, x in references.items()}
    arm_mean = {a: per_seed(expected[a]) for a in ARMS}
    out: dict[str, object] = {name: _ci(x) for name, x in ref.items()}
    gap = ref["oracle"] - ref["uniform_expected"]
    stable_gap = ref["stable_best"] - ref["uniform_expected"]
    for a in ARMS:
        out[a] = {
            "expected_ctr": _ci(arm_mean[a]),
            "ctr": _ci(per_seed(clicked[a].astype(np.float64))),
            "oracle_gap_closed": _ci((arm_mean[a] - ref["uniform_expected"]) / gap),
            "stable_gap_closed": _ci((arm_mean[a] - ref["uniform_expected"]) / stable_gap),
        }
    out["ratios"] = {
        "inline_vs_stored": _ci(arm_mean["inline"] / arm_mean["stored"]),
        "inline_vs_uniform": _ci(arm_mean["inline"] / arm_mean["uniform"]),
        "stored_vs_uniform": _ci(arm_mean["stored"] / arm_mean["uniform"]),
        "inline_minus_stored": _ci(arm_mean["inline"] - arm_mean["stored"]),
    }
    return out


def _segments(
    expected: dict[str, Floats],
    references: dict[str, Floats],
    played: list[Played],
    part: slice,
) -> dict[str, object]:
    out: dict[str, object] = {}
    for s, name in enumerate(world.SEGMENTS):
        masks = [p.visits.segment[part] == s for p in played]

        def mean(x: Floats, masks: list[Any] = masks) -> dict[str, float]:
            return _ci(np.array([row[part][m].mean() for row, m in zip(x, masks, strict=True)]))

        out[name] = {
            **{a: mean(expected[a]) for a in ARMS},
            **{r: mean(x) for r, x in references.items()},
        }
    return out


def _seed_row(
    p: Played, expected: dict[str, Floats], clicked: dict[str, Any], k: int
) -> dict[str, object]:
    last = slice(len(p.visits) - int(len(p.visits) * LAST_SHARE), len(p.visits))
    return {
        "seed": p.seed,
        "seconds": round(p.seconds, 1),
        "stack_ready_seconds": round(p.stack_ready_seconds, 1),
        "decisions_per_second": round(len(ARMS) * len(p.visits) / p.seconds, 1),
        "arms": {
            a: {
                "expected_ctr_last_quarter": round(float(expected[a][k][last].mean()), 5),
                "clicks": int(clicked[a][k].sum()),
                "rewards": dict(p.arms[a].rewards),
                "learned": p.arms[a].learned,
                "policies": dict(p.arms[a].policies),
                "fallbacks": p.arms[a].fallbacks,
                "min_logged_probability": round(min(p.arms[a].logged_probability), 6),
                "learning_lag_decisions": _lag(p.arms[a].lag),
                "freshness_seconds": p.arms[a].freshness_s,
                "decide_ms": quantiles_ms(p.arms[a].latency_s),
            }
            for a in ARMS
        },
    }


def _lag(samples: list[int]) -> dict[str, float]:
    if not samples:
        return {"p50": math.nan, "p90": math.nan, "max": math.nan}
    p50, p90 = np.quantile(np.asarray(samples, dtype=np.float64), [0.5, 0.9])
    return {"p50": float(p50), "p90": float(p90), "max": float(max(samples))}


def _ci(x: Floats) -> dict[str, float]:
    mean, half = mean_ci(x)
    return {"mean": round(mean, 5), "ci95": round(half, 5)}


def _plot(result: dict[str, Any], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    x = np.array(curves["decisions"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    colours = {"inline": "tab:blue", "stored": "tab:orange", "uniform": "tab:gray"}
    for ax, suffix, title in (
        (axes[0], "_expected_ctr", "expected CTR (true click probability of what was shown)"),
        (axes[1], "_ctr", "observed CTR"),
    ):
        for a in ARMS:
            c = curves[f"{a}{suffix}"]
            mean, half = np.array(c["mean"]), np.array(c["ci95"])
            ax.plot(x, mean, color=colours[a], label=a, marker=".")
            ax.fill_between(x, mean - half, mean + half, color=colours[a], alpha=0.2)
        for ref, style, label in (
            ("oracle", "k--", "oracle (best of the 30)"),
            ("stable_best", "k:", "best blind to per-request features"),
            ("uniform_expected", "k-.", "uniform expectation"),
        ):
            ax.plot(x, curves[ref]["mean"], style, label=label, linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("decisions per arm")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"CTR per window of {result['settings']['window']} decisions")
    axes[0].legend(fontsize=8, loc="center right")
    seeds = len(result["settings"]["seeds"])
    title = f"30 of 500 products per request: inline vs stored vs uniform ({seeds} seeds, 95% CI)"
    return save_figure(fig, path, title)


def report(result: dict[str, object]) -> str:
    s: Any = result["summary"]
    out = []
    for period, label in (("last_quarter", "last quarter of the run"), ("whole_run", "whole run")):
        p = s[period]
        rows = [
            [
                a,
                _pm(p[a]["expected_ctr"]),
                _pm(p[a]["ctr"]),
                _pm(p[a]["oracle_gap_closed"]),
                _pm(p[a]["stable_gap_closed"]),
            ]
            for a in ARMS
        ]
        for ref, name in (
            ("oracle", "oracle (best of 30)"),
            ("stable_best", "best blind to per-request"),
            ("uniform_expected", "uniform expectation"),
        ):
            rows.append([name, _pm(p[ref]), "", "", ""])
        head = [label, "expected CTR", "CTR", "oracle gap closed", "blind-best gap closed"]
        out.append(table(head, rows))
        r = p["ratios"]
        out.append(
            f"  inline/stored {_pm(r['inline_vs_stored'])}, inline/uniform "
            f"{_pm(r['inline_vs_uniform'])}, stored/uniform {_pm(r['stored_vs_uniform'])}, "
            f"inline-stored {_pm(r['inline_minus_stored'])} (expected CTR, per-seed ratios)"
        )
    seg: Any = result["per_segment_last_quarter"]
    rows = [
        [name, *(_pm(seg[name][k]) for k in (*ARMS, "oracle", "stable_best", "uniform_expected"))]
        for name in world.SEGMENTS
    ]
    head = ["segment (last quarter)", *ARMS, "oracle", "blind best", "uniform exp."]
    out.append(table(head, rows))
    seeds: Any = result["per_seed"]
    for row in seeds:
        arms = row["arms"]
        parts = [
            f"{a}: learned {arms[a]['learned']}, rewards {arms[a]['rewards']}, "
            f"fallbacks {arms[a]['fallbacks']}, decide p50 {arms[a]['decide_ms']['p50']:.2f} ms, "
            f"learning lag p50 {arms[a]['learning_lag_decisions']['p50']:.0f} decisions"
            for a in ARMS
        ]
        out.append(
            f"seed {row['seed']}: {row['seconds']} s, {row['decisions_per_second']} decisions/s; "
            + "; ".join(parts)
        )
    return "\n".join(out)


def _pm(x: dict[str, float]) -> str:
    return f"{x['mean']:.4f} ± {x['ci95']:.4f}"
