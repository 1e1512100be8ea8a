"""Play a simulated storefront (`sim.storefront`) against a running Loopwise server.

`run` sets up a catalog, sends `decisions` visitors through `POST /v1/decide` from
`concurrency` workers, draws clicks from the environment's known click model, posts a
reward for each click, waits until the server has learned them, then probes what the
learned model shows each segment. `plot` and `summary` present the `SimResult`.

Under constraints (`stock`, `cap`): the catalog gets an inventory constraint and/or a
per-user, per-action hourly frequency cap. With `stock`, the simulator keeps the shop's own
stock ledger: it posts every SKU's initial level as inventory events before the run, each
click is a purchase that posts the SKU's new level, a banner that sells out disappears
from decisions (optionally restocked `restock_after` seconds later). With `cap`, visitors
come from a bounded pool of returning users (`users`) so the caps bite. Decisions where
nothing was eligible ("chosen": null) and the "removed" counts of every response are
tallied per window, and the probes check the learned policy prefers each segment's best
action that is still in stock.

With behaviour (the `intent` storefront, whose context hides the segment): each concurrent
worker plays its own returning users (`Shoppers`), so a user's visits happen in order;
a visit posts its product views (`POST /v1/events`), waits `dwell_s` (0: the decision
comes right after the views), then decides with `user_id` and `session_id` and `debug`,
which returns the features used: they tell whether the decision saw the visit's own
views ("fresh"), only the session's earlier ones ("stale") or nothing of the session.
`feature_store=False` puts the catalog with `"features": []`: the same visits, no store.
The probes give probe users views of one intent and ask what the learned model shows.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from engine.errors import InvalidInput, Unavailable
from sim.storefront import (
    CAP_WINDOW_SECONDS,
    ENVIRONMENT_NAMES,
    MAX_CAP,
    Environment,
    Shoppers,
    Visitor,
    environment,
    shopper_ids,
)

PROBES_PER_SEGMENT = 20
POLL_INTERVAL_S = 0.25
LEARN_CAP_S = 120.0  # the longest the learned count may keep catching up
# How long the learned count may stand still (beyond the reward wait) before the wait
# gives up: generous, since a loaded machine can hold the last examples back for seconds
# (a CI run stopped 1 of 8,000 short at 2 s), and giving up early reads as a lost reward.
STALL_S = 10.0
REQUEST_TIMEOUT_S = 10.0
# Idle connections are dropped well before the server's keep-alive (uvicorn: 5 s) closes
# them: at httpx's default of 5 s a request could race the server's close (ReadError).
KEEPALIVE_EXPIRY_S = 2.0
POSTFIX_EVERY = 25
MAX_LABELLED_STOCK_OUTS = 4  # more sell-outs: lines only, counted in the legend
DEFAULT_CAP_USERS = 200  # the user pool when a cap is set without `users`
MAX_STOCK = 1_000_000_000
STOCK_SYNC_S = 10.0  # how long to wait for the server to see the shop's stock levels
PROBE_SYNC_S = 10.0  # how long the probes wait for the server to see their views
STORE_SYNC_S = 60.0  # how long a run waits for the feature store to show a first view
PROBE_VIEWS = 2  # product views of its intent each probe user posts
PROBE_BATCH = 500  # behaviour events per POST (the server's default batch limit: 1,000)
DEVICES_PROBE = "mobile"
MAX_DWELL_S = 60.0
FRESH, STALE, NO_SESSION = "fresh", "stale", "none"


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
    exploration_floor: float = 0.0  # catalog constraint: every banner keeps >= floor/K
    stock: int | None = None  # initial units per banner; each click buys one
    restock_after: float | None = None  # seconds after a sell-out to restock to `stock`
    cap: int | None = None  # at most this many exposures per banner per user per hour
    users: int | None = None  # a pool of returning user ids (default with a cap: 200)
    feature_store: bool = True  # False: the catalog declares "features": [] (store off)
    dwell_s: float = 0.0  # with behaviour: seconds from a visit's views to its decision

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
        if not 0.0 <= self.exploration_floor <= 1.0:
            raise InvalidInput(
                f"exploration_floor must be in [0, 1], got {self.exploration_floor!r}",
                field="exploration_floor",
            )
        if self.api_key == "":
            raise InvalidInput("api_key must be None or a non-empty key, got ''", field="api_key")
        self._check_constraints()
        self._check_behaviour()

    def _check_behaviour(self) -> None:
        wait = self.dwell_s
        if isinstance(wait, bool) or not isinstance(wait, int | float):
            raise InvalidInput(
                f"dwell_s must be a number of seconds, got {wait!r}", field="dwell_s"
            )
        if not (math.isfinite(wait) and 0.0 <= wait <= MAX_DWELL_S):
            raise InvalidInput(
                f"dwell_s must be in [0, {MAX_DWELL_S:g}] seconds, got {wait!r}", field="dwell_s"
            )
        if environment(self.env, self.seed).browsing is None:
            return
        if self.constrained:
            raise InvalidInput(
                f"the {self.env!r} storefront does not run under stock or caps", field="env"
            )
        users = self.user_pool
        if users is not None and users < self.concurrency:
            raise InvalidInput(
                f"users must be at least concurrency ({self.concurrency}): each worker plays "
                f"its own users, got {users!r}",
                field="users",
            )

    def _check_constraints(self) -> None:
        if self.stock is not None:
            _check_positive("stock", self.stock)
            if self.stock > MAX_STOCK:
                raise InvalidInput(
                    f"stock must be at most {MAX_STOCK}, got {self.stock!r}", field="stock"
                )
        if self.restock_after is not None:
            wait = self.restock_after
            if isinstance(wait, bool) or not isinstance(wait, int | float):
                raise InvalidInput(
                    f"restock_after must be a number of seconds > 0, got {wait!r}",
                    field="restock_after",
                )
            if not (math.isfinite(wait) and wait > 0):
                raise InvalidInput(
                    f"restock_after must be a finite number of seconds > 0, got {wait!r}",
                    field="restock_after",
                )
            if self.stock is None:
                raise InvalidInput(
                    "restock_after needs stock (there is nothing to restock without it)",
                    field="restock_after",
                )
        if self.cap is not None:
            _check_positive("cap", self.cap)
            if self.cap > MAX_CAP:
                raise InvalidInput(f"cap must be at most {MAX_CAP}, got {self.cap!r}", field="cap")
        if self.users is not None:
            _check_positive("users", self.users)
            environment(self.env, self.seed).user_pool(self.users)  # enough for every segment

    @property
    def constrained(self) -> bool:
        """Whether the run uses stock or caps (else it is the plain storefront)."""
        return self.stock is not None or self.cap is not None

    @property
    def user_pool(self) -> int | None:
        """How many returning user ids visitors are drawn from; None: fresh ones."""
        if self.users is not None:
            return self.users
        browsing = environment(self.env, self.seed).browsing
        if browsing is not None:
            return browsing.users
        return DEFAULT_CAP_USERS if self.cap is not None else None


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


@dataclass(frozen=True)
class _Outcome:
    """What one visitor's decision did."""

    clicked: bool
    shown: bool = True
    removed: Mapping[str, int] = field(default_factory=dict)
    best: float = math.nan  # best click probability among the eligible actions
    mean: float = math.nan  # their average click probability (uniform among the eligible)
    p_click: float = math.nan  # the click model's probability for the banner shown
    seen: str | None = None  # with behaviour: FRESH, STALE or NO_SESSION
    joined: bool = False  # with behaviour: the features held anything from the store


