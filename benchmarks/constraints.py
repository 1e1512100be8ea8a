"""What constraints cost a decision: 50 actions x 20 features, 10 rules, inventory, caps.

The same catalog is decided with and without its constraints, in one run, round-robin
(plain decide, constrained decide, constrained apply, plain apply, then each kind of
constraint alone; again and again) so that the machine's drift falls on every variant
alike. Both deciders use one real VW policy (`policies.vw.VWPolicy`, default Learning,
trained on a few examples), the same contexts, the user's exposures and a stock view
over a mirror like the API's. Timed per call with `perf_counter_ns`: the whole
`engine.decision.decide`, and the constraint stage alone (`engine.constraints.apply`).
The target is constrained/plain <= 1.3 at the median. Rules are chosen to be active but
to remove only a few actions, so the policy scores nearly as many actions in both
variants (the eligible counts are reported).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from api.serving.mirror import Mirror, StockView
from benchmarks.common import table
from benchmarks.shapes import THEMES, Shape, catalog_body, context
from engine.catalog import Catalog, parse_catalog
from engine.constraints import NO_CONSTRAINTS, Constraints, apply
from engine.decision import decide
from engine.features import Features, flatten
from engine.limits import Limits
from engine.sampling import normalise, rng_for, sample
from policies.base import Example
from policies.vw import VWPolicy

SHAPE = Shape(50, 20)
TARGET = 1.3
VARIANTS = (
    "decide_plain",
    "decide_constrained",
    "apply_constrained",
    "apply_plain",
    "apply_rules_only",  # the constrained catalog's parts alone: where the stage's time goes
    "apply_inventory_only",
    "apply_caps_only",
)
LIMITS = Limits()
RULES: list[dict[str, str]] = [
    {
        "name": "r01-adult",
        "when": "context.user.n0 >= 0",
        "exclude": "action.tags contains 'adult' and context.user.c2 == 'v99'",
    },
    {
        "name": "r02-kids-late",
        "exclude": "action.metadata.category == 'kids' and context.page.n1 > 95",
    },
    {"name": "r03-brand", "require": "context.user.c6 != 'v99' or action.metadata.brand == 'b0'"},
    {"name": "r04-blocked", "exclude": "action.id in ['a0007', 'zz-gone']"},
    {"name": "r05-brand9", "exclude": "action.metadata.brand == 'b9'"},
    {
        "name": "r06-retired",
        "when": "context.page.c3 != 'v99'",
        "require": "not (action.tags contains 'retired')",
    },
    {
        "name": "r07-members",
        "exclude": "action.tags contains 'members' and context.user.c10 == 'v99'",
    },
    {
        "name": "r08-outdoor",
        "exclude": "context.page.n5 < 0 and action.metadata.category startswith 'out'",
    },
    {"name": "r09-price", "require": "action.metadata.price < 1000 or context.user.n4 > 50"},
    {
        "name": "r10-banned",
        "when": "context.user.n8 >= 0",
        "exclude": "action.metadata.category in ['banned'] or action.id startswith 'zz'",
    },
]
CAPS: list[dict[str, object]] = [
    {
        "name": "hero-3-daily",
        "actions": ["a0001", "a0002", "a0003"],
        "limit": 3,
        "window_seconds": 86400,
    },
    {"name": "brand-hourly", "group": "brand", "limit": 5, "window_seconds": 3600},
]


def bodies() -> tuple[dict[str, object], dict[str, object]]:
    """The catalog without and with constraints: the same actions and metadata."""
    plain = catalog_body(SHAPE)
    actions = plain["actions"]
    assert isinstance(actions, list)
    for j, action in enumerate(actions):
        tags = ["members"] if j % 7 == 0 else ["adult"] if j % 11 == 0 else []
        action["metadata"] = {
            "sku": f"SKU{j:04d}",
            "category": THEMES[j % len(THEMES)],
            "brand": f"b{j % 5}",
            "price": float(5 + (j * 7) % 95),
            "tags": tags,
        }
    constrained = dict(plain)
    constrained["constraints"] = {
        "rules": RULES,
        "inventory": {"sku_field": "sku", "threshold": 0},
        "frequency_caps": CAPS,
    }
    return plain, constrained


def stock_view(now: float) -> StockView:
    """Live stock as the API reads it: a mirror of (level, ts), one SKU out of stock."""
    mirror = Mirror("bench-stock", 1)
    for j in range(SHAPE.actions):
        mirror.data[f"SKU{j:04d}".encode()] = (0.0 if j == 21 else 10.0, now)
    return StockView(mirror)


def exposures(now: float) -> dict[str, list[float]]:
    """A user seen 14 times in the last day, under every cap's limit."""
    seen = {"a0001": [now - 7000.0], "a0002": [now - 300.0]}
    for j in (4, 9, 10, 15, 22, 30, 31, 40, 41, 48):
        seen[f"a{j:04d}"] = [now - 60.0 * j]
    seen["a0045"] = [now - 5000.0, now - 90000.0]  # one outside every window
    return seen


