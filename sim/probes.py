"""What the learned model shows once a run is over: probe decisions per segment.

Probes use fresh user ids, so no cap applies to them and no earlier visit is in their
features. `probe` asks for each segment's best action; `probe_in_stock` for the best one
still in the shop's stock; `probe_intents` first posts views of one intent for each probe
user, then decides.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

from sim import server
from sim.answers import FRESH, ranking, ranking_probability, seen
from sim.config import SimConfig
from sim.server import POLL_INTERVAL_S
from sim.shop import Shop
from sim.storefront import Environment, Visitor

PROBES_PER_SEGMENT = 20
PROBE_SYNC_S = 10.0  # how long the probes wait for the server to see their views
PROBE_VIEWS = 2  # product views of its intent each probe user posts
PROBE_BATCH = 500  # behaviour events per POST (the server's default batch limit: 1,000)
DEVICES_PROBE = "mobile"


async def probe(client: httpx.AsyncClient, catalog: str, env: Environment) -> dict[str, float]:
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
            server.decide(client, catalog, context, f"probe-{segment}-{i}")
            for i in range(PROBES_PER_SEGMENT)
        )
    )
    return float(np.mean([ranking_probability(d, best) for d in decisions]))


@dataclass
class IntentProbes:
    """What the learned model shows probe users right after views of one intent."""

    best: dict[str, float] = field(default_factory=dict)  # probability of the intent's best
    fresh: int = 0  # probes whose features held their views
    total: int = 0


async def probe_intents(
    client: httpx.AsyncClient, config: SimConfig, env: Environment
) -> IntentProbes:
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
        await server.post_events(client, events[start : start + PROBE_BATCH])
    deadline = time.monotonic() + (PROBE_SYNC_S if config.feature_store else 0.0)
    expected = [replace(v, session_id="probe", session_events=PROBE_VIEWS) for _, v in probes]
    answers = await asyncio.gather(*(_probe_once(client, config, v, deadline) for v in expected))
    out = IntentProbes(total=len(probes))
    for intent in env.segment_names:
        best = env.best_action(intent)
        mine = [d for (i, _), d in zip(probes, answers, strict=True) if i == intent]
        out.best[intent] = float(np.mean([ranking_probability(d, best) for d in mine]))
    out.fresh = sum(seen(d, v)[0] == FRESH for v, d in zip(expected, answers, strict=True))
    return out


async def _probe_once(
    client: httpx.AsyncClient, config: SimConfig, visitor: Visitor, deadline: float
) -> dict[str, Any]:
    while True:
        decision = await server.decide(
            client,
            config.catalog,
            visitor.context,
            visitor.user_id,
            visitor.session_id,
            debug=True,
        )
        if seen(decision, visitor)[0] == FRESH or time.monotonic() >= deadline:
            return decision
        await asyncio.sleep(POLL_INTERVAL_S)


@dataclass
class Probes:
    """What the learned policy shows each segment under the constraints at the end."""

    best: dict[str, float] = field(default_factory=dict)  # the unconstrained best action
    target: dict[str, str | None] = field(default_factory=dict)  # best action in stock
    target_probability: dict[str, float] = field(default_factory=dict)
    top: dict[str, str | None] = field(default_factory=dict)  # most probable in the probes
    nothing_eligible: int = 0
    saw_sold_out: set[str] = field(default_factory=set)


async def probe_in_stock(
    client: httpx.AsyncClient, config: SimConfig, env: Environment, shop: Shop | None
) -> Probes:
    """Probe each segment with fresh user ids (no caps apply to them): the probability of
    the best action still in stock (the shop's ledger), and of the overall best."""
    available = shop.in_stock() if shop is not None else set(env.action_ids)
    token = uuid.uuid4().hex[:8]
    out = Probes()
    for segment in env.segment_names:
        context = env.segment_context(segment)
        decisions = await asyncio.gather(
            *(
                server.decide(client, config.catalog, context, f"probe-{token}-{segment}-{i}")
                for i in range(PROBES_PER_SEGMENT)
            )
        )
        target = env.best_available(segment, available)
        rankings = [ranking(d) for d in decisions]
        out.nothing_eligible += sum(1 for d in decisions if d.get("chosen") is None)
        out.saw_sold_out.update(a for r in rankings for a in r if a not in available)
        mean = {a: float(np.mean([r.get(a, 0.0) for r in rankings])) for a in env.action_ids}
        out.best[segment] = mean[env.best_action(segment)]
        out.target[segment] = target
        out.target_probability[segment] = mean[target] if target is not None else 0.0
        top = max(mean, key=lambda a: mean[a])
        out.top[segment] = top if mean[top] > 0 else None
    return out