NOT_SHOWN = _Outcome(clicked=False, shown=False)


@dataclass
class _Tally:
    """Shared by the workers: which decision is next and what happened so far."""

    total: int
    clicked: list[bool] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)
    removed: list[Mapping[str, int]] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    event_latencies_ms: list[float] = field(default_factory=list)
    seen: list[str | None] = field(default_factory=list)
    p_click: list[float] = field(default_factory=list)
    joined: int = 0
    fresh: int = 0
    events_posted: int = 0
    next_index: int = 0
    done: int = 0
    clicks: int = 0
    nothing_eligible: int = 0

    def __post_init__(self) -> None:
        self.clicked = [False] * self.total
        self.shown = [False] * self.total
        self.removed = [{} for _ in range(self.total)]
        self.best = [math.nan] * self.total
        self.mean = [math.nan] * self.total
        self.seen = [None] * self.total
        self.p_click = [math.nan] * self.total

    def claim(self) -> int | None:
        if self.next_index >= self.total:
            return None
        self.next_index += 1
        return self.next_index - 1

    def record(self, index: int, outcome: _Outcome) -> None:
        self.clicked[index] = outcome.clicked
        self.shown[index] = outcome.shown
        self.removed[index] = outcome.removed
        self.best[index] = outcome.best
        self.mean[index] = outcome.mean
        self.seen[index] = outcome.seen
        self.p_click[index] = outcome.p_click
        self.joined += int(outcome.joined)
        self.fresh += int(outcome.seen == FRESH)
        self.done += 1
        self.clicks += int(outcome.clicked)
        self.nothing_eligible += int(not outcome.shown)

    def ctr(self) -> float:
        """Clicks per banner shown (every decision shows one unless constraints remove all)."""
        shown = self.done - self.nothing_eligible
        return self.clicks / shown if shown else 0.0


