"""What a serving process measures and how /metrics shows it (streams.telemetry).

Latencies are histograms observed where they happen: decide (request arrival to answer),
reward acceptance, and reward-to-model (the worker emitting a training example to this
process's model learning it), per catalog. Counts stay plain `Counter`s on the hot path
and, with the queue depths and follower lags the process holds, are read on each scrape.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from api.serving.failovers import CAUSES
from streams.kv import Memory
from streams.telemetry import LAG_BUCKETS, LATENCY_BUCKETS, Families, Histogram, Registry

if TYPE_CHECKING:
    from api.serving.state import State

HELP = {  # the serving process's counts (State.metrics.counts)
    "decisions": "Decisions answered (replays not included).",
    "decisions_replayed": "Repeats of a client event id answered with the kept answer.",
    "decisions_unlogged": "Decisions answered but not logged (the outbox was full).",
    "policy_failures": "Decisions the model could not make (answered by the safe policy).",
    "rewards_accepted": "Rewards accepted within their decision's reward window.",
    "rewards_late": "Rewards accepted after their reward window closed (kept, not learned).",
    "rewards_pending": "Rewards accepted before their decision was known here.",
    "rewards_unknown": "Rewards refused: no such decision.",
    "rewards_outside_range": "Rewards outside the catalog's reward range.",
    "events_accepted": "Behaviour and inventory events accepted.",
    "users_erased": "Users erased.",
}
REPLICA_HELP = {
    "learned": "Training examples the model replica learned.",
    "duplicates": "Training examples already learned (not learned twice).",
    "checkpoints": "Model checkpoints written.",
    "corrupt_checkpoints": "Model checkpoints refused as corrupt.",
    "poisoned": "Training-log records that could not be decoded (skipped).",
}


@dataclass
class Metrics:
    registry: Registry = field(default_factory=Registry)
    counts: Counter[str] = field(default_factory=Counter)
    removals: Counter[tuple[str, str]] = field(default_factory=Counter)  # (catalog, reason)

    def __post_init__(self) -> None:
        r = self.registry
        self.decide_seconds: Histogram = r.histogram(
            "loopwise_decide_seconds",
            "POST /v1/decide (and Personalizer rank): from the request's arrival to its answer.",
            LATENCY_BUCKETS,
        )
        self.reward_seconds: Histogram = r.histogram(
            "loopwise_reward_seconds",
            "A reward request (one or a batch): from parsed to accepted, including the wait "
            "for a decision another process made.",
            LATENCY_BUCKETS,
        )
        self.model_lag_seconds: Histogram = r.histogram(
            "loopwise_reward_to_model_seconds",
            "The worker emitting a training example (its reward window closed) to this "
            "process's model learning it.",
            LAG_BUCKETS,
            labels=("catalog",),
        )

    def removed(self, catalog: str, removed: dict[str, list[str]]) -> None:
        """Count the actions a decision's constraints removed, by rule (engine.constraints)."""
        for reason, ids in removed.items():
            self.removals[catalog, reason] += len(ids)


# The process's scalar gauges and counters: (name, HELP, counter?, value).
Scalar = tuple[str, str, bool, Callable[["State"], float]]
SCALARS: tuple[Scalar, ...] = (
    ("loopwise_up_seconds", "Seconds since this process started.", False,
     lambda st: time.time() - st.started),
    ("loopwise_outbox_pending", "Records accepted but not yet on the broker.", False,
     lambda st: len(st.outbox)),
    ("loopwise_outbox_capacity", "Records the outbox holds before refusing.", False,
     lambda st: st.outbox.capacity),
    ("loopwise_outbox_sent", "Records the outbox delivered to the broker.", True,
     lambda st: st.outbox.sent),
    ("loopwise_outbox_refused", "Records refused: the outbox was full.", True,
     lambda st: st.outbox.refused),
    ("loopwise_broker_connected", "1 while the outbox is connected to the broker.", False,
     lambda st: int(st.outbox.connected)),
    ("loopwise_ready", "1 while every readiness check holds (GET /readyz).", False,
     lambda st: int(ready(st))),
    ("loopwise_ledger_size", "Learned event ids the replica remembers.", False,
     lambda st: len(st.replica.ledger)),
    ("loopwise_vw_parsed_examples", "Parsed VW action examples the models hold.", False,
     lambda st: st.replica.parsed_examples()),
    ("loopwise_rocksdb_cache_bytes", "The local stores' shared block cache.", False,
     lambda st: Memory.shared().usage()["cache"]),
    ("loopwise_rocksdb_memtable_bytes", "The local stores' unflushed writes.", False,
     lambda st: Memory.shared().usage()["memtables"]),
    ("loopwise_stock_skus", "SKUs in the stock replica.", False,
     lambda st: len(st.stock.data)),
    ("loopwise_feature_store_users", "Users in the feature-store replica.", False,
     lambda st: len(st.profiles.data)),
    ("loopwise_feature_store_products", "Products in the feature-store replica.", False,
     lambda st: len(st.popularity.data)),
    ("loopwise_feature_store_bytes", "Encoded bytes of the feature-store replicas.", False,
     lambda st: st.profiles.bytes + st.popularity.bytes),
    ("loopwise_peers_live", "1 while the decisions log of other processes is followed live.",
     False, lambda st: int(st.peers.live)),
    ("loopwise_inflight", "Requests in the handlers now (LOOPWISE_MAX_INFLIGHT at most).",
     False, lambda st: st.gate.inflight),
    ("loopwise_shed", "Requests answered 503 at once: the handlers held their limit.", True,
     lambda st: st.gate.shed),
    ("loopwise_rate_limited", "Requests refused 429: their key was over its rate limit.",
     True, lambda st: st.limiter.refused),
)  # fmt: skip