def trained_policy(catalog: Catalog, contexts: Sequence[Features], n: int) -> VWPolicy:
    policy = VWPolicy(catalog.learning)
    actions = list(catalog.actions)
    for i in range(n):
        chosen = (i * 7) % len(actions)
        reward = 1.0 if (i + chosen) % 3 == 0 else 0.0
        policy.learn(Example(contexts[i % len(contexts)], actions, chosen, 0.02, reward))
    return policy


def run(quick: bool, out: Path) -> dict[str, object]:
    iterations = 60 if quick else 3000
    warmup = 10 if quick else 200
    now = time.time()
    plain_body, constrained_body = bodies()
    plain = parse_catalog("bench-plain", plain_body, LIMITS, version=1, now=now)
    constrained = parse_catalog("bench-constrained", constrained_body, LIMITS, version=1, now=now)
    contexts = [flatten(context(SHAPE, i), LIMITS) for i in range(64)]
    policy = trained_policy(plain, contexts, 50 if quick else 300)
    stock, seen = stock_view(now), exposures(now)

    eligible: dict[str, list[int]] = {"plain": [], "constrained": []}

    def deciding(catalog: Catalog, key: str) -> Callable[[int], object]:
        def one(i: int) -> object:
            d = decide(
                catalog,
                catalog.actions,
                contexts[i % len(contexts)],
                f"bench-{i}",
                now,
                policy,
                exposures=seen,
                stock=stock,
            )
            eligible[key].append(len(d.slots[0].actions))
            return d

        return one

    def applying(catalog: Catalog, constraints: Constraints) -> Callable[[int], object]:
        def one(i: int) -> object:
            return apply(
                constraints,
                catalog.actions,
                contexts[i % len(contexts)],
                now,
                seen,
                stock,
                catalog_actions=catalog.actions,
            )

        return one

    full = constrained.constraints
    calls: dict[str, Callable[[int], object]] = {
        "decide_plain": deciding(plain, "plain"),
        "decide_constrained": deciding(constrained, "constrained"),
        "apply_constrained": applying(constrained, constrained.constraints),
        "apply_plain": applying(plain, NO_CONSTRAINTS),
        "apply_rules_only": applying(constrained, replace(full, inventory=None, caps=())),
        "apply_inventory_only": applying(constrained, replace(full, rules=(), caps=())),
        "apply_caps_only": applying(constrained, replace(full, rules=(), inventory=None)),
    }
    samples = interleaved(calls, iterations, warmup)
    stats = {name: summary_us(samples[name]) for name in VARIANTS}
    decide_c, decide_p = stats["decide_constrained"], stats["decide_plain"]
    ratio_p50 = decide_c["p50"] / decide_p["p50"]
    sanity_check(constrained, contexts[0], now, seen, stock, policy)
    return {
        "settings": {
            "shape": SHAPE.name,
            "rules": len(RULES),
            "caps": len(CAPS),
            "exposures": sum(len(ts) for ts in seen.values()),
            "iterations": iterations,
            "warmup": warmup,
            "order": "round-robin: " + ", ".join(VARIANTS),
            "timer": "perf_counter_ns per call",
            "policy": policy.name,
            "target_ratio_p50": TARGET,
        },
        "eligible_mean": {k: float(np.mean(v[warmup:])) for k, v in eligible.items()},
        "us": stats,
        "ratio_p50": ratio_p50,
        "ratio_p99": decide_c["p99"] / decide_p["p99"],
        "ratio_mean": decide_c["mean"] / decide_p["mean"],
        "apply_share_of_constrained_decide_p50": stats["apply_constrained"]["p50"]
        / decide_c["p50"],
        "meets_target": ratio_p50 <= TARGET,
    }