@dataclass
class _Shop:
    """The storefront's own stock ledger: the truth, which the server learns from events.

    Levels are posted as absolute values stamped with strictly increasing times per SKU,
    so concurrent posts that arrive out of order still leave the newest level in force.
    """

    skus: dict[str, str]  # action id -> SKU
    initial: int
    restock_after: float | None
    levels: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)
    stock_outs: list[tuple[int, str]] = field(default_factory=list)
    restocks: list[tuple[int, str]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    waiting: dict[asyncio.Task[None], str] = field(default_factory=dict)  # restock sleeping
    purchases: int = 0
    oversold: int = 0

    def __post_init__(self) -> None:
        self.levels = dict.fromkeys(self.skus, self.initial)

    def stamp(self, action_id: str) -> float:
        ts = max(time.time(), self.stamps.get(action_id, 0.0) + 1e-6)
        self.stamps[action_id] = ts
        return ts

    def buy(self, action_id: str) -> tuple[int, float] | None:
        """One unit sold: (new level, its timestamp); None when it was already sold out."""
        level = self.levels[action_id]
        if level <= 0:
            self.oversold += 1
            return None
        self.levels[action_id] = level - 1
        self.purchases += 1
        return level - 1, self.stamp(action_id)

    def restock(self, action_id: str) -> tuple[int, float]:
        self.levels[action_id] = self.initial
        return self.initial, self.stamp(action_id)

    def in_stock(self) -> set[str]:
        return {a for a, level in self.levels.items() if level > 0}

    def event(self, action_id: str, level: int, ts: float) -> dict[str, object]:
        return {"type": "inventory", "sku": self.skus[action_id], "level": level, "ts": ts}


async def run(config: SimConfig, progress: bool = True) -> SimResult:
    """Play `config.decisions` visitors against the server at `config.base_url`."""
    env = environment(config.env, config.seed)
    shop = _shop(config, env)
    async with _client(config) as client:
        if config.setup_catalog:
            await _put_catalog(
                client,
                config.catalog,
                env,
                config.uniform,
                shop is not None,
                config.cap,
                config.exploration_floor,
                config.feature_store,
            )
        if shop is not None:
            await _stock_up(client, shop)
        store_ready_s = None
        if env.browsing is not None and config.feature_store:
            store_ready_s = await _wait_store(client, env)
        baseline = await _learned(client, config.catalog)
        started = time.perf_counter()
        tally = await _play(client, config, env, progress, shop)
        elapsed = time.perf_counter() - started
        target = baseline + tally.done - tally.nothing_eligible
        learned = await _wait_learned(client, config.catalog, target, env.reward_wait_seconds)
        synced = await _wait_stock(client, shop) if shop is not None else None
        if config.constrained:
            probes = await _probe_in_stock(client, config, env, shop)
            result = _result(config, env, tally, elapsed, probes.best, learned - baseline)
            return _constrained(result, config, env, tally, shop, probes, synced)
        if env.browsing is not None:
            seen = await _probe_intents(client, config, env)
            result = _result(config, env, tally, elapsed, seen.best, learned - baseline)
            return replace(
                _with_behaviour(result, config, tally, seen), store_ready_s=store_ready_s
            )
        plain = await _probe(client, config.catalog, env)
    return _result(config, env, tally, elapsed, plain, learned - baseline)


def plot(result: SimResult, path: pathlib.Path, title: str) -> pathlib.Path:
    """Save a PNG: CTR per window vs oracle and uniform, and best-action probabilities;
    under constraints, the best in-stock action and a third panel of removals by reason."""
    if result.constrained:
        figure = Figure(figsize=(16.0, 4.8), layout="constrained")
        FigureCanvasAgg(figure)
        ctr_axes, probe_axes, removed_axes = figure.subplots(1, 3, width_ratios=[2, 1.1, 1.4])
        _plot_ctr(ctr_axes, result)
        _plot_in_stock_probes(probe_axes, result)
        _plot_removals(removed_axes, result)
    else:
        figure = Figure(figsize=(11.0, 4.5), layout="constrained")
        FigureCanvasAgg(figure)
        ctr_axes, probe_axes = figure.subplots(1, 2, width_ratios=[2, 1])
        _plot_ctr(ctr_axes, result)
        _plot_probes(probe_axes, result)
        if result.feature_store is not None:
            _plot_freshness(ctr_axes, probe_axes, result)
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
        f"oracle {result.best_ctr:.3f}, uniform random {result.uniform_ctr:.3f}"
        + _expected_part(result),
        _lift_line(result.overall_ctr, last, result.best_ctr, result.uniform_ctr),
        _probe_line(result.best_action_probability, result.n_actions),
    ]
    if result.constrained:
        lines.extend(_constraint_lines(result))
    if result.feature_store is not None:
        lines.extend(_behaviour_lines(result))
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
        limits=httpx.Limits(
            max_connections=config.concurrency + 2, keepalive_expiry=KEEPALIVE_EXPIRY_S
        ),
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
    client: httpx.AsyncClient,
    catalog: str,
    env: Environment,
    uniform: bool = False,
    inventory: bool = False,
    cap: int | None = None,
    exploration_floor: float = 0.0,
    feature_store: bool = True,
) -> None:
    body = env.catalog_body(catalog, inventory=inventory, cap=cap)
    if not feature_store:
        body["features"] = []
    if uniform:
        learning = body["learning"]
        if isinstance(learning, dict):
            body["learning"] = {**learning, "policy": "uniform"}
    if exploration_floor > 0:
        constraints = body.get("constraints", {})
        if isinstance(constraints, dict):
            body["constraints"] = {**constraints, "exploration_floor": exploration_floor}
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
    client: httpx.AsyncClient,
    catalog: str,
    context: dict[str, object],
    user_id: str,
    session_id: str | None = None,
    debug: bool = False,
) -> dict[str, Any]:
    body: dict[str, object] = {"catalog": catalog, "context": context, "user_id": user_id}
    if session_id is not None:
        body["session_id"] = session_id
    if debug:
        body["debug"] = True
    return await _call(client, "POST", "/v1/decide", body)


async def _reward(client: httpx.AsyncClient, event_id: str, value: float) -> None:
    response = await _send(client, "POST", "/v1/rewards", {"event_id": event_id, "value": value})
    _raise_for_problem(response, "POST", "/v1/rewards")


async def _post_events(client: httpx.AsyncClient, events: Sequence[dict[str, object]]) -> None:
    body: object = events[0] if len(events) == 1 else {"events": list(events)}
    await _call(client, "POST", "/v1/events", body)


async def _server_level(client: httpx.AsyncClient, sku: str) -> float | None:
    """The stock level the server decides with; None while it knows none. Raises
    `PermissionError` when the key may not read inventory (a storefront key)."""
    path = _catalog_path("/v1/inventory", sku)
    response = await _send(client, "GET", path)
    if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise PermissionError(path)
    if response.status_code == httpx.codes.NOT_FOUND:
        return None
    _raise_for_problem(response, "GET", path)
    level = _json_object(response, "GET", path).get("level")
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise Unavailable(f"GET {path} answered level={level!r}, expected a number")
    return float(level)


