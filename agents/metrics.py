"""The worker's own /metrics (streams.telemetry), served from a thread of its process.

What it shows is read at each scrape: the agents' counters (`loopwise_join_*_total`, the
same names the embedded API repeats from worker-stats.json), the join's open decisions,
the partitions this worker consumes, and its consumer lag per topic: the end offset the
last fetch saw, less the next offset the worker will read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from agents.joiner import Joiner
from streams.telemetry import Families, Registry

log = logging.getLogger(__name__)

HELP = {
    "decisions": "Decisions the join admitted.",
    "rewards": "Rewards the join admitted.",
    "emitted": "Training examples emitted.",
    "failed": "Messages whose handling raised (logged and skipped).",
    "poisoned": "Messages that could not be decoded (skipped).",
    "emit_failed": "Training examples whose send failed (retried from the table).",
}


def registry(joiner: Joiner, consumer: Callable[[], Any]) -> Registry:
    """The worker's metrics; `consumer()` is the app's consumer once it exists."""
    r = Registry()

    def collect(out: Families) -> None:
        out.counts("loopwise_join", joiner.counts, HELP)
        out.gauge("loopwise_join_pending", "Decisions the join holds open.", joiner.pending())
        gap = joiner.clock_gap.smallest(time.time())
        if gap is not None:
            out.gauge(
                "loopwise_worker_clock_gap_seconds",
                "The smallest (worker time - API ts) of the decisions and rewards read in the "
                "last minute: below 0, an API clock is ahead of this worker's.",
                gap,
            )
        c = consumer()
        assignment = c.assignment() if c is not None else set()
        out.gauge("loopwise_worker_partitions", "Partitions this worker consumes.", len(assignment))
        for topic, lag in sorted(consumer_lag(c, assignment).items()):
            out.gauge(
                "loopwise_worker_consumer_lag_records",
                "Records on the topic this worker has not read yet (at its last fetch).",
                lag,
                topic=topic,
            )

    r.scraped(collect)
    return r


def consumer_lag(consumer: Any, assignment: set[Any]) -> Mapping[str, int]:
    """Per topic: the highwaters the fetches reported less the next offsets to read (a
    partition not read from yet counts as caught up: its position is not known here)."""
    lags: dict[str, int] = {}
    read = getattr(consumer, "_read_offset", {})  # Faust's last offset read, per partition
    for tp in assignment:
        lags.setdefault(tp.topic, 0)
        last = read.get(tp)
        if last is None:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # not fetched yet, or the assignment moved under us
            continue
        if end is not None:
            lags[tp.topic] += max(0, int(end) - (int(last) + 1))
    return lags
