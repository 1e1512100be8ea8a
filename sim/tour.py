"""`loopwise tour`: experiments on a simulated storefront, measured against its truth.

Against a running server, on one catalog of a storefront environment (sim.environments)
with the default VW policy and an exploration floor (so its log supports evaluation):

1. A/B: an experiment of the catalog's model (control) against a marketer's priority
   rule (the banner that clicks best over all traffic). Visitors click at the click
   model's rates, each click is posted as a reward, and `/experiment/results` is read
   every `window` decisions: each arm's mean with its anytime-valid interval, and the
   difference to control. The API's own results.svg is saved.
2. Evaluation: a rule change (one segment shown only one banner) and another priority
   rule, estimated off-policy on the A/B's log (IPS, SNIPS, DR with intervals and ESS,
   or the API's reason for refusing).
3. Apprentice: the catalog in apprentice mode, the storefront's own choice (the
   marketer's banner) sent as `baseline`; `/apprentice` read, then back online.
4. Failover: the catalog forced onto its safe policy; every decision must answer 200,
   flagged with its reason; then back to auto.

Every number sits beside the truth computed from the click model on the same decisions
(sim.tour_truth); `sim.tour_plot` draws them.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from engine.errors import Unavailable
from sim import answers, server
from sim.environments import environment
from sim.server import POLL_INTERVAL_S
from sim.simulate import all_or_cancel, wait_learned
from sim.storefront import Environment, Visitor
from sim.tour_config import TourConfig
from sim.tour_result import (
    METHODS,
    ABResult,
    ApprenticeResult,
    CandidateResult,
    Estimate,
    EvaluationResult,
    FailoverResult,
    Interval,
    Sample,
    Tour,
)
from sim.tour_truth import (
    SegmentRule,
    Shown,
    expected,
    marketer_banner,
    overall,
    priority_truth,
    rule_value,
    running_mean,
)

CONTROL, CHALLENGER = "model", "merch"
FAILOVER_REASON = "tour: a failover drill"
AFTER_AUTO = 20  # decisions sent once the failover is handed back to the breaker
TERMINAL = ("done", "failed", "stopped")
STAGES = ("A/B", "apprentice", "failover", "auto")  # each draws from its own seeds

Step = Callable[[np.random.Generator, int], Awaitable[None]]


async def run(config: TourConfig, out: Path, progress: bool = True) -> Tour:
    """The four stages against the server at `config.base_url`; results.svg into `out`."""
    env = environment(config.env, config.seed)
    started = time.perf_counter()
    async with server.connect(config.sim()) as client:
        await server.put_catalog_body(client, config.catalog, catalog_body(config, env))
        ab, rows, window = await _ab(client, config, env, out, progress)
        evaluation = await _evaluate(client, config, env, rows, window, progress)
        await server.delete_experiment(client, config.catalog)
        apprentice = await _apprentice(client, config, env, progress)
        failover = await _failover(client, config, env, progress)
    return Tour(
        env=env.name,
        catalog=config.catalog,
        seed=config.seed,
        elapsed_s=time.perf_counter() - started,
        ab=ab,
        evaluation=evaluation,
        apprentice=apprentice,
        failover=failover,
        settings={
            "exploration_floor": config.exploration_floor,
            "ab_decisions": config.ab_decisions,
            "window": config.window,
            "apprentice_decisions": config.apprentice_decisions,
            "failover_decisions": config.failover_decisions,
            "concurrency": config.concurrency,
        },
    )


def catalog_body(config: TourConfig, env: Environment) -> dict[str, object]:
    """The storefront's catalog with the default VW policy (no exploration named) and the
    exploration floor."""
    body = env.catalog_body(config.catalog)
    learning = body["learning"]
    if isinstance(learning, dict):
        body["learning"] = {k: v for k, v in learning.items() if k != "exploration"}
    body["constraints"] = {"exploration_floor": config.exploration_floor}
    return body


# -- the crowd: concurrent visitors ------------------------------------------------------


@dataclass
class _Crowd:
    """Which visitor is next, shared by the workers of one stage."""

    total: int
    next_index: int = 0

    def claim(self) -> int | None:
        if self.next_index >= self.total:
            return None
        self.next_index += 1
        return self.next_index - 1


async def _crowd(config: TourConfig, n: int, desc: str, step: Step, progress: bool) -> None:
    """`step` for n visitors, from `config.concurrency` workers with their own seeds."""
    crowd = _Crowd(n)
    stage = STAGES.index(desc)
    seeds = np.random.SeedSequence([config.seed, stage]).spawn(config.concurrency)
    with tqdm(total=n, disable=not progress, unit="decision", desc=desc) as bar:

        async def worker(rng: np.random.Generator) -> None:
            while (index := crowd.claim()) is not None:
                await step(rng, index)
                bar.update(1)

        await all_or_cancel([worker(np.random.default_rng(s)) for s in seeds])


def _click(env: Environment, visitor: Visitor, action: str, rng: np.random.Generator) -> bool:
    return bool(rng.random() < env.click_probability(visitor, action))


# -- 1. the A/B ------------------------------------------------------------------------


@dataclass
class _ABRun:
    rows: list[Shown | None]
    values: list[float]  # each row's true click probability, as the row was decided
    samples: list[Sample] = field(default_factory=list)
    rewards: Counter[str] = field(default_factory=Counter)  # the API's answers, by status
    done: int = 0
    clicks: int = 0
    started: float = 0.0


async def _ab(
    client: httpx.AsyncClient,
    config: TourConfig,
    env: Environment,
    out: Path,
    progress: bool,
) -> tuple[ABResult, list[Shown], tuple[float, float]]:
    banner = marketer_banner(env)
    name = f"model-vs-merch-{uuid.uuid4().hex[:6]}"  # a new name: no earlier tallies
    experiment = experiment_body(name, config.seed, banner)
    shown = await server.put_experiment(client, config.catalog, experiment)
    policies = {str(a["name"]): a["policy"] for a in shown["arms"]}
    before = await server.learned(client, config.catalog)
    run = _ABRun([None] * config.ab_decisions, [math.nan] * config.ab_decisions)
    since = time.time()
    run.started = time.perf_counter()

    async def step(rng: np.random.Generator, index: int) -> None:
        visitor = env.visitor(rng)
        decision = await server.decide(client, config.catalog, visitor.context, visitor.user_id)
        event_id, action = _chosen(decision, env)
        clicked = _click(env, visitor, action, rng)
        if clicked:
            run.rewards[await server.reward(client, event_id, 1.0)] += 1
        arm = str(decision.get("experiment", {}).get("arm", ""))
        row = Shown(visitor.segment, answers.ranking(decision), action, arm, clicked)
        run.rows[index], run.values[index] = row, expected(env, row)
        run.done += 1
        run.clicks += int(clicked)

    sampler = asyncio.create_task(_sampler(client, config, env, run))
    try:
        await _crowd(config, config.ab_decisions, "A/B", step, progress)
        elapsed = time.perf_counter() - run.started
        await wait_learned(
            client, config.catalog, before + config.ab_decisions, env.reward_wait_seconds
        )
    finally:
        sampler.cancel()
        (stopped,) = await asyncio.gather(sampler, return_exceptions=True)
    if isinstance(stopped, Exception):  # the reads failed before the run ended
        raise stopped
    until = time.time()
    final = await _sample(client, config, env, run)
    svg = out / "results.svg"
    out.mkdir(parents=True, exist_ok=True)
    svg.write_text(await server.experiment_svg(client, config.catalog))
    rows = [r for r in run.rows if r is not None]
    result = ABResult(
        experiment=name,
        control=CONTROL,
        policies=policies,
        marketer_banner=banner,
        decisions=len(rows),
        clicks=run.clicks,
        reward_statuses=dict(run.rewards),
        rewards_learned=round(math.fsum(i.mean * i.n for i in final.arms.values())),
        elapsed_s=elapsed,
        samples=sorted(run.samples, key=lambda s: s.sent),
        final=final,
        rule_value=rule_value(env, banner, config.exploration_floor),
        oracle=env.best_ctr(),
        covered=_coverage([*run.samples, final]),
        svg=str(svg),
    )
    return result, rows, (since, until)


def experiment_body(name: str, seed: int, banner: str) -> dict[str, object]:
    """The catalog's model (control) against always `banner`, half the traffic each."""
    rule = {"rule": "priority", "priority": [banner]}
    return {
        "name": name,
        "seed": seed,
        "control": CONTROL,
        "arms": [
            {"name": CONTROL, "share": 0.5},
            {"name": CHALLENGER, "share": 0.5, "policy": rule},
        ],
    }