def _chosen(decision: dict[str, Any], env: Environment) -> tuple[str, str] | None:
    """(event_id, chosen action id) of a decide response, checked against the env;
    None when the server answered that nothing was eligible ("chosen": null)."""
    chosen = decision.get("chosen")
    event_id = decision.get("event_id")
    if chosen is None and "reason" in decision:
        return None
    action = chosen.get("id") if isinstance(chosen, dict) else None
    if not isinstance(event_id, str) or not isinstance(action, str):
        raise Unavailable(f"POST /v1/decide answered without event_id or chosen.id: {decision}")
    if action not in env.action_ids:
        raise Unavailable(f"POST /v1/decide chose {action!r}, which is not in the catalog")
    return event_id, action


def _ranking_probability(decision: dict[str, Any], action_id: str) -> float:
    return _ranking(decision).get(action_id, 0.0)


def _ranking(decision: dict[str, Any]) -> dict[str, float]:
    """Action id -> probability over the eligible actions of a decide response."""
    ranking = decision.get("ranking")
    if not isinstance(ranking, list):
        raise Unavailable(f"POST /v1/decide answered without a ranking list: {decision}")
    return {
        str(entry["id"]): float(entry.get("probability", 0.0))
        for entry in ranking
        if isinstance(entry, dict) and "id" in entry
    }


def _removed(decision: dict[str, Any]) -> dict[str, int]:
    """The response's "removed" counts by reason (absent: nothing removed)."""
    removed = decision.get("removed")
    if not isinstance(removed, dict):
        return {}
    return {
        str(reason): int(n)
        for reason, n in removed.items()
        if isinstance(n, int) and not isinstance(n, bool) and n > 0
    }


def _eligible_ctr(
    decision: dict[str, Any], env: Environment, visitor: Visitor
) -> tuple[float, float]:
    """(best, mean) click probability of the visitor over the eligible actions."""
    ctrs = [env.click_probability(visitor, a) for a in _ranking(decision) if a in env.action_ids]
    if not ctrs:
        return math.nan, math.nan
    return max(ctrs), math.fsum(ctrs) / len(ctrs)


# --- playing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What every worker of one run shares."""

    client: httpx.AsyncClient
    catalog: str
    env: Environment
    tally: _Tally
    shop: _Shop | None = None
    users: int | None = None  # the pool of returning users, or fresh ids
    prefix: str = ""  # makes this run's returning users new to the server's caps and store
    dwell_s: float = 0.0


def _shop(config: SimConfig, env: Environment) -> _Shop | None:
    if config.stock is None:
        return None
    skus = {a: env.sku(config.catalog, a) for a in env.action_ids}
    return _Shop(skus, config.stock, config.restock_after)


async def _stock_up(client: httpx.AsyncClient, shop: _Shop) -> None:
    """Post every SKU's initial level and give the server a moment to see them."""
    events = [shop.event(a, level, shop.stamp(a)) for a, level in shop.levels.items()]
    await _post_events(client, events)
    await _wait_stock(client, shop)


async def _wait_stock(client: httpx.AsyncClient, shop: _Shop) -> bool:
    """Poll until the server decides with the shop's levels; False on timeout, or when
    the key may not read inventory (the run goes on: an unknown SKU counts as in stock)."""
    deadline = time.monotonic() + STOCK_SYNC_S
    pending = dict(shop.levels)
    try:
        while True:
            for action, level in list(pending.items()):
                if await _server_level(client, shop.skus[action]) == float(level):
                    del pending[action]
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL_S)
    except PermissionError:
        return False


async def _play(
    client: httpx.AsyncClient,
    config: SimConfig,
    env: Environment,
    progress: bool,
    shop: _Shop | None = None,
) -> _Tally:
    tally = _Tally(config.decisions)
    users = config.user_pool
    prefix = f"sim-{uuid.uuid4().hex[:8]}-" if users is not None else ""
    run = _Run(client, config.catalog, env, tally, shop, users, prefix, config.dwell_s)
    rngs = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence(config.seed).spawn(config.concurrency)
    ]
    shoppers = _shoppers(env, rngs, users, prefix)
    with tqdm(total=config.decisions, disable=not progress, unit="decision", desc=env.name) as bar:
        workers = [_worker(run, rng, bar, s) for rng, s in zip(rngs, shoppers, strict=True)]
        try:
            await _all_or_cancel(workers)
        finally:
            if shop is not None:
                await _finish_restocks(shop)
        bar.set_postfix(_postfix(run))
    return tally


def _shoppers(
    env: Environment, rngs: Sequence[np.random.Generator], users: int | None, prefix: str
) -> list[Shoppers | None]:
    """With browsing, one `Shoppers` per worker over its own share of the users."""
    if env.browsing is None or users is None:
        return [None] * len(rngs)
    ids = shopper_ids(users, prefix)
    return [Shoppers(env, ids[w :: len(rngs)], rng) for w, rng in enumerate(rngs)]


def _postfix(run: _Run) -> dict[str, str]:
    out = {"ctr": f"{run.tally.ctr():.3f}"}
    if run.env.browsing is not None:
        out["fresh"] = f"{run.tally.fresh / max(run.tally.done, 1):.0%}"
    if run.shop is not None:
        out["sold out"] = str(len(run.shop.skus) - len(run.shop.in_stock()))
    if run.shop is not None or run.users is not None:
        out["none eligible"] = str(run.tally.nothing_eligible)
    return out


