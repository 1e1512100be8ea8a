"""The evaluation job (`loopwise evaluate <dir>`): reads a catalog's training log from the
broker, replays it through every candidate and writes the estimates.

An API process writes `spec.json` into the job's directory and starts this as a process of
its own (lower priority), so an evaluation never stalls decisions. It reads the log up to
the end offsets it found when it started (read on from the reported ones until quiet, as
Tansu reports them short), so traffic that goes on meanwhile does not keep it running. It
writes `progress.json` while it reads and `result.json` when done, each atomically; the
API answers from them. Rows are taken in the order the log is read (each partition in its
order), which is decision order within a partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.actions import with_features
from engine.catalog import Catalog, parse_catalog
from engine.evaluation import (
    ConstraintsPolicy,
    Evaluation,
    Row,
    RowPolicy,
    RulePolicy,
    parse_candidates,
)
from engine.inline import actions_of, rebuilt, with_inline
from engine.limits import UNBOUNDED, Limits
from engine.optimize import choose
from engine.records import TrainingExample
from engine.sampling import Pmf, normalise
from policies.base import Example, Policy
from policies.registry import build
from streams import messages
from streams.broker import true_end_offsets
from streams.files import write_atomic

log = logging.getLogger(__name__)
IDLE_POLLS = 10  # polls of 200 ms without a record: the end of the log
PROGRESS_SECONDS = 0.5


class LearningPolicy:
    """A candidate's learning settings, trained progressively on the log."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def pmf(self, row: Row) -> Pmf:
        # renormalised as a decision's is: VW's float32 pmf over 50 actions can sum to
        # 1 + 3e-6, which the estimators refuse as more than a probability
        return normalise(self.policy.distribution(row.example.context, row.actions))

    def after(self, row: Row) -> None:
        ex = row.example
        self.policy.learn(Example(ex.context, row.actions, ex.chosen, ex.probability, ex.reward))


def run(job: Path) -> int:
    spec: dict[str, Any] = json.loads((job / "spec.json").read_text())
    started = time.monotonic()
    try:
        result = asyncio.run(_evaluate(spec, job, started))
    except Exception as exc:  # the job's answer says what went wrong; the API stays up
        log.exception("evaluation %s failed", spec.get("id"))
        _write(job / "result.json", {"id": spec["id"], "state": "failed", "error": repr(exc)})
        return 1
    _write(job / "result.json", result)
    return 0


async def _evaluate(spec: dict[str, Any], job: Path, started: float) -> dict[str, Any]:
    versions = _versions(spec)
    latest = versions[max(versions)]
    candidates = parse_candidates(spec["candidates"], latest, Limits())
    policies: dict[str, RowPolicy] = {}
    for c in candidates:
        if c.rule is not None:
            policies[c.name] = RulePolicy(c.rule)
        elif c.constraints is not None:
            policies[c.name] = ConstraintsPolicy(c.constraints)
        elif c.learning is not None:
            policies[c.name] = LearningPolicy(build(c.learning))
    evaluation = Evaluation(policies, float(spec.get("alpha", 0.05)))
    counts: Counter[str] = Counter()
    since, until = float(spec["since"]), float(spec["until"])
    last = 0.0
    async for ex in _examples(spec, counts):
        counts["read"] += 1
        if ex.catalog != spec["catalog"]:
            counts["other_catalogs"] += 1
        elif not since <= ex.decided_ts < until:
            counts["outside_window"] += 1
        elif not ex.pmf or ex.catalog_version not in versions:
            counts["without_pmf"] += 1  # logged before pmfs were kept, or an unknown version
        elif (found := row(ex, versions[ex.catalog_version])) is None:
            counts["invalid"] += 1  # names an action its version and its record lack
        else:
            evaluation.add(found)
        if time.monotonic() - last > PROGRESS_SECONDS:
            last = time.monotonic()
            _progress(job, spec, counts, evaluation.rows, started)
    reports = evaluation.reports()
    elapsed = time.monotonic() - started
    verdict = {"verdict": choose(reports).to_json()} if spec.get("kind") == "optimize" else {}
    return {
        **verdict,
        "id": spec["id"],
        "state": "done",
        "catalog": spec["catalog"],
        "since": since,
        "until": until,
        "rows": evaluation.rows,
        "skipped": {k: v for k, v in counts.items() if k != "read"},
        "read": counts["read"],
        "seconds": round(elapsed, 3),
        "rows_per_second": round(evaluation.rows / elapsed, 1) if elapsed > 0 else None,
        "candidates": [
            {"name": c.name, "kind": c.kind, "spec": c.source, **reports[c.name].to_json()}
            for c in candidates
        ],
    }


def row(ex: TrainingExample, catalog: Catalog) -> Row | None:
    """The logged decision as the candidates see it: its actions as decided with (the
    request's own, logged with it, when it sent them: then they are also the universe a
    constraints candidate reads; else the version's), with the features joined then."""
    if ex.actions:
        catalog = with_inline(catalog, tuple(rebuilt(ex.actions).values()))
    found = actions_of(catalog, (), ex.eligible)
    if found is None:
        return None
    extra = ex.action_features
    return Row(ex, [with_features(a, extra.get(a.id)) for a in found], catalog)


def _versions(spec: dict[str, Any]) -> dict[int, Catalog]:
    out = {}
    for raw in spec["catalog_versions"]:
        version = int(raw["version"])
        body = {k: v for k, v in raw.items() if k not in ("name", "version", "updated_at")}
        out[version] = parse_catalog(
            spec["catalog"], body, UNBOUNDED, version=version, now=float(raw["updated_at"])
        )
    return out


async def _examples(spec: dict[str, Any], counts: Counter[str]) -> AsyncIterator[TrainingExample]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=spec["bootstrap"], enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        tps = [TopicPartition(spec["topic"], p) for p in range(int(spec["partitions"]))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # the log as it was when the job started: what keeps arriving is not waited for.
        # Tansu reports end offsets short, so they are read on from until reads are quiet.
        reported = await consumer.end_offsets(tps)
        found = await true_end_offsets(
            spec["bootstrap"],
            {(tp.topic, tp.partition): int(reported[tp]) for tp in tps},
            timeout=5.0,
        )
        ends = {tp: found[(tp.topic, tp.partition)] for tp in tps}
        idle = 0
        while idle < IDLE_POLLS:
            reading = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not reading:
                break
            batches = await consumer.getmany(*reading, timeout_ms=200, max_records=5000)
            records = [r for tp, rs in batches.items() for r in rs if r.offset < ends[tp]]
            idle = 0 if records else idle + 1
            for ex in _decoded((r.value for r in records), counts):
                yield ex
    finally:
        await consumer.stop()


def _decoded(values: Iterable[bytes | None], counts: Counter[str]) -> Iterator[TrainingExample]:
    for raw in values:
        message = messages.read(raw or b"", counts, "on the training log")
        if isinstance(message, TrainingExample):  # a poisoned one is counted and skipped
            yield message


def _progress(
    job: Path, spec: dict[str, Any], counts: Counter[str], rows: int, started: float
) -> None:
    _write(
        job / "progress.json",
        {
            "id": spec["id"],
            "state": "running",
            "rows": rows,
            "read": counts["read"],
            "seconds": round(time.monotonic() - started, 3),
        },
    )


def _write(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data).encode())