def interleaved(
    calls: dict[str, Callable[[int], object]], iterations: int, warmup: int
) -> dict[str, list[float]]:
    """Microseconds per call of each variant, round-robin, warm-up rounds dropped."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter_ns
    for i in range(warmup + iterations):
        for name, fn in calls.items():
            start = clock()
            fn(i)
            elapsed = clock() - start
            if i >= warmup:
                samples[name].append(elapsed / 1e3)
    return samples


def summary_us(samples: Sequence[float]) -> dict[str, float]:
    x = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.quantile(x, [0.5, 0.9, 0.99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean())}


def sanity_check(
    catalog: Catalog,
    features: Features,
    now: float,
    seen: dict[str, list[float]],
    stock: StockView,
    policy: VWPolicy,
) -> None:
    """The constraints measured do work: each kind removes what it should here."""
    result = apply(
        catalog.constraints,
        catalog.actions,
        features,
        now,
        seen,
        stock,
        catalog_actions=catalog.actions,
    )
    removed = {a for ids in result.removed.values() for a in ids}
    if not {"a0007", "a0021"} <= removed:
        raise RuntimeError(f"the benchmark's constraints removed {result.removed}")
    capped = apply(
        catalog.constraints,
        catalog.actions,
        features,
        now,
        {**seen, "a0003": [now - 1.0]},
        stock,
        catalog_actions=catalog.actions,
    )
    if "cap:hero-3-daily" not in capped.removed:
        raise RuntimeError(f"the frequency cap did not bind: {capped.removed}")
    pmf = normalise(policy.distribution(features, result.actions))
    chosen, p = sample(pmf, rng_for("sanity"))
    if not p == pmf[chosen] > 0:
        raise RuntimeError("sampling returned an inexact probability")


def report(result: dict[str, object]) -> str:
    stats, eligible = result["us"], result["eligible_mean"]
    assert isinstance(stats, dict) and isinstance(eligible, dict)
    rows = [
        [name, *(float(stats[name][k]) for k in ("p50", "p90", "p99", "mean"))] for name in VARIANTS
    ]
    text = table(["variant (us/call)", "p50", "p90", "p99", "mean"], rows)
    met = "met" if result["meets_target"] else "NOT met"
    share = float(result["apply_share_of_constrained_decide_p50"])  # type: ignore[arg-type]
    return "\n".join(
        [
            "constraints (50 actions x 20 features, 10 rules + inventory + 2 caps)",
            text,
            f"eligible actions: plain {eligible['plain']:.1f}, "
            f"constrained {eligible['constrained']:.1f}",
            f"decide constrained/plain: p50 {result['ratio_p50']:.3f}x, "
            f"p99 {result['ratio_p99']:.3f}x, mean {result['ratio_mean']:.3f}x "
            f"(target p50 <= {TARGET}x: {met})",
            f"constraint stage share of the constrained decide (p50): {share:.1%}",
        ]
    )