async def _worker(
    run: _Run, rng: np.random.Generator, bar: tqdm[Any], shoppers: Shoppers | None = None
) -> None:
    tally = run.tally
    while (index := tally.claim()) is not None:
        outcome = await (_visit(run, rng, shoppers) if shoppers else _step(run, rng, index))
        tally.record(index, outcome)
        bar.update(1)
        if tally.done % POSTFIX_EVERY == 0:
            bar.set_postfix(_postfix(run), refresh=False)


async def _step(run: _Run, rng: np.random.Generator, index: int) -> _Outcome:
    env, client = run.env, run.client
    visitor = env.visitor(rng, run.users)
    if run.prefix:
        visitor = replace(visitor, user_id=run.prefix + visitor.user_id)
    started = time.perf_counter()
    decision = await _decide(client, run.catalog, visitor.context, visitor.user_id)
    run.tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
    chosen = _chosen(decision, env)
    removed = _removed(decision)
    if chosen is None:
        return replace(NOT_SHOWN, removed=removed)
    event_id, action = chosen
    p_click = env.click_probability(visitor, action)
    clicked = bool(rng.random() < p_click)
    if clicked:
        await _reward(client, event_id, 1.0)
        if run.shop is not None:
            await _purchase(run, run.shop, action, index)
    best, mean = _eligible_ctr(decision, env, visitor)
    return _Outcome(clicked, True, removed, best, mean, p_click)


async def _visit(run: _Run, rng: np.random.Generator, shoppers: Shoppers) -> _Outcome:
    """One visit with behaviour: its views, (a dwell), its decision, maybe a click."""
    env, client, tally = run.env, run.client, run.tally
    visitor = shoppers.visit(rng)
    started = time.perf_counter()
    await _post_events(client, visitor.behaviour)
    tally.event_latencies_ms.append((time.perf_counter() - started) * 1000.0)
    tally.events_posted += len(visitor.behaviour)
    if run.dwell_s > 0:
        await asyncio.sleep(run.dwell_s)
    started = time.perf_counter()
    decision = await _decide(
        client, run.catalog, visitor.context, visitor.user_id, visitor.session_id, debug=True
    )
    tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
    chosen = _chosen(decision, env)
    seen, joined = _seen(decision, visitor)
    if chosen is None:
        return replace(NOT_SHOWN, removed=_removed(decision), seen=seen, joined=joined)
    event_id, action = chosen
    p_click = env.click_probability(visitor, action)
    clicked = bool(rng.random() < p_click)
    if clicked:
        await _reward(client, event_id, 1.0)
    return _Outcome(clicked, p_click=p_click, seen=seen, joined=joined)


def _seen(decision: dict[str, Any], visitor: Visitor) -> tuple[str, bool]:
    """What of the visitor's behaviour the decision's features held (from `debug`):
    FRESH when the session's event count (the `depth` feature) includes this visit's
    views, STALE when it holds the session without them, else NO_SESSION; and whether
    any stored feature was joined at all."""
    features = decision.get("features")
    if not isinstance(features, dict):
        return NO_SESSION, False
    joined = "user_features" in features or "session_features" in features
    session = features.get("session_features")
    if not isinstance(session, dict) or not session:
        return NO_SESSION, joined
    depth = session.get("depth")
    if isinstance(depth, int | float) and depth >= visitor.session_events:
        return FRESH, joined
    return STALE, joined


async def _purchase(run: _Run, shop: _Shop, action: str, index: int) -> None:
    """A click buys one unit: post the new level; a sell-out may schedule a restock."""
    sold = shop.buy(action)
    if sold is None:
        return
    level, ts = sold
    if level == 0:
        shop.stock_outs.append((index + 1, action))
        if shop.restock_after is not None:
            task = asyncio.create_task(_restock_later(run, shop, action, shop.restock_after))
            shop.tasks.add(task)
            shop.waiting[task] = action
    await _post_events(run.client, [shop.event(action, level, ts)])


async def _restock_later(run: _Run, shop: _Shop, action: str, delay: float) -> None:
    task = asyncio.current_task()
    await asyncio.sleep(delay)
    if task is not None:
        shop.waiting.pop(task, None)  # from here on it runs to the end, even at the end
    level, ts = shop.restock(action)
    shop.restocks.append((run.tally.next_index, action))
    await _post_events(run.client, [shop.event(action, level, ts)])


async def _finish_restocks(shop: _Shop) -> None:
    """Cancel restocks still waiting when the run ends; await those already posting and
    raise the first failure among them."""
    for task in list(shop.waiting):
        task.cancel()
    shop.waiting.clear()
    results = await asyncio.gather(*shop.tasks, return_exceptions=True)
    shop.tasks.clear()
    for outcome in results:
        if isinstance(outcome, Exception):
            raise outcome


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
    """Poll until `learned >= target` or learning stops growing (a backlog still being
    learned keeps it waiting, up to a generous overall cap)."""
    now = time.monotonic()
    deadline, last_growth = now + wait_s + LEARN_CAP_S, now
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


@dataclass
class _IntentProbes:
    """What the learned model shows probe users right after views of one intent."""

    best: dict[str, float] = field(default_factory=dict)  # probability of the intent's best
    fresh: int = 0  # probes whose features held their views
    total: int = 0


