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
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from sim import answers, server
from sim.config import SimConfig
from sim.environments import environment
from sim.probes import probe, probe_in_stock, probe_intents
from sim.results import SimResult, base_result, behaviour_result, constrained_result
from sim.server import POLL_INTERVAL_S
from sim.shop import Shop, stock_up, wait_stock
from sim.shoppers import Shoppers, shopper_ids
from sim.storefront import Environment
from sim.tally import NOT_SHOWN, Outcome, Tally

LEARN_CAP_S = 120.0  # the longest the learned count may keep catching up
# How long the learned count may stand still (beyond the reward wait) before the wait
# gives up: generous, since a loaded machine can hold the last examples back for seconds
# (a CI run stopped 1 of 8,000 short at 2 s), and giving up early reads as a lost reward.
STALL_S = 10.0
POSTFIX_EVERY = 25
STORE_SYNC_S = 60.0  # how long a run waits for the feature store to show a first view


async def run(config: SimConfig, progress: bool = True) -> SimResult:
    """Play `config.decisions` visitors against the server at `config.base_url`."""
    env = environment(config.env, config.seed)
    if config.exploration is not None:  # the server validates the name
        env = replace(env, exploration=config.exploration, exploration_parameters=())
    shop = _shop(config, env)
    async with server.connect(config) as client:
        if config.setup_catalog:
            await server.put_catalog(
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
            await stock_up(client, shop)
        store_ready_s = None
        if env.browsing is not None and config.feature_store:
            store_ready_s = await _wait_store(client, env)
        baseline = await server.learned(client, config.catalog)
        started = time.perf_counter()
        tally = await _play(client, config, env, progress, shop)
        elapsed = time.perf_counter() - started
        target = baseline + tally.done - tally.nothing_eligible
        learned = await wait_learned(client, config.catalog, target, env.reward_wait_seconds)
        synced = await wait_stock(client, shop) if shop is not None else None
        if config.constrained:
            probes = await probe_in_stock(client, config, env, shop)
            result = base_result(config, env, tally, elapsed, probes.best, learned - baseline)
            return constrained_result(result, config, env, tally, shop, probes, synced)
        if env.browsing is not None:
            seen = await probe_intents(client, config, env)
            result = base_result(config, env, tally, elapsed, seen.best, learned - baseline)
            return replace(
                behaviour_result(result, config, tally, seen), store_ready_s=store_ready_s
            )
        plain = await probe(client, config.catalog, env)
    return base_result(config, env, tally, elapsed, plain, learned - baseline)


@dataclass(frozen=True)
class _Run:
    """What every worker of one run shares."""

    client: httpx.AsyncClient
    catalog: str
    env: Environment
    tally: Tally
    shop: Shop | None = None
    users: int | None = None  # the pool of returning users, or fresh ids
    prefix: str = ""  # makes this run's returning users new to the server's caps and store
    dwell_s: float = 0.0


def _shop(config: SimConfig, env: Environment) -> Shop | None:
    if config.stock is None:
        return None
    skus = {a: env.sku(config.catalog, a) for a in env.action_ids}
    return Shop(skus, config.stock, config.restock_after)


async def _play(
    client: httpx.AsyncClient,
    config: SimConfig,
    env: Environment,
    progress: bool,
    shop: Shop | None = None,
) -> Tally:
    tally = Tally(config.decisions)
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
            await all_or_cancel(workers)
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


async def _step(run: _Run, rng: np.random.Generator, index: int) -> Outcome:
    env, client = run.env, run.client
    visitor = env.visitor(rng, run.users)
    if run.prefix:
        visitor = replace(visitor, user_id=run.prefix + visitor.user_id)
    started = time.perf_counter()
    decision = await server.decide(client, run.catalog, visitor.context, visitor.user_id)
    run.tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
    chosen = answers.chosen(decision, env)
    removed = answers.removed(decision)
    if chosen is None:
        return replace(NOT_SHOWN, removed=removed)
    event_id, action = chosen
    p_click = env.click_probability(visitor, action)
    clicked = bool(rng.random() < p_click)
    if clicked:
        await server.reward(client, event_id, 1.0)
        if run.shop is not None:
            await _purchase(run, run.shop, action, index)
    best, mean = answers.eligible_ctr(decision, env, visitor)
    served_best = action == env.best_action(visitor.segment)
    return Outcome(
        clicked,
        True,
        removed,
        best,
        mean,
        p_click,
        segment=visitor.segment,
        served_best=served_best,
    )


async def _visit(run: _Run, rng: np.random.Generator, shoppers: Shoppers) -> Outcome:
    """One visit with behaviour: its views, (a dwell), its decision, maybe a click."""
    env, client, tally = run.env, run.client, run.tally
    visitor = shoppers.visit(rng)
    started = time.perf_counter()
    await server.post_events(client, visitor.behaviour)
    tally.event_latencies_ms.append((time.perf_counter() - started) * 1000.0)
    tally.events_posted += len(visitor.behaviour)
    if run.dwell_s > 0:
        await asyncio.sleep(run.dwell_s)
    started = time.perf_counter()
    decision = await server.decide(
        client, run.catalog, visitor.context, visitor.user_id, visitor.session_id, debug=True
    )
    tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
    chosen = answers.chosen(decision, env)
    seen, joined = answers.seen(decision, visitor)
    if chosen is None:
        return replace(NOT_SHOWN, removed=answers.removed(decision), seen=seen, joined=joined)
    event_id, action = chosen
    p_click = env.click_probability(visitor, action)
    clicked = bool(rng.random() < p_click)
    if clicked:
        await server.reward(client, event_id, 1.0)
    served_best = action == env.best_action(visitor.segment)
    return Outcome(
        clicked,
        p_click=p_click,
        seen=seen,
        joined=joined,
        segment=visitor.segment,
        served_best=served_best,
    )


async def _purchase(run: _Run, shop: Shop, action: str, index: int) -> None:
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
    await server.post_events(run.client, [shop.event(action, level, ts)])


async def _restock_later(run: _Run, shop: Shop, action: str, delay: float) -> None:
    task = asyncio.current_task()
    await asyncio.sleep(delay)
    if task is not None:
        shop.waiting.pop(task, None)  # from here on it runs to the end, even at the end
    level, ts = shop.restock(action)
    shop.restocks.append((run.tally.next_index, action))
    await server.post_events(run.client, [shop.event(action, level, ts)])


async def _finish_restocks(shop: Shop) -> None:
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


async def all_or_cancel(coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run all; on the first failure cancel the rest and raise that failure itself."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def wait_learned(client: httpx.AsyncClient, catalog: str, target: int, wait_s: float) -> int:
    """Poll until `learned >= target` or learning stops growing (a backlog still being
    learned keeps it waiting, up to a generous overall cap)."""
    now = time.monotonic()
    deadline, last_growth = now + wait_s + LEARN_CAP_S, now
    learned = await server.learned(client, catalog)
    while learned < target and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        current = await server.learned(client, catalog)
        if current > learned:
            learned, last_growth = current, time.monotonic()
        elif time.monotonic() - last_growth > wait_s + STALL_S:
            break
    return learned


async def _wait_store(client: httpx.AsyncClient, env: Environment) -> float | None:
    """Post one view for a fresh user and poll until the server's features show it: a
    stack that just started may take seconds for its first behaviour event, which is
    not the freshness the run measures. Seconds it took; None when the key may not read
    features (the run goes on) or after STORE_SYNC_S."""
    user = f"warmup-{uuid.uuid4().hex[:8]}"
    intent = env.segment_names[0]
    rng = np.random.default_rng(0)
    started = time.monotonic()
    await server.post_events(client, env.views(rng, intent, user, "warmup", 1))
    path = f"{server.catalog_path('/v1/users', user)}/features"
    while time.monotonic() - started < STORE_SYNC_S:
        response = await server.send(client, "GET", path)
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            return None
        if response.status_code != httpx.codes.NOT_FOUND:
            server.raise_for_problem(response, "GET", path)
            return time.monotonic() - started
        await asyncio.sleep(POLL_INTERVAL_S / 5)
    return None
