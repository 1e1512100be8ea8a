"""Play a simulated storefront (`engine.simulation`) against a running Loopwise server.

`run` sets up a catalog, sends `decisions` visitors through `POST /v1/decide` from
`concurrency` workers, draws clicks from the environment's known click model, posts a
reward for each click, waits until the server has learned them, then probes what the
learned model shows each segment. `plot` and `summary` present the `SimResult`.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from engine.errors import InvalidInput, Unavailable
from engine.simulation import ENVIRONMENT_NAMES, Environment, environment

PROBES_PER_SEGMENT = 20
POLL_INTERVAL_S = 0.25
LEARN_GRACE_S = 5.0
STALL_S = 2.0
REQUEST_TIMEOUT_S = 10.0
POSTFIX_EVERY = 25


@dataclass(frozen=True)
class SimConfig:
    base_url: str
    catalog: str = "sim"
    env: str = "segments"
    decisions: int = 3000
    concurrency: int = 8
    seed: int = 0
    window: int = 200
    api_key: str | None = None
    setup_catalog: bool = True
    uniform: bool = False  # the same storefront against a uniform-random policy (baseline)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"base_url must start with http:// or https://, got {self.base_url!r}",
                field="base_url",
            )
        if not self.catalog:
            raise InvalidInput("catalog must be a non-empty name, got ''", field="catalog")
        if self.env not in ENVIRONMENT_NAMES:
            raise InvalidInput(
                f"env must be one of {', '.join(ENVIRONMENT_NAMES)}, got {self.env!r}",
                field="env",
            )
        for name in ("decisions", "concurrency", "window"):
            _check_positive(name, getattr(self, name))
        if self.seed < 0:
            raise InvalidInput(f"seed must be an integer >= 0, got {self.seed!r}", field="seed")
        if self.api_key == "":
            raise InvalidInput("api_key must be None or a non-empty key, got ''", field="api_key")


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


@dataclass
class _Tally:
    """Shared by the workers: which decision is next and what happened so far."""

    total: int
    clicked: list[bool] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    next_index: int = 0
    done: int = 0
    clicks: int = 0

    def __post_init__(self) -> None:
        self.clicked = [False] * self.total

    def claim(self) -> int | None:
        if self.next_index >= self.total:
            return None
        self.next_index += 1
        return self.next_index - 1

    def record(self, index: int, clicked: bool) -> None:
        self.clicked[index] = clicked
        self.done += 1
        self.clicks += int(clicked)

    def ctr(self) -> float:
        return self.clicks / self.done if self.done else 0.0


async def run(config: SimConfig, progress: bool = True) -> SimResult:
    """Play `config.decisions` visitors against the server at `config.base_url`."""
    env = environment(config.env, config.seed)
    async with _client(config) as client:
        if config.setup_catalog:
            await _put_catalog(client, config.catalog, env, config.uniform)
        baseline = await _learned(client, config.catalog)
        started = time.perf_counter()
        tally = await _play(client, config, env, progress)
        elapsed = time.perf_counter() - started
        target = baseline + config.decisions
        learned = await _wait_learned(client, config.catalog, target, env.reward_wait_seconds)
        probes = await _probe(client, config.catalog, env)
    return _result(config, env, tally, elapsed, probes, learned - baseline)


def plot(result: SimResult, path: pathlib.Path, title: str) -> pathlib.Path:
    """Save a PNG: CTR per window vs oracle and uniform, and best-action probabilities."""
    figure = Figure(figsize=(11.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    ctr_axes, probe_axes = figure.subplots(1, 2, width_ratios=[2, 1])
    _plot_ctr(ctr_axes, result)
    _plot_probes(probe_axes, result)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, format="png")
    return path


def summary(result: SimResult) -> str:
    rate = result.decisions / result.elapsed_s if result.elapsed_s > 0 else 0.0
    last = result.ctr_by_window[-1][1] if result.ctr_by_window else result.overall_ctr
    lines = [
        f"{result.env}: {result.decisions} decisions, {result.clicks} clicks in "
        f"{result.elapsed_s:.1f} s ({rate:.0f}/s); decide latency p50 "
        f"{result.decide_latency_ms_p50:.1f} ms, p99 {result.decide_latency_ms_p99:.1f} ms",
        f"CTR {result.overall_ctr:.3f} overall, {last:.3f} in the last window; "
        f"oracle {result.best_ctr:.3f}, uniform random {result.uniform_ctr:.3f}",
        _lift_line(result.overall_ctr, last, result.best_ctr, result.uniform_ctr),
        _probe_line(result.best_action_probability, result.n_actions),
    ]
    return "\n".join(lines)


# --- HTTP -------------------------------------------------------------------------------


def _client(config: SimConfig) -> httpx.AsyncClient:
    headers = {"User-Agent": "loopwise-simulate"}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return httpx.AsyncClient(
        base_url=config.base_url,
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
        limits=httpx.Limits(max_connections=config.concurrency + 2),
    )


async def _send(
    client: httpx.AsyncClient, method: str, path: str, body: object = None
) -> httpx.Response:
    try:
        return await client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise Unavailable(f"{method} {path} failed: {exc!r}") from exc


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: object = None
) -> dict[str, Any]:
    response = await _send(client, method, path, body)
    _raise_for_problem(response, method, path)
    return _json_object(response, method, path)


def _raise_for_problem(response: httpx.Response, method: str, path: str) -> None:
    if response.is_success:
        return
    title, detail = _problem(response)
    raise Unavailable(
        f"{method} {path} returned {response.status_code} {title}: {detail}", field=path
    )


def _problem(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase, response.text[:300] or "(empty body)"
    if not isinstance(body, dict):
        return response.reason_phrase, str(body)[:300]
    title = str(body.get("title") or response.reason_phrase)
    return title, str(body.get("detail") or body)[:300]


def _json_object(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise Unavailable(f"{method} {path} answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Unavailable(f"{method} {path} answered {type(body).__name__}, expected an object")
    return body


def _catalog_path(prefix: str, catalog: str) -> str:
    return f"{prefix}/{quote(catalog, safe='')}"


async def _put_catalog(
    client: httpx.AsyncClient, catalog: str, env: Environment, uniform: bool = False
) -> None:
    body = env.catalog_body(catalog)
    if uniform:
        learning = body["learning"]
        if isinstance(learning, dict):
            body["learning"] = {**learning, "policy": "uniform"}
    await _call(client, "PUT", _catalog_path("/v1/catalogs", catalog), body)


async def _learned(client: httpx.AsyncClient, catalog: str) -> int:
    """Examples the server has learned for `catalog`; 0 while it has no model yet."""
    path = _catalog_path("/v1/models", catalog)
    response = await _send(client, "GET", path)
    if response.status_code == httpx.codes.NOT_FOUND:
        return 0
    _raise_for_problem(response, "GET", path)
    learned = _json_object(response, "GET", path).get("learned")
    if isinstance(learned, bool) or not isinstance(learned, int):
        raise Unavailable(f"GET {path} answered learned={learned!r}, expected an integer")
    return learned


async def _decide(
    client: httpx.AsyncClient, catalog: str, context: dict[str, object], user_id: str
) -> dict[str, Any]:
    body = {"catalog": catalog, "context": context, "user_id": user_id}
    return await _call(client, "POST", "/v1/decide", body)


async def _reward(client: httpx.AsyncClient, event_id: str, value: float) -> None:
    response = await _send(client, "POST", "/v1/rewards", {"event_id": event_id, "value": value})
    _raise_for_problem(response, "POST", "/v1/rewards")


def _chosen(decision: dict[str, Any], env: Environment) -> tuple[str, str]:
    """(event_id, chosen action id) of a decide response, checked against the env."""
    chosen = decision.get("chosen")
    event_id = decision.get("event_id")
    action = chosen.get("id") if isinstance(chosen, dict) else None
    if not isinstance(event_id, str) or not isinstance(action, str):
        raise Unavailable(f"POST /v1/decide answered without event_id or chosen.id: {decision}")
    if action not in env.action_ids:
        raise Unavailable(f"POST /v1/decide chose {action!r}, which is not in the catalog")
    return event_id, action


def _ranking_probability(decision: dict[str, Any], action_id: str) -> float:
    ranking = decision.get("ranking")
    if not isinstance(ranking, list):
        raise Unavailable(f"POST /v1/decide answered without a ranking list: {decision}")
    for entry in ranking:
        if isinstance(entry, dict) and entry.get("id") == action_id:
            return float(entry.get("probability", 0.0))
    return 0.0


# --- playing ----------------------------------------------------------------------------


async def _play(
    client: httpx.AsyncClient, config: SimConfig, env: Environment, progress: bool
) -> _Tally:
    tally = _Tally(config.decisions)
    seeds = np.random.SeedSequence(config.seed).spawn(config.concurrency)
    with tqdm(total=config.decisions, disable=not progress, unit="decision", desc=env.name) as bar:
        workers = [
            _worker(client, config.catalog, env, np.random.default_rng(seed), tally, bar)
            for seed in seeds
        ]
        await _all_or_cancel(workers)
        bar.set_postfix(ctr=f"{tally.ctr():.3f}")
    return tally


async def _worker(
    client: httpx.AsyncClient,
    catalog: str,
    env: Environment,
    rng: np.random.Generator,
    tally: _Tally,
    bar: tqdm[Any],
) -> None:
    while (index := tally.claim()) is not None:
        clicked = await _step(client, catalog, env, rng, tally)
        tally.record(index, clicked)
        bar.update(1)
        if tally.done % POSTFIX_EVERY == 0:
            bar.set_postfix(ctr=f"{tally.ctr():.3f}", refresh=False)


async def _step(
    client: httpx.AsyncClient,
    catalog: str,
    env: Environment,
    rng: np.random.Generator,
    tally: _Tally,
) -> bool:
    visitor = env.visitor(rng)
    started = time.perf_counter()
    decision = await _decide(client, catalog, visitor.context, visitor.user_id)
    tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
    event_id, action = _chosen(decision, env)
    clicked = bool(rng.random() < env.click_probability(visitor, action))
    if clicked:
        await _reward(client, event_id, 1.0)
    return clicked


async def _all_or_cancel(coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run all; on the first failure cancel the rest and raise that failure itself."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _wait_learned(client: httpx.AsyncClient, catalog: str, target: int, wait_s: float) -> int:
    """Poll until `learned >= target`, the deadline passes or learning stops growing."""
    now = time.monotonic()
    deadline, last_growth = now + wait_s + LEARN_GRACE_S, now
    learned = await _learned(client, catalog)
    while learned < target and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        current = await _learned(client, catalog)
        if current > learned:
            learned, last_growth = current, time.monotonic()
        elif time.monotonic() - last_growth > wait_s + STALL_S:
            break
    return learned


async def _probe(client: httpx.AsyncClient, catalog: str, env: Environment) -> dict[str, float]:
    return {
        segment: await _probe_segment(client, catalog, env, segment)
        for segment in env.segment_names
    }


async def _probe_segment(
    client: httpx.AsyncClient, catalog: str, env: Environment, segment: str
) -> float:
    context = env.segment_context(segment)
    best = env.best_action(segment)
    decisions = await asyncio.gather(
        *(
            _decide(client, catalog, context, f"probe-{segment}-{i}")
            for i in range(PROBES_PER_SEGMENT)
        )
    )
    return float(np.mean([_ranking_probability(d, best) for d in decisions]))


def _result(
    config: SimConfig,
    env: Environment,
    tally: _Tally,
    elapsed_s: float,
    probes: dict[str, float],
    learned: int,
) -> SimResult:
    p50, p99 = np.percentile(tally.latencies_ms, [50, 99])
    return SimResult(
        ctr_by_window=_windows(tally.clicked, config.window),
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
    )


def _windows(clicked: Sequence[bool], window: int) -> list[tuple[int, float]]:
    """(decisions so far, CTR within the window ending there); a short last window counts."""
    out: list[tuple[int, float]] = []
    for start in range(0, len(clicked), window):
        chunk = clicked[start : start + window]
        out.append((start + len(chunk), sum(chunk) / len(chunk)))
    return out


# --- presenting -------------------------------------------------------------------------


def _plot_ctr(axes: Axes, result: SimResult) -> None:
    xs = [n for n, _ in result.ctr_by_window]
    ys = [ctr for _, ctr in result.ctr_by_window]
    axes.plot(xs, ys, marker="o", markersize=3, label="Loopwise (CTR per window)")
    axes.axhline(result.best_ctr, color="tab:green", linestyle="--", label="oracle (best)")
    axes.axhline(result.uniform_ctr, color="tab:red", linestyle=":", label="uniform random")
    top = max([result.best_ctr, result.uniform_ctr, *ys])
    axes.set_ylim(0.0, top * 1.2 if top > 0 else 1.0)
    axes.set_xlabel("decisions")
    axes.set_ylabel("click-through rate")
    axes.set_title("CTR over time")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)


def _plot_probes(axes: Axes, result: SimResult) -> None:
    names = list(result.best_action_probability)
    values = [result.best_action_probability[n] for n in names]
    bars = axes.bar(names, values, color="tab:blue")
    axes.bar_label(bars, fmt="%.2f")
    if result.n_actions > 0:
        axes.axhline(1.0 / result.n_actions, color="tab:red", linestyle=":", label="1/K")
        axes.legend(loc="upper right")
    axes.set_ylim(0.0, 1.1)
    axes.set_ylabel("probability of best action")
    axes.set_title("Learned policy per segment")
    axes.tick_params(axis="x", labelrotation=30)


def _lift_line(overall: float, last: float, best: float, uniform: float) -> str:
    gap = best - uniform
    if gap <= 0 or not math.isfinite(gap):
        return "lift: undefined (the oracle is no better than uniform)"
    return (
        f"lift captured over uniform: {(overall - uniform) / gap:.0%} overall, "
        f"{(last - uniform) / gap:.0%} in the last window"
    )


def _probe_line(probabilities: dict[str, float], n_actions: int) -> str:
    uniform = f"{1.0 / n_actions:.3f}" if n_actions > 0 else "n/a"
    parts = ", ".join(f"{name} {p:.2f}" for name, p in probabilities.items())
    return f"best-action probability (1/K = {uniform}): {parts or 'not probed'}"


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1, got {value!r}", field=name)