async def _wait_store(client: httpx.AsyncClient, env: Environment) -> float | None:
    """Post one view for a fresh user and poll until the server's features show it: a
    stack that just started may take seconds for its first behaviour event, which is
    not the freshness the run measures. Seconds it took; None when the key may not read
    features (the run goes on) or after STORE_SYNC_S."""
    user = f"warmup-{uuid.uuid4().hex[:8]}"
    intent = env.segment_names[0]
    rng = np.random.default_rng(0)
    started = time.monotonic()
    await _post_events(client, env.views(rng, intent, user, "warmup", 1))
    path = f"{_catalog_path('/v1/users', user)}/features"
    while time.monotonic() - started < STORE_SYNC_S:
        response = await _send(client, "GET", path)
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            return None
        if response.status_code != httpx.codes.NOT_FOUND:
            _raise_for_problem(response, "GET", path)
            return time.monotonic() - started
        await asyncio.sleep(POLL_INTERVAL_S / 5)
    return None


async def _probe_intents(
    client: httpx.AsyncClient, config: SimConfig, env: Environment
) -> _IntentProbes:
    """Per intent, fresh probe users post PROBE_VIEWS views of it in a new session, then
    decide; with the store on, each waits (up to PROBE_SYNC_S) until its features hold
    its views, so the probes measure the model, not the replica's lag."""
    token = uuid.uuid4().hex[:8]
    rng = np.random.default_rng(config.seed)
    probes = [
        (intent, Visitor(intent, f"probe-{token}-{intent}-{i}", env.segment_context(intent)))
        for intent in env.segment_names
        for i in range(PROBES_PER_SEGMENT)
    ]
    events = [
        e
        for intent, v in probes
        for e in env.views(rng, intent, v.user_id, "probe", PROBE_VIEWS, DEVICES_PROBE)
    ]
    for start in range(0, len(events), PROBE_BATCH):
        await _post_events(client, events[start : start + PROBE_BATCH])
    deadline = time.monotonic() + (PROBE_SYNC_S if config.feature_store else 0.0)
    expected = [replace(v, session_id="probe", session_events=PROBE_VIEWS) for _, v in probes]
    answers = await asyncio.gather(*(_probe_once(client, config, v, deadline) for v in expected))
    out = _IntentProbes(total=len(probes))
    for intent in env.segment_names:
        best = env.best_action(intent)
        mine = [d for (i, _), d in zip(probes, answers, strict=True) if i == intent]
        out.best[intent] = float(np.mean([_ranking_probability(d, best) for d in mine]))
    out.fresh = sum(_seen(d, v)[0] == FRESH for v, d in zip(expected, answers, strict=True))
    return out


async def _probe_once(
    client: httpx.AsyncClient, config: SimConfig, visitor: Visitor, deadline: float
) -> dict[str, Any]:
    while True:
        decision = await _decide(
            client,
            config.catalog,
            visitor.context,
            visitor.user_id,
            visitor.session_id,
            debug=True,
        )
        if _seen(decision, visitor)[0] == FRESH or time.monotonic() >= deadline:
            return decision
        await asyncio.sleep(POLL_INTERVAL_S)


@dataclass
class _Probes:
    """What the learned policy shows each segment under the constraints at the end."""

    best: dict[str, float] = field(default_factory=dict)  # the unconstrained best action
    target: dict[str, str | None] = field(default_factory=dict)  # best action in stock
    target_probability: dict[str, float] = field(default_factory=dict)
    top: dict[str, str | None] = field(default_factory=dict)  # most probable in the probes
    nothing_eligible: int = 0
    saw_sold_out: set[str] = field(default_factory=set)


async def _probe_in_stock(
    client: httpx.AsyncClient, config: SimConfig, env: Environment, shop: _Shop | None
) -> _Probes:
    """Probe each segment with fresh user ids (no caps apply to them): the probability of
    the best action still in stock (the shop's ledger), and of the overall best."""
    available = shop.in_stock() if shop is not None else set(env.action_ids)
    token = uuid.uuid4().hex[:8]
    out = _Probes()
    for segment in env.segment_names:
        context = env.segment_context(segment)
        decisions = await asyncio.gather(
            *(
                _decide(client, config.catalog, context, f"probe-{token}-{segment}-{i}")
                for i in range(PROBES_PER_SEGMENT)
            )
        )
        target = env.best_available(segment, available)
        rankings = [_ranking(d) for d in decisions]
        out.nothing_eligible += sum(1 for d in decisions if d.get("chosen") is None)
        out.saw_sold_out.update(a for r in rankings for a in r if a not in available)
        mean = {a: float(np.mean([r.get(a, 0.0) for r in rankings])) for a in env.action_ids}
        out.best[segment] = mean[env.best_action(segment)]
        out.target[segment] = target
        out.target_probability[segment] = mean[target] if target is not None else 0.0
        top = max(mean, key=lambda a: mean[a])
        out.top[segment] = top if mean[top] > 0 else None
    return out


