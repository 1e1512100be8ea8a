"""What a simulated run measured: `SimResult`, and how it is made from the run's tally.

`base_result` holds what every run reports (CTR per window against the oracle and uniform
random, latencies, the probes' best-action probabilities); `constrained_result` adds what
stock and caps did, `behaviour_result` what the feature store saw. The window helpers cut
the per-decision records into the points the plots and the summary show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sim.answers import FRESH, NO_SESSION, STALE
from sim.config import SimConfig
from sim.probes import IntentProbes, Probes
from sim.shop import Shop
from sim.storefront import Environment
from sim.tally import Tally


@dataclass
class SimResult:
    ctr_by_window: list[tuple[int, float]]
    overall_ctr: float
    best_ctr: float
    uniform_ctr: float
    best_action_probability: dict[str, float]
    decisions: int
    clicks: int
    elapsed_s: float
    decide_latency_ms_p50: float
    decide_latency_ms_p99: float
    n_actions: int
    env: str = "segments"
    learned: int = 0
    # the click model's probability of the banners shown, averaged: the CTR without the
    # noise of the simulated clicks (empty / None: not recorded)
    expected_ctr_by_window: list[tuple[int, float]] = field(default_factory=list)
    expected_ctr: float | None = None
    # each segment's share of its decisions in the run's second half that were shown its
    # best banner (ignoring stock and caps): the traffic served, which a probe of a greedy
    # policy's pmf misreads
    served_best_late: dict[str, float] = field(default_factory=dict)
    # --- under constraints (stock, cap); defaults describe an unconstrained run --------
    constrained: bool = False
    stock: int | None = None
    restock_after: float | None = None
    cap: int | None = None
    users: int | None = None
    shown: int | None = None  # decisions that showed a banner (None: all of them)
    nothing_eligible: int = 0  # decisions answered with "chosen": null
    removed: dict[str, int] = field(default_factory=dict)  # summed "removed" counts
    removed_by_window: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    nothing_by_window: list[tuple[int, int]] = field(default_factory=list)
    # mean over shown decisions of the best / average click probability among the
    # actions that were eligible for that decision (the oracle the constraints allow)
    eligible_best_ctr: float | None = None
    eligible_uniform_ctr: float | None = None
    eligible_best_by_window: list[tuple[int, float]] = field(default_factory=list)
    # per segment: the best action still in stock at the end, and its probe probability
    best_in_stock_action: dict[str, str | None] = field(default_factory=dict)
    best_in_stock_probability: dict[str, float] = field(default_factory=dict)
    probe_nothing_eligible: int = 0
    probe_saw_sold_out: list[str] = field(default_factory=list)
    stock_outs: list[tuple[int, str]] = field(default_factory=list)  # (decisions, action)
    restocks: list[tuple[int, str]] = field(default_factory=list)
    sold_out_at_end: list[str] = field(default_factory=list)
    purchases: int = 0
    oversold: int = 0  # clicks on a banner the shop had already sold out of (server lag)
    stock_synced: bool | None = None  # the server saw the final levels before the probes
    n_in_stock: int = 0  # banners in stock at the end (the probes' 1/K)
    probe_top_action: dict[str, str | None] = field(default_factory=dict)
    overall_best_action: dict[str, str] = field(default_factory=dict)  # ignoring stock
    # --- with behaviour (the intent storefront); None: the storefront posts none --------
    feature_store: bool | None = None  # whether the catalog joined stored features
    dwell_s: float = 0.0
    events_posted: int = 0
    event_latency_ms_p50: float = math.nan
    event_latency_ms_p99: float = math.nan
    fresh: int = 0  # decisions whose features held the visit's own views
    stale: int = 0  # held the session's earlier views only
    no_session: int = 0  # held nothing of the session
    joined: int = 0  # decisions with any stored feature (0 with the store off)
    fresh_by_window: list[tuple[int, float]] = field(default_factory=list)  # share fresh
    probe_fresh: int = 0  # probes whose features held their views
    probes: int = 0
    store_ready_s: float | None = None  # how long a first view took to reach the server


def constrained_result(
    result: SimResult,
    config: SimConfig,
    env: Environment,
    tally: Tally,
    shop: Shop | None,
    probes: Probes,
    synced: bool | None,
) -> SimResult:
    removed: Counter[str] = Counter()
    for counts in tally.removed[: tally.done]:
        removed.update(counts)
    best = [b for b, shown in zip(tally.best, tally.shown, strict=True) if shown]
    mean = [m for m, shown in zip(tally.mean, tally.shown, strict=True) if shown]
    return replace(
        result,
        constrained=True,
        stock=config.stock,
        restock_after=config.restock_after,
        cap=config.cap,
        users=config.user_pool,
        shown=tally.done - tally.nothing_eligible,
        nothing_eligible=tally.nothing_eligible,
        removed=dict(removed.most_common()),
        removed_by_window=_removals_by_window(tally.removed[: tally.done], config.window),
        nothing_by_window=_counts_by_window(
            [not s for s in tally.shown[: tally.done]], config.window
        ),
        eligible_best_ctr=_nanmean(best),
        eligible_uniform_ctr=_nanmean(mean),
        eligible_best_by_window=_means_by_window(
            tally.best[: tally.done], tally.shown[: tally.done], config.window
        ),
        best_in_stock_action=probes.target,
        best_in_stock_probability=probes.target_probability,
        probe_top_action=probes.top,
        overall_best_action={s: env.best_action(s) for s in env.segment_names},
        probe_nothing_eligible=probes.nothing_eligible,
        probe_saw_sold_out=sorted(probes.saw_sold_out),
        stock_outs=list(shop.stock_outs) if shop else [],
        restocks=list(shop.restocks) if shop else [],
        sold_out_at_end=sorted(set(env.action_ids) - shop.in_stock()) if shop else [],
        purchases=shop.purchases if shop else 0,
        oversold=shop.oversold if shop else 0,
        stock_synced=synced,
        n_in_stock=len(shop.in_stock()) if shop else len(env.action_ids),
    )


def behaviour_result(
    result: SimResult, config: SimConfig, tally: Tally, probes: IntentProbes
) -> SimResult:
    seen = tally.seen[: tally.done]
    p50, p99 = np.percentile(tally.event_latencies_ms, [50, 99]) if seen else (math.nan,) * 2
    return replace(
        result,
        users=config.user_pool,
        feature_store=config.feature_store,
        dwell_s=config.dwell_s,
        events_posted=tally.events_posted,
        event_latency_ms_p50=float(p50),
        event_latency_ms_p99=float(p99),
        fresh=seen.count(FRESH),
        stale=seen.count(STALE),
        no_session=seen.count(NO_SESSION),
        joined=tally.joined,
        fresh_by_window=_means_by_window(
            [float(s == FRESH) for s in seen], [True] * len(seen), config.window
        ),
        probe_fresh=probes.fresh,
        probes=probes.total,
    )


def _nanmean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else None


def base_result(
    config: SimConfig,
    env: Environment,
    tally: Tally,
    elapsed_s: float,
    probes: dict[str, float],
    learned: int,
) -> SimResult:
    p50, p99 = np.percentile(tally.latencies_ms, [50, 99])
    return SimResult(
        ctr_by_window=_windows(tally.clicked, config.window, tally.shown),
        overall_ctr=tally.ctr(),
        best_ctr=env.best_ctr(),
        uniform_ctr=env.uniform_ctr(),
        best_action_probability=probes,
        decisions=tally.done,
        clicks=tally.clicks,
        elapsed_s=elapsed_s,
        decide_latency_ms_p50=float(p50),
        decide_latency_ms_p99=float(p99),
        n_actions=len(env.actions),
        env=env.name,
        learned=learned,
        expected_ctr_by_window=_means_by_window(
            tally.p_click[: tally.done], tally.shown[: tally.done], config.window
        ),
        expected_ctr=_nanmean(tally.p_click[: tally.done]),
        served_best_late=_served_best_late(tally),
    )


def _served_best_late(tally: Tally) -> dict[str, float]:
    """Per segment, the share of its shown decisions in the second half that got its best."""
    late = range(tally.done // 2, tally.done)
    counts: dict[str, list[int]] = {}
    for i in late:
        segment = tally.segment[i]
        if segment is None or not tally.shown[i]:
            continue
        tallied = counts.setdefault(segment, [0, 0])
        tallied[0] += int(tally.served_best[i])
        tallied[1] += 1
    return {segment: best / shown for segment, (best, shown) in sorted(counts.items())}


def _windows(
    clicked: Sequence[bool], window: int, shown: Sequence[bool] | None = None
) -> list[tuple[int, float]]:
    """(decisions so far, CTR within the window ending there); a short last window counts.

    With `shown`, the CTR is per banner shown (decisions that showed nothing are left
    out of it) and a window that showed nothing has no point."""
    out: list[tuple[int, float]] = []
    for start in range(0, len(clicked), window):
        chunk = clicked[start : start + window]
        seen = len(chunk) if shown is None else sum(shown[start : start + window])
        if seen:
            out.append((start + len(chunk), sum(chunk) / seen))
    return out


def _counts_by_window(flags: Sequence[bool], window: int) -> list[tuple[int, int]]:
    return [
        (start + len(flags[start : start + window]), sum(flags[start : start + window]))
        for start in range(0, len(flags), window)
    ]


def _means_by_window(
    values: Sequence[float], shown: Sequence[bool], window: int
) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for start in range(0, len(values), window):
        chunk = values[start : start + window]
        mean = _nanmean([v for v, s in zip(chunk, shown[start : start + window], strict=True) if s])
        if mean is not None:
            out.append((start + len(chunk), mean))
    return out


def _removals_by_window(
    removed: Sequence[Mapping[str, int]], window: int
) -> list[tuple[int, dict[str, int]]]:
    out: list[tuple[int, dict[str, int]]] = []
    for start in range(0, len(removed), window):
        chunk = removed[start : start + window]
        total: Counter[str] = Counter()
        for counts in chunk:
            total.update(counts)
        out.append((start + len(chunk), dict(total)))
    return out