def _chosen(decision: dict[str, Any], env: Environment) -> tuple[str, str]:
    chosen = answers.chosen(decision, env)
    if chosen is None:
        raise Unavailable(f"POST /v1/decide showed nothing: {decision}")
    return chosen


async def _sampler(
    client: httpx.AsyncClient, config: TourConfig, env: Environment, run: _ABRun
) -> None:
    """Read the results until cancelled; keep a read each time the decisions they hold
    grew by another `window` (the results follow learning, which may lag the traffic)."""
    kept = 0
    while True:
        await asyncio.sleep(POLL_INTERVAL_S)
        sample = await _sample(client, config, env, run)
        held = sum(i.n for i in sample.arms.values())
        if held >= kept + config.window:
            run.samples.append(sample)
            kept = held - held % config.window


async def _sample(
    client: httpx.AsyncClient, config: TourConfig, env: Environment, run: _ABRun
) -> Sample:
    """Read the results; each arm's truth is its true mean over as many of its decisions
    (in the order they were sent) as the results hold."""
    sent = run.done
    report = await server.experiment_results(client, config.catalog)
    values: dict[str, list[float]] = {}
    for row, value in zip(run.rows, run.values, strict=True):
        if row is not None:
            values.setdefault(row.arm, []).append(value)
    arms, truth, difference, difference_truth = {}, {}, {}, {}
    for raw in report["arms"]:
        arm = str(raw["arm"])
        arms[arm] = Interval.of(raw)
        truth[arm] = running_mean(values.get(arm, []), arms[arm].n)
    for raw in report["arms"]:
        arm = str(raw["arm"])
        if "difference" in raw:
            difference[arm] = Interval.of(raw["difference"])
            difference_truth[arm] = truth[arm] - truth[CONTROL]
    return Sample(
        sent, time.perf_counter() - run.started, arms, truth, difference, difference_truth
    )