def _constrained(
    result: SimResult,
    config: SimConfig,
    env: Environment,
    tally: _Tally,
    shop: _Shop | None,
    probes: _Probes,
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


def _with_behaviour(
    result: SimResult, config: SimConfig, tally: _Tally, probes: _IntentProbes
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
    )


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


# --- presenting -------------------------------------------------------------------------


def _plot_ctr(axes: Axes, result: SimResult) -> None:
    xs = [n for n, _ in result.ctr_by_window]
    ys = [ctr for _, ctr in result.ctr_by_window]
    axes.plot(xs, ys, marker="o", markersize=3, label="Loopwise (CTR per window)")
    if result.expected_ctr_by_window:
        axes.plot(
            [n for n, _ in result.expected_ctr_by_window],
            [c for _, c in result.expected_ctr_by_window],
            color="tab:blue",
            linewidth=1.0,
            alpha=0.5,
            label="expected CTR of the banners shown",
        )
    axes.axhline(result.best_ctr, color="tab:green", linestyle="--", label="oracle (best)")
    axes.axhline(result.uniform_ctr, color="tab:red", linestyle=":", label="uniform random")
    if result.constrained:
        _plot_constrained_ctr(axes, result)
        if result.decisions > 0:
            axes.set_xlim(0, result.decisions * 1.02)
    extra = [c for _, c in result.eligible_best_by_window] if result.constrained else []
    top = max([result.best_ctr, result.uniform_ctr, *ys, *extra])
    axes.set_ylim(0.0, top * 1.2 if top > 0 else 1.0)
    axes.set_xlabel("decisions")
    axes.set_ylabel("click-through rate")
    axes.set_title("CTR over time")
    if result.constrained:  # below the axes: the lines and sell-out labels stay visible
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    else:
        axes.legend(loc="lower right")
    axes.grid(alpha=0.3)


def _plot_constrained_ctr(axes: Axes, result: SimResult) -> None:
    """The oracle among the eligible actions per window, and where banners sold out."""
    if result.eligible_best_by_window:
        xs = [n for n, _ in result.eligible_best_by_window]
        ys = [c for _, c in result.eligible_best_by_window]
        axes.plot(
            xs, ys, color="tab:green", linewidth=1.0, alpha=0.7, label="oracle among eligible"
        )
    outs = result.stock_outs
    for k, (at, action) in enumerate(outs):
        label = f"a banner sold out ({len(outs)}x)" if k == 0 else None
        axes.axvline(at, color="tab:gray", linewidth=0.8, alpha=0.6, label=label)
        if len(outs) <= MAX_LABELLED_STOCK_OUTS:
            axes.annotate(
                action,
                xy=(at, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10 - 10 * k),
                textcoords="offset points",
                fontsize=7,
                color="tab:gray",
            )


def _plot_in_stock_probes(axes: Axes, result: SimResult) -> None:
    names = list(result.best_in_stock_probability)
    values = [result.best_in_stock_probability[n] for n in names]
    targets = [result.best_in_stock_action.get(n) for n in names]
    colours = [
        "tab:orange" if t is not None and t != result.overall_best_action.get(n, t) else "tab:blue"
        for n, t in zip(names, targets, strict=True)
    ]
    bars = axes.bar(range(len(names)), values, color=colours)
    axes.bar_label(bars, fmt="%.2f")
    axes.set_xticks(
        range(len(names)),
        [f"{n}\n{t or 'all sold out'}" for n, t in zip(names, targets, strict=True)],
    )
    axes.tick_params(axis="x", labelsize=7)
    if result.n_in_stock > 0:
        axes.axhline(1.0 / result.n_in_stock, color="tab:red", linestyle=":", label="1/K in stock")
    elif names:
        axes.text(0.5, 0.5, "every banner sold out", ha="center", transform=axes.transAxes)
    if "tab:orange" in colours:
        axes.bar([0], [0], color="tab:orange", label="best sold out: next best")
    if names:
        axes.legend(loc="upper right", fontsize=7)
    axes.set_ylim(0.0, 1.15)
    axes.set_ylabel("probability of best in-stock action")
    axes.set_title("Learned policy per segment (in stock)")


def _plot_removals(axes: Axes, result: SimResult) -> None:
    """Actions removed per window by reason (stacked), and decisions with nothing eligible."""
    reasons = list(result.removed)
    xs = [n for n, _ in result.removed_by_window]
    starts = [0, *xs[:-1]][: len(xs)]
    widths = [(n - s) * 0.9 for n, s in zip(xs, starts, strict=True)]
    bottom = [0.0] * len(xs)
    for reason in reasons:
        heights = [float(counts.get(reason, 0)) for _, counts in result.removed_by_window]
        axes.bar(starts, heights, widths, bottom=bottom, align="edge", label=reason, alpha=0.8)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if result.nothing_by_window:
        ends = [n for n, _ in result.nothing_by_window]
        axes.plot(
            [(s + n) / 2 for s, n in zip([0, *ends[:-1]], ends, strict=True)],
            [c for _, c in result.nothing_by_window],
            color="black",
            marker="o",
            markersize=3,
            label="decisions with nothing eligible",
        )
    if not reasons and not result.nothing_by_window:
        axes.text(0.5, 0.5, "nothing removed", ha="center", va="center", transform=axes.transAxes)
    else:
        nothing = [c for _, c in result.nothing_by_window]
        top = max([*bottom, *nothing, 1.0])
        axes.set_ylim(0.0, top * 1.35)  # room for the legend above the bars
        axes.legend(loc="upper left", fontsize=7)
    axes.set_xlabel("decisions")
    axes.set_ylabel("count per window")
    axes.set_title("Removed by constraints")
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


def _plot_freshness(ctr_axes: Axes, probe_axes: Axes, result: SimResult) -> None:
    """The share of decisions that saw their visit's own views, per window (right axis)."""
    probe_axes.set_ylabel(f"p(intent's best banner) after {PROBE_VIEWS} views")
    probe_axes.set_title("Learned policy per intent")
    if not result.feature_store or not result.fresh_by_window:
        return
    share = ctr_axes.twinx()
    share.plot(
        [n for n, _ in result.fresh_by_window],
        [f for _, f in result.fresh_by_window],
        color="tab:gray",
        linestyle="--",
        linewidth=1.0,
        label="decisions that saw their own views (right axis)",
    )
    share.set_ylim(0.0, 1.05)
    share.set_ylabel("share of decisions", color="tab:gray")
    share.legend(loc="upper left", fontsize=8)


def _behaviour_lines(result: SimResult) -> list[str]:
    decisions = max(result.decisions, 1)
    store = "on (the catalog's features)" if result.feature_store else 'off ("features": [])'
    lines = [
        f"feature store {store}; {result.users} returning users; {result.events_posted} "
        f"behaviour events posted (p50 {result.event_latency_ms_p50:.1f} ms, p99 "
        f"{result.event_latency_ms_p99:.1f} ms); decisions {result.dwell_s:g} s after the views",
        f"decisions whose features held the visit's own views: {result.fresh} "
        f"({result.fresh / decisions:.0%}); only the session's earlier views: {result.stale} "
        f"({result.stale / decisions:.0%}); nothing of the session: {result.no_session} "
        f"({result.no_session / decisions:.0%}); any stored feature: {result.joined}",
    ]
    if result.store_ready_s is not None:
        lines.append(f"a first view reached the server in {result.store_ready_s:.1f} s")
    if result.probes:
        lines.append(f"probes that saw their own views: {result.probe_fresh} of {result.probes}")
    return lines


def _expected_part(result: SimResult) -> str:
    if result.expected_ctr is None or not result.expected_ctr_by_window:
        return ""
    last = result.expected_ctr_by_window[-1][1]
    return f"; expected CTR (click model) {result.expected_ctr:.3f}, {last:.3f} in the last window"


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


def _constraint_lines(result: SimResult) -> list[str]:
    decisions = result.decisions
    shown = result.shown if result.shown is not None else decisions
    share = result.nothing_eligible / decisions if decisions else 0.0
    removed = ", ".join(f"{reason} {n}" for reason, n in result.removed.items()) or "none"
    caps = sum(n for reason, n in result.removed.items() if reason.startswith("cap:"))
    lines = [
        "constraints: " + constraint_setup(result),
        f"nothing eligible (chosen: null): {result.nothing_eligible} of {decisions} "
        f"decisions ({share:.1%}); {shown} showed a banner",
        f"removed by reason (actions, summed over responses): {removed}; "
        f"cap removals {caps}, inventory removals {result.removed.get('inventory', 0)}",
    ]
    if result.stock is not None:
        lines.append(_stock_line(result))
    best, uniform = result.eligible_best_ctr, result.eligible_uniform_ctr
    if best is not None and uniform is not None:
        last = result.ctr_by_window[-1][1] if result.ctr_by_window else result.overall_ctr
        last_best = (
            result.eligible_best_by_window[-1][1] if result.eligible_best_by_window else best
        )
        gap = best - uniform
        lift = f"{(result.overall_ctr - uniform) / gap:.0%}" if gap > 0 else "undefined"
        lines.append(
            f"CTR per banner shown {result.overall_ctr:.3f} (last window {last:.3f}); oracle "
            f"among the eligible actions {best:.3f} (last window {last_best:.3f}), uniform "
            f"among them {uniform:.3f}; lift captured over that uniform: {lift}"
        )
    lines.append(_in_stock_probe_line(result))
    return lines


def constraint_setup(result: SimResult) -> str:
    """The constraints of a run in words, e.g. "stock 150 per banner (no restock), ..."."""
    parts = []
    if result.stock is not None:
        restock = (
            f"restocked {result.restock_after:g} s after selling out"
            if result.restock_after is not None
            else "no restock"
        )
        parts.append(f"stock {result.stock} per banner ({restock})")
    if result.cap is not None:
        parts.append(f"cap {result.cap} per banner per user per {CAP_WINDOW_SECONDS / 3600:g} h")
    if result.users is not None:
        parts.append(f"{result.users} returning users")
    return ", ".join(parts)


def _stock_line(result: SimResult) -> str:
    outs = ", ".join(f"{action} at decision {at}" for at, action in result.stock_outs)
    line = (
        f"stock-outs: {len(result.stock_outs)} ({outs or 'none'}); "
        f"{result.purchases} purchases; restocks {len(result.restocks)}; "
        f"sold out at the end: {', '.join(result.sold_out_at_end) or 'none'}"
    )
    if result.oversold:
        line += f"; {result.oversold} clicks on banners already sold out (inventory lag)"
    if result.stock_synced is False:
        line += "; the server did not confirm the final stock levels"
    return line


def _in_stock_probe_line(result: SimResult) -> str:
    uniform = f"{1.0 / result.n_in_stock:.3f}" if result.n_in_stock > 0 else "n/a"
    parts = []
    for segment, p in result.best_in_stock_probability.items():
        target = result.best_in_stock_action.get(segment)
        top = result.probe_top_action.get(segment)
        if target is None:
            parts.append(f"{segment}: nothing in stock")
            continue
        mark = "top" if top == target else f"top is {top}"
        best = result.overall_best_action.get(segment, target)
        note = "" if best == target else f", {best} sold out"
        parts.append(f"{segment}->{target} {p:.2f} ({mark}{note})")
    line = f"best in-stock action probability (1/K in stock = {uniform}): "
    line += ", ".join(parts) or "not probed"
    if result.probe_nothing_eligible:
        line += f"; {result.probe_nothing_eligible} probes had nothing eligible"
    if result.probe_saw_sold_out:
        line += f"; probes were offered sold-out {', '.join(result.probe_saw_sold_out)}"
    return line


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1, got {value!r}", field=name)
