"""Inline actions and deferred activation through the real parts: Tansu, the Faust worker,
the API, VW, RocksDB. A storefront whose every request sends its own subset of the
actions learns which one pays; the training log replays into the very model the API
serves; a deferred decision is learned once if activated and never if not."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from api.serving.catalogs import CatalogStore
from api.serving.replica import ModelReplica
from engine import checkpoint
from engine.features import Features
from engine.inline import rebuilt
from engine.records import ActionUsed, TrainingExample, decode
from policies.registry import build
from streams.kv import KV
from streams.settings import Settings
from tests.conftest import Stack, read_topic, wait_until

pytestmark = pytest.mark.integration

CATALOG = {"actions": [], "learning": {"reward_wait_seconds": 1.0}}  # every request sends its own
COLOURS = ["red", "blue", "green", "gray"]
ITEMS: list[dict[str, Any]] = [
    {
        "id": f"item-{k}",
        "features": {"item": {"colour": COLOURS[k % 4], "size": "SML"[k % 3]}},
        "metadata": {"sku": f"SKU-{k}"},
    }
    for k in range(8)
]
BEST = {"a": "item-1", "b": "item-6"}  # the one each segment clicks, when it is offered


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("inline"), LOOPWISE_RETENTION_SECONDS="2")
    s.start()
    assert s.http.put("/v1/catalogs/inline", json=CATALOG).status_code == 201
    yield s
    s.stop()


def play(stack: Stack, n: int, rng: random.Random) -> list[bool]:
    """`n` visits, each offering 4 of the 8 actions; whether the segment's best was
    chosen, for the visits that offered it."""
    hits = []
    for i in range(n):
        segment = "ab"[i % 2]
        offered = rng.sample(ITEMS, 4)
        d = stack.decide("inline", context={"user": {"segment": segment}}, actions=offered)
        chosen = d["chosen"]["id"]  # type: ignore[index]
        if chosen == BEST[segment]:
            r = stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1.0})
            assert r.status_code == 202 and r.json()["status"] == "accepted"
        if any(a["id"] == BEST[segment] for a in offered):
            hits.append(chosen == BEST[segment])
    return hits


def test_requests_with_their_own_actions_learn_and_the_log_replays_into_the_same_model(
    stack: Stack, tmp_path: Path
) -> None:
    rng = random.Random(16)
    first = play(stack, 200, rng)
    wait_until(lambda: stack.learned("inline") >= 200, 30, "the first round learned")
    second = play(stack, 100, rng)
    rate = sum(second) / len(second)
    assert rate >= 0.75, (sum(first) / len(first), rate)  # chance: 1 in 4
    wait_until(lambda: stack.learned("inline") >= 300, 30, "the second round learned")
    deferred(stack)
    learned = stack.learned("inline")
    stack.stop()  # the API saves its model as it stops
    _, blobs = checkpoint.decode((stack.data / "api" / "model.ckpt").read_bytes())
    records = asyncio.run(read_topic(stack.broker, f"t{stack.port}-training", 20.0))
    examples = [m for _, raw in records if isinstance(m := decode(raw), TrainingExample)]
    settings = Settings(data_dir=tmp_path, broker="127.0.0.1:1")
    catalogs = CatalogStore(KV(tmp_path / "catalogs"), settings.limits)
    catalogs.put("inline", CATALOG, 0.0)
    replica = ModelReplica(settings, catalogs)
    try:
        replayed = sum(replica.learn(ex) for ex in examples if ex.catalog == "inline")
        catalog = catalogs.latest("inline")
        model = replica.policy(catalog).policy
        assert replayed == learned == model.learned
        # the same weights: every estimate alike, to the bit (VW's saved bytes differ
        # in the statistics its predictions keep, which the served model made)
        served = build(catalog.learning, blobs["inline"], learned)
        for segment, k in itertools.product("ab", range(10)):
            context: Features = {"user": {"segment": segment}}
            offered = rebuilt([ActionUsed(a["id"], a["features"], {}) for a in ITEMS])
            subset = rng.sample(list(offered.values()), 4)
            ours, theirs = model.ranked(context, subset), served.ranked(context, subset)
            assert all(np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True)), k
        served.close()
    finally:
        replica.close()


def deferred(stack: Stack) -> None:
    """Rewards for a deferred decision are held; it is learned once if activated within
    its window, never if not; activating a slate learns every slot."""
    before = stack.learned("inline")
    context = {"user": {"segment": "a"}}
    body = {"context": context, "actions": ITEMS[:4], "defer_activation": True}
    never = stack.decide("inline", **body)
    shown = stack.decide("inline", **body)
    slate = stack.decide("inline", **body, slots=2)
    assert never["deferred"] is True
    for d in (never, shown):
        reward = stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1.0})
        assert reward.json()["status"] == "accepted"  # held by the join until activated
    for d in (shown, slate, shown):  # the second activation changes nothing
        r = stack.http.post(f"/v1/events/{d['event_id']}/activate")
        assert r.status_code == 202 and r.json()["status"] == "activated", r.text
    unknown = stack.http.post("/v1/events/never-decided/activate")
    assert unknown.status_code == 404 and unknown.json()["field"] == "event_id"
    slots = [s["event_id"] for s in cast(list[dict[str, str]], slate["slots"])]
    for eid in [shown["event_id"], *slots]:
        wait_until(lambda e=eid: stack.http.get(f"/v1/events/{e}").json()["learned"], 15, f"{eid}")

    def unactivated() -> int:
        for line in stack.http.get("/metrics").text.splitlines():
            if line.startswith("loopwise_join_unactivated_total "):
                return int(float(line.split()[1]))
        return 0

    wait_until(lambda: unactivated() >= 1, 15, "the unactivated decision counted")
    assert not stack.http.get(f"/v1/events/{never['event_id']}").json()["learned"]
    assert stack.learned("inline") == before + 3, "the activated one and both slots, once"
