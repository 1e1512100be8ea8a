"""The closed loop through the real parts: Tansu, the Faust worker, the API, VW, RocksDB.

The worker and the API run as child processes, as in production; the test speaks HTTP.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import Stack, trace_events, wait_until

pytestmark = pytest.mark.integration

CATALOG = {
    "actions": [
        {"id": "red", "features": {"banner": {"colour": "red"}}},
        {"id": "blue", "features": {"banner": {"colour": "blue"}}},
        {"id": "green", "features": {"banner": {"colour": "green"}}},
    ],
    "learning": {
        "exploration": {"algorithm": "squarecb"},
        # One reward must visibly move the next decision's probability: squarecb's pmf
        # follows the estimates (RegCB's, the default, is one-hot), and VW's adaptive SGD
        # moves on every example, where coin betting bets on a feature only from its second
        # one (docs/decisions/coin-betting.md).
        "optimizer": "adaptive",
        "reward_wait_seconds": 1.0,
        "default_reward": 0.0,
        "aggregation": "earliest",
    },
}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("stack")
    s = Stack(broker, data, LOOPWISE_RETENTION_SECONDS="2", LOOPWISE_CHECKPOINT_SECONDS="0.5")
    s.start()
    assert s.http.put("/v1/catalogs/colours", json=CATALOG).status_code == 201
    yield s
    s.stop()


def test_a_reward_is_learned_once_and_moves_the_next_decisions(stack: Stack) -> None:
    before = stack.learned("colours")
    first = stack.decide("colours", context={"user": {"segment": "a"}})
    probs_before = {r["id"]: r["probability"] for r in first["ranking"]}  # type: ignore[union-attr]
    chosen = first["chosen"]["id"]  # type: ignore[index]
    r = stack.http.post(
        "/v1/rewards", json={"event_id": first["event_id"], "value": 1.0, "reward_id": "r-1"}
    )
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    # the same reward again (a client retry): accepted, joined once
    assert (
        stack.http.post(
            "/v1/rewards", json={"event_id": first["event_id"], "value": 1.0, "reward_id": "r-1"}
        ).status_code
        == 202
    )
    wait_until(
        lambda: stack.http.get(f"/v1/events/{first['event_id']}").json()["learned"],
        15,
        "the reward to be learned",
    )
    assert stack.learned("colours") == before + 1
    again = stack.decide("colours", context={"user": {"segment": "a"}})
    probs_after = {r["id"]: r["probability"] for r in again["ranking"]}  # type: ignore[union-attr]
    assert probs_after[chosen] > probs_before[chosen], "the rewarded action gained probability"
    assert again["model_version"] != first["model_version"]


def test_a_reward_for_an_id_never_decided_is_a_404_once_the_log_is_followed(
    stack: Stack,
) -> None:
    """Needs the decisions log followed live (the broker). The other bad-input cases need
    no broker: they are in the in-process route tests (test_decide_route.py,
    test_rewards_route.py, test_catalogs_route.py, test_events_route.py)."""
    body = b'{"event_id": "never-decided", "value": 1}'
    r = stack.http.post("/v1/rewards", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 404 and problem.get("field") == "event_id" and problem["detail"]


def test_the_default_learner_serves_each_segment_its_best_action_through_the_stack(
    stack: Stack,
) -> None:
    """A catalog on the defaults (optimistic RegCB), learning only from rewards posted over
    HTTP and joined by the worker: each of two segments has its own paying banner. After
    a first round is learned, the second round serves each segment its banner."""
    body = {
        "actions": [
            {"id": c, "features": {"banner": {"colour": c}}} for c in ("red", "blue", "gray")
        ],
        "learning": {"reward_wait_seconds": 1.0},
    }
    assert stack.http.put("/v1/catalogs/learner", json=body).status_code == 201
    best = {"a": "red", "b": "blue"}

    def play(n: int) -> list[bool]:
        hits = []
        for i in range(n):
            segment = "ab"[i % 2]
            d = stack.decide("learner", context={"user": {"segment": segment}})
            chosen = d["chosen"]["id"]  # type: ignore[index]
            reward = float(chosen == best[segment])
            if reward:
                stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": reward})
            hits.append(bool(reward))
        return hits

    assert stack.decide("learner")["policy"] == "vw:regcbopt"
    first = play(60)
    wait_until(lambda: stack.learned("learner") > len(first), 30, "the first round learned")
    second = play(60)
    assert sum(second) >= 54, (sum(first), sum(second))  # 1/3 by chance; RegCB is greedy
    assert stack.http.delete("/v1/catalogs/learner").status_code == 204


def test_crashes_of_worker_and_api_lose_and_double_count_nothing(stack: Stack) -> None:
    """Every decision is learned exactly once (reward or default) across SIGKILLs."""
    catalog = "crashes"
    assert stack.http.put(f"/v1/catalogs/{catalog}", json=CATALOG).status_code == 201
    decided: list[str] = []

    def burst(n: int) -> None:
        for i in range(n):
            d = stack.decide(catalog, context={"i": i % 7})
            decided.append(str(d["event_id"]))
            if i % 3 == 0:
                r = stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1.0})
                assert r.status_code == 202

    burst(150)
    stack.worker.stop(signal.SIGKILL)
    burst(150)  # the API keeps deciding while the worker is down
    stack.worker.start()
    burst(150)
    stack.api.stop(signal.SIGKILL)  # the outbox and the checkpoint are all that survive
    stack.api.start()
    stack.wait_ready()
    burst(150)
    try:
        wait_until(lambda: stack.learned(catalog) >= len(decided), 60, "all to be learned")
    except AssertionError as exc:
        model = stack.http.get(f"/v1/models/{catalog}").json()
        joined = (stack.data / "worker-stats.json").read_text()
        lost = [e for e in decided if not stack.http.get(f"/v1/events/{e}").json()["learned"]]
        raise AssertionError(
            f"{exc}: {len(decided)} decided, model {model}, join {joined}\n"
            f"not learned, decision number and trace:\n"
            f"{[decided.index(e) for e in lost]}\n{trace_events(stack, lost)}\n"
            f"worker log:\n{stack.worker.tail(30)}"
        ) from None
    time.sleep(3.0)  # quiet period: nothing more may arrive (no double learning from replays)
    info = stack.http.get(f"/v1/models/{catalog}").json()
    assert info["learned"] == len(decided) == 600, info
    events = [stack.http.get(f"/v1/events/{e}").json()["learned"] for e in decided[-50:]]
    assert all(events)


def test_a_worker_that_lost_its_disk_rebuilds_every_open_window_from_the_changelog(
    stack: Stack,
) -> None:
    """The join table of a worker whose local RocksDB is gone (a new host, a lost disk)
    comes back from its changelog alone, to the last entry: Tansu reports end offsets
    short of its log, and a recovery that trusted them dropped the newest windows."""
    catalog = "lost-disk"
    body = {**CATALOG, "learning": {**CATALOG["learning"], "reward_wait_seconds": 15.0}}
    assert stack.http.put(f"/v1/catalogs/{catalog}", json=body).status_code == 201
    stats = stack.data / "worker-stats.json"
    stack.wait_worker(0)

    def joined() -> int:
        return int(json.loads(stats.read_text())["counts"].get("decisions", 0))

    before = joined()
    decided = []
    for i in range(240):
        d = stack.decide(catalog, context={"i": i % 5})
        decided.append(str(d["event_id"]))
        if i % 3 == 0:
            reward = {"event_id": d["event_id"], "value": 1.0}
            assert stack.http.post("/v1/rewards", json=reward).status_code == 202
    wait_until(lambda: joined() >= before + len(decided), 30, "the worker to join them all")
    assert stack.learned(catalog) == 0, "the windows must still be open"
    stack.worker.stop(signal.SIGKILL)
    shutil.rmtree(stack.data / "worker")
    since = time.time()
    stack.worker.start()
    stack.wait_worker(since)
    try:
        wait_until(lambda: stack.learned(catalog) >= len(decided), 40, "all to be learned")
    except AssertionError as exc:
        lost = [e for e in decided if not stack.http.get(f"/v1/events/{e}").json()["learned"]]
        raise AssertionError(
            f"{exc}: {len(lost)} of {len(decided)} never learned, numbers "
            f"{[decided.index(e) for e in lost]}\nworker log:\n{stack.worker.tail(30)}"
        ) from None
    model = stack.http.get(f"/v1/models/{catalog}").json()
    assert model["learned"] == len(decided), model

    def emitted() -> tuple[object, object]:  # the new worker's counts: it emitted them all
        counts = json.loads(stats.read_text())["counts"]
        return counts.get("emitted_reward"), counts.get("emitted_default")

    wait_until(lambda: emitted() == (80, 160), 10, "80 rewarded and 160 default examples")


def test_poisoned_messages_are_skipped_and_counted_not_fatal(stack: Stack) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    prefix = f"t{stack.port}"
    poison = [
        b"",
        b"\x00\xff",
        b"{}",
        b'{"type": "decision"}',
        b'{"type": "reward", "x": 1}',
        b"[" * 10_000,
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.broker)
        await producer.start()
        try:
            for topic in ("decisions", "rewards", "training", "events"):
                for i, value in enumerate(poison):
                    await producer.send_and_wait(f"{prefix}-{topic}", value, key=b"p%d" % i)
        finally:
            await producer.stop()

    asyncio.run(produce())
    d = stack.decide("colours", context={"after": "poison"})
    assert (
        stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1}).status_code
        == 202
    )
    wait_until(
        lambda: stack.http.get(f"/v1/events/{d['event_id']}").json()["learned"],
        20,
        "a decision after the poison to be learned",
    )
    replica = stack.http.get("/v1/models/colours").json()["replica"]
    assert replica.get("poisoned", 0) >= len(poison), replica

    def worker_poisoned() -> int:
        stats = json.loads((stack.data / "worker-stats.json").read_text())
        return int(stats["counts"].get("poisoned", 0))

    wait_until(
        lambda: worker_poisoned() >= 3 * len(poison),
        15,
        "the worker to count every poisoned message",
    )
    assert stack.worker.process is not None and stack.worker.process.poll() is None


def test_inventory_events_reach_the_serving_replica_newest_first(stack: Stack) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    r = stack.http.post(
        "/v1/events",
        json={
            "events": [
                {"type": "inventory", "sku": sku, "level": 5, "ts": 1000.0},
                {"type": "inventory", "sku": sku, "level": 2, "ts": 1002.0},
                {"type": "inventory", "sku": sku, "level": 9, "ts": 1001.0},  # older, arrives last
            ]
        },
    )
    assert r.status_code == 202 and r.json() == {"accepted": 3}

    def level() -> float | None:
        got = stack.http.get(f"/v1/inventory/{sku}")
        return got.json()["level"] if got.status_code == 200 else None

    wait_until(lambda: level() == 2, 15, "the newest stock level to reach the API")


SHOP = {
    "actions": [
        {
            "id": "boots",
            "features": {"p": {"kind": "boots"}},
            "metadata": {"sku": "B1", "category": "shoes"},
        },
        {
            "id": "sneakers",
            "features": {"p": {"kind": "sneakers"}},
            "metadata": {"sku": "S1", "category": "shoes"},
        },
        {
            "id": "loafers",
            "features": {"p": {"kind": "loafers"}},
            "metadata": {"sku": "L1", "category": "shoes"},
        },
        {
            "id": "bag",
            "features": {"p": {"kind": "bag"}},
            "metadata": {"sku": "G1", "category": "bags"},
        },
        {
            "id": "kids-cap",
            "features": {"p": {"kind": "cap"}},
            "metadata": {"tags": ["kids"], "category": "hats"},
        },
    ],
    "learning": {"reward_wait_seconds": 1.0},
    "constraints": {
        "rules": [
            {
                "name": "adults-only",
                "when": "context.audience == 'adult'",
                "exclude": "'kids' in action.tags",
            }
        ],
        "inventory": {"sku_field": "sku", "threshold": 0},
        "diversity": {"max_per": {"category": 2}},
        "exploration_floor": 0.1,
    },
}


def test_constraints_apply_and_explain_and_slates_learn_per_slot(stack: Stack) -> None:
    assert stack.http.put("/v1/catalogs/shop", json=SHOP).status_code == 201
    stack.http.post("/v1/events", json={"type": "inventory", "sku": "B1", "level": 0})
    wait_until(lambda: stack.http.get("/v1/inventory/B1").status_code == 200, 15, "stock")
    d = stack.decide("shop", context={"audience": "adult"}, debug=True, user_id="u1")
    ids = [r["id"] for r in d["ranking"]]  # type: ignore[union-attr]
    assert sorted(ids) == ["bag", "loafers", "sneakers"]
    assert d["removed"] == {"inventory": 1, "rule:adults-only": 1}
    assert d["removed_ids"] == {"inventory": ["boots"], "rule:adults-only": ["kids-cap"]}
    assert min(r["probability"] for r in d["ranking"]) >= 0.1 / 3 - 1e-9  # type: ignore[union-attr]

    slate = stack.decide("shop", slots=[{"id": "hero"}, {"id": "side"}, {"id": "foot"}])
    chosen = [s["chosen"]["id"] for s in slate["slots"]]  # type: ignore[union-attr]
    assert len(set(chosen)) == 3
    categories = [
        next(a for a in SHOP["actions"] if a["id"] == c)["metadata"]["category"] for c in chosen
    ]
    assert max(categories.count(c) for c in set(categories)) <= 2
    hero = slate["slots"][0]  # type: ignore[index]
    r = stack.http.post(
        "/v1/rewards", json={"event_id": slate["event_id"], "slot": "hero", "value": 1}
    )
    assert r.status_code == 202
    wait_until(
        lambda: stack.http.get(f"/v1/events/{hero['event_id']}").json()["learned"],
        15,
        "the hero slot's reward to be learned",
    )
    side = slate["slots"][1]["event_id"]  # type: ignore[index]
    wait_until(
        lambda: stack.http.get(f"/v1/events/{side}").json()["learned"],
        15,
        "the side slot (no reward) to be learned with the default reward",
    )

    nothing = {
        **SHOP,
        "constraints": {
            "inventory": {"sku_field": "sku", "threshold": 0, "unknown": "out_of_stock"},
            "fallback": {"empty": True, "reason": "all sold out"},
        },
    }
    assert stack.http.put("/v1/catalogs/shop-empty", json=nothing).status_code == 201
    empty = stack.decide("shop-empty", candidates=["boots", "bag"])
    assert empty["chosen"] is None and empty["reason"] == "all sold out" and empty["ranking"] == []