def collect(st: State, out: Families) -> None:
    """Everything the process holds now, as /metrics shows it."""
    m = st.metrics
    for name, help, counter, value in SCALARS:
        (out.counter if counter else out.gauge)(name, help, value(st))
    followers = {
        "model": st.replica, "stock": st.stock, "profiles": st.profiles,
        "popularity": st.popularity, "peers": st.peers,
    }  # fmt: skip
    for name, follower in followers.items():
        out.gauge(
            "loopwise_follower_lag_records",
            "Records on the topic this replica has not applied yet (at its last fetch).",
            follower.lag,
            replica=name,
        )
        out.gauge(
            "loopwise_follower_caught_up",
            "1 once the replica has read what its topic held at connect.",
            int(follower.caught_up),
            replica=name,
        )
    out.counts("loopwise", m.counts, HELP)
    out.counts("loopwise_replica", st.replica.counts, REPLICA_HELP)
    out.counts("loopwise_peers", st.peers.counts, {})  # what other processes decided
    for (catalog, reason), n in sorted(m.removals.items()):
        out.counter(
            "loopwise_constraint_removals",
            "Actions a constraint removed from a decision, by the rule that removed them first.",
            n,
            catalog=catalog,
            reason=reason,
        )
    failed = st.failovers.counts
    catalogs = {c for c, _ in failed} | {n for n in st.failovers.breakers if "~" not in n}
    for catalog in sorted(catalogs):  # every cause of every catalog that decided, 0 or more
        for cause in CAUSES:
            out.counter(
                "loopwise_failovers",
                "Decisions answered by the safe policy, by cause.",
                failed[catalog, cause],
                catalog=catalog,
                cause=cause,
            )
    for name, breaker in sorted(st.failovers.breakers.items()):
        catalog, _, arm = name.partition("~")  # an arm's own model: <catalog>~<arm>
        labels = {"catalog": catalog, **({"arm": arm} if arm else {})}
        out.gauge(
            "loopwise_breaker_open",
            "1 while the model's breaker holds it on the safe policy.",
            int(breaker.is_open),
            **labels,
        )
        out.counter(
            "loopwise_breaker_trips", "Times the model's breaker opened.", breaker.trips, **labels
        )
    stats = worker_stats(st)
    counts, pending = stats.get("counts"), stats.get("pending")
    if isinstance(counts, dict):  # the embedded worker of this data directory, as it wrote
        out.counts("loopwise_join", {str(k): int(v) for k, v in counts.items()}, {})
    if isinstance(pending, int):
        out.gauge(
            "loopwise_join_pending",
            "Decisions the worker's join holds open (as it last wrote).",
            pending,
        )


def quantiles(values: list[float]) -> dict[str, float]:
    """The median, p90 and p99 of `values` (none when there are none)."""
    if not values:
        return {}
    qs = np.quantile(np.asarray(values), [0.5, 0.9, 0.99])
    return {"0.5": float(qs[0]), "0.9": float(qs[1]), "0.99": float(qs[2])}


def ready(st: State) -> bool:
    return all(readiness(st).values())


def readiness(st: State) -> dict[str, bool]:
    checks = {
        "broker": st.outbox.connected and st.epoch is not None,
        "model": st.replica.caught_up,
        "stock": st.stock.caught_up,
        "features": st.profiles.caught_up and st.popularity.caught_up,
        "peers": st.peers.caught_up,  # takes rewards for what other processes decided
    }
    if st.settings.embedded:  # the worker shares this data directory: is it running?
        checks["worker"] = worker_alive(st)
    return checks


def worker_stats(st: State) -> dict[str, object]:
    try:
        stats = json.loads((st.settings.data_dir / "worker-stats.json").read_text())
    except (OSError, ValueError):
        return {}
    return stats if isinstance(stats, dict) else {}


def worker_alive(st: State, within: float = 10.0) -> bool:
    stats = worker_stats(st)
    ts, assigned = stats.get("ts", 0), stats.get("assigned", 0)
    fresh = isinstance(ts, int | float) and ts >= max(st.started, time.time() - within)
    return bool(fresh and isinstance(assigned, int) and assigned > 0)  # consuming, not joining