def _coverage(samples: list[Sample]) -> dict[str, list[int]]:
    """Per arm and per difference: [reads whose interval held the truth, reads]."""
    out: dict[str, list[int]] = {}
    for s in samples:
        pairs = [(a, s.arms[a], s.truth[a]) for a in s.arms]
        pairs += [
            (f"{a} - {CONTROL}", s.difference[a], s.difference_truth[a]) for a in s.difference
        ]
        for key, interval, truth in pairs:
            if interval.n == 0 or math.isnan(truth):
                continue
            held, reads = out.setdefault(key, [0, 0])
            out[key] = [held + int(interval.covers(truth)), reads + 1]
    return out


# -- 2. the evaluation -----------------------------------------------------------------


def candidates(env: Environment) -> tuple[SegmentRule, str]:
    """The rule change (the smallest segment shown only its own best banner) and a
    priority rule for the runner-up banner over all traffic."""
    segment = min(env.segments, key=lambda s: s.weight).name
    action = env.best_action(segment)
    rule = SegmentRule(f"only-{action}-for-{segment}", segment, action)
    return rule, overall(env)[1][0]


async def _evaluate(
    client: httpx.AsyncClient,
    config: TourConfig,
    env: Environment,
    rows: list[Shown],
    window: tuple[float, float],
    progress: bool,
) -> EvaluationResult:
    rule, runner_up = candidates(env)
    specs: list[dict[str, object]] = [
        {"name": rule.name, "constraints": rule.constraints(config.exploration_floor)},
        {"name": f"merch-{runner_up}-first", "rule": "priority", "priority": [runner_up]},
    ]
    truths = [rule.truth(env, rows), priority_truth(env, runner_up, rows)]
    since, until = window
    body = {"since": since - 1.0, "until": until + 1.0, "candidates": specs}
    started = time.perf_counter()
    location = await server.start_evaluation(client, config.catalog, body)
    status = await _wait_job(client, location, len(rows), config.evaluation_timeout_s, progress)
    waited = time.perf_counter() - started
    logged_truth = math.fsum(expected(env, r) for r in rows) / len(rows)
    if status.get("state") != "done":
        return EvaluationResult(
            state=str(status.get("state")),
            rows=int(status.get("rows", 0)),
            logged_decisions=len(rows),
            seconds=float(status.get("seconds", 0.0)),
            waited_s=waited,
            logged=Estimate(False, reason="the job did not finish"),
            logged_truth=logged_truth,
            candidates=[],
            error=str(status.get("error") or status),
        )
    found = {str(c["name"]): c for c in status["candidates"]}
    results = [
        CandidateResult(
            name=str(spec["name"]),
            kind=str(found[str(spec["name"])]["kind"]),
            spec=spec,
            truth=truth,
            estimates={m: Estimate.of(found[str(spec["name"])][m]) for m in METHODS},
        )
        for spec, truth in zip(specs, truths, strict=True)
    ]
    return EvaluationResult(
        state="done",
        rows=int(status["rows"]),
        logged_decisions=len(rows),
        seconds=float(status.get("seconds", 0.0)),
        waited_s=waited,
        logged=Estimate.of(found[rule.name]["logged"]),
        logged_truth=logged_truth,
        candidates=results,
    )


async def _wait_job(
    client: httpx.AsyncClient, location: str, rows: int, timeout_s: float, progress: bool
) -> dict[str, Any]:
    """Poll the job until it ends (or `timeout_s`), its rows read as progress."""
    deadline = time.monotonic() + timeout_s
    with tqdm(total=rows, disable=not progress, unit="row", desc="evaluation") as bar:
        while True:
            status = await server.evaluation(client, location)
            read = int(status.get("rows", 0) or 0)
            bar.update(max(0, min(read, rows) - bar.n))
            if status.get("state") in TERMINAL:
                return status
            if time.monotonic() > deadline:
                return {**status, "state": "timed out", "error": f"after {timeout_s:g} s"}
            await asyncio.sleep(POLL_INTERVAL_S)


# -- 3. apprentice mode ----------------------------------------------------------------


async def _apprentice(
    client: httpx.AsyncClient, config: TourConfig, env: Environment, progress: bool
) -> ApprenticeResult:
    baseline = marketer_banner(env)
    await server.put_mode(client, config.catalog, "apprentice")
    before = await server.learned(client, config.catalog)
    rows: list[Shown] = []

    async def step(rng: np.random.Generator, index: int) -> None:
        visitor = env.visitor(rng)
        decision = await server.decide(
            client, config.catalog, visitor.context, visitor.user_id, baseline=baseline
        )
        event_id, action = _chosen(decision, env)
        clicked = _click(env, visitor, action, rng)
        if clicked:
            await server.reward(client, event_id, 1.0)
        choice = decision.get("model_choice")
        drawn = str(choice["id"]) if isinstance(choice, dict) else None
        rows.append(Shown(visitor.segment, {action: 1.0}, action, "", clicked, drawn))

    n = config.apprentice_decisions
    try:
        await _crowd(config, n, "apprentice", step, progress)
        await wait_learned(client, config.catalog, before + n, env.reward_wait_seconds)
        report = (await server.apprentice(client, config.catalog)).get("report")
    finally:
        await server.put_mode(client, config.catalog, "online")
    return _apprentice_result(env, baseline, rows, report)


def _apprentice_result(
    env: Environment, baseline: str, rows: list[Shown], report: object
) -> ApprenticeResult:
    drawn = [r for r in rows if r.model_choice is not None]
    agreement = math.fsum(r.model_choice == baseline for r in drawn) / max(len(drawn), 1)
    base = math.fsum(expected(env, r) for r in rows) / max(len(rows), 1)
    policy = math.fsum(
        expected(env, Shown(r.segment, {str(r.model_choice): 1.0}, str(r.model_choice)))
        for r in drawn
    ) / max(len(drawn), 1)
    if not isinstance(report, dict):
        return ApprenticeResult(
            len(rows), baseline, None, None, None, None, agreement, base, policy
        )
    span = report["policy_reward_range"]
    return ApprenticeResult(
        decisions=int(report["decisions"]),
        baseline=baseline,
        agreement=Interval.of(report["agreement"]),
        baseline_reward=Interval.of(report["baseline_reward"]),
        policy_range=(float(span["low"]), float(span["high"])),
        verdict=str(report.get("verdict")),
        truth_agreement=agreement,
        truth_baseline=base,
        truth_policy=policy,
    )


# -- 4. failover -----------------------------------------------------------------------


@dataclass
class _Answers:
    statuses: Counter[str] = field(default_factory=Counter)
    policies: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    flagged: int = 0


async def _failover(
    client: httpx.AsyncClient, config: TourConfig, env: Environment, progress: bool
) -> FailoverResult:
    before = (await server.failover(client, config.catalog))["failovers"]["forced"]
    forced = await server.put_failover(client, config.catalog, "safe", FAILOVER_REASON)
    drill = _Answers()
    try:
        await _crowd(
            config,
            config.failover_decisions,
            "failover",
            _failover_step(client, config, env, drill),
            progress,
        )
        counted = (await server.failover(client, config.catalog))["failovers"]["forced"] - before
    finally:
        auto = await server.put_failover(client, config.catalog, "auto")
    after = _Answers()
    await _crowd(config, AFTER_AUTO, "auto", _failover_step(client, config, env, after), False)
    return FailoverResult(
        reason=FAILOVER_REASON,
        sent=config.failover_decisions,
        answered=drill.statuses["200"],
        flagged=drill.flagged,
        statuses=dict(drill.statuses),
        policies=dict(drill.policies),
        reasons=dict(drill.reasons),
        counted=int(counted),
        breaker=str(forced["breaker"]["state"]),
        after_sent=AFTER_AUTO,
        after_flagged=after.flagged,
        after_breaker=str(auto["breaker"]["state"]),
    )


def _failover_step(
    client: httpx.AsyncClient, config: TourConfig, env: Environment, seen: _Answers
) -> Step:
    """A decision whose every answer is counted, not raised: the drill counts them."""

    async def step(rng: np.random.Generator, index: int) -> None:
        visitor = env.visitor(rng)
        body = server.decide_body(config.catalog, visitor.context, visitor.user_id)
        response = await server.send(client, "POST", "/v1/decide", body)
        seen.statuses[str(response.status_code)] += 1
        if response.status_code != httpx.codes.OK:
            return
        decision = response.json()
        seen.policies[str(decision.get("policy"))] += 1
        reason = decision.get("fallback_reason")
        if decision.get("fallback") is True and isinstance(reason, str) and reason:
            seen.flagged += 1
            seen.reasons[reason] += 1
        event_id, action = _chosen(decision, env)
        if _click(env, visitor, action, rng):
            await server.reward(client, event_id, 1.0)

    return step
