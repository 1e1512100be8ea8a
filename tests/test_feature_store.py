"""The feature store through the real parts: behaviour events over HTTP, the Faust agent
and its RocksDB table, the changelog, the API's replica, decisions and erasure."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rocksdict import AccessType, Rdict

from engine import profiles
from engine.records import DecisionLogged, decode
from tests.conftest import Stack, read_topic, wait_until

pytestmark = pytest.mark.integration

CATALOG = {
    "actions": [
        {"id": t, "features": {"banner": {"theme": t}}, "metadata": {"creative": t}}
        for t in ("running", "yoga", "outdoor")
    ],
    "learning": {"reward_wait_seconds": 1.0},
    "constraints": {
        "frequency_caps": [
            {"name": "once", "group": "creative", "limit": 1, "window_seconds": 3600}
        ]
    },
}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("features"))
    s.start()
    assert s.http.put("/v1/catalogs/banners", json=CATALOG).status_code == 201
    yield s
    s.stop()


def view(user: str, session: str, category: str, price: float = 50.0) -> dict[str, object]:
    product = {"id": f"{category}-1", "category": category, "brand": "acme", "price": price}
    return {"type": "product_view", "user_id": user, "session_id": session, "product": product}


def stored(stack: Stack, user: str, query: str = "") -> dict[str, object] | None:
    r = stack.http.get(f"/v1/users/{user}/features{query}")
    return dict(r.json()) if r.status_code == 200 else None


def logged(stack: Stack, event_id: object) -> DecisionLogged:
    """The decision log's record of `event_id`, read from the broker."""
    topic = f"t{stack.port}-decisions"
    for _, value in asyncio.run(read_topic(stack.broker, topic, timeout=10.0)):
        message = decode(value)
        if isinstance(message, DecisionLogged) and message.event_id == event_id:
            return message
    raise AssertionError(f"decision {event_id} is not in the log")


def test_behaviour_events_become_features_that_decisions_use_and_log(stack: Stack) -> None:
    user, session = f"u-{uuid.uuid4().hex[:8]}", "s1"
    events = [view(user, session, "running") for _ in range(3)] + [view(user, session, "yoga")]
    events.append(
        {
            "type": "add_to_cart",
            "user_id": user,
            "session_id": session,
            "product": {"id": "shoe", "category": "running", "price": 80.0},
            "quantity": 2,
        }
    )
    r = stack.http.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json() == {"accepted": 5}

    def counted() -> bool:
        got = stored(stack, user, f"?session_id={session}")
        return got is not None and got["events"] == 5

    wait_until(counted, 15, "the five events to reach the API's replica")
    got = stored(stack, user, f"?session_id={session}&catalog=banners")
    assert got is not None
    features = got["features"]
    assert isinstance(features, dict)
    assert features["user_features"]["views_1h.running"] == pytest.approx(3.0)
    assert features["user_features"]["views_1h.yoga"] == pytest.approx(1.0)
    assert features["session_features"]["cart_value"] == pytest.approx(160.0)
    assert features["session_features"]["depth"] == pytest.approx(5.0)
    assert "last_products=yoga-1" in features["session_features"]

    d = stack.decide(
        "banners", user_id=user, session_id=session, context={"page": "home"}, debug=True
    )
    used = d["features"]
    assert isinstance(used, dict)
    assert used["context"] == {"page": "home"}
    assert used["user_features"]["views_1h.running"] == pytest.approx(3.0, rel=0.01)
    assert used["session_features"]["cart_value"] == pytest.approx(160.0)
    assert logged(stack, d["event_id"]).context == used, "the log holds the features used"

    # per-action popularity: views of the product an action shows join its features
    views = [view(f"v{i}", "s", "x") | {"product": {"id": "yoga"}} for i in range(4)]
    assert stack.http.post("/v1/events", json={"events": views}).status_code == 202

    def popular() -> dict[str, object]:
        return dict(stack.decide("banners", context={"page": "home"}, debug=True))

    four = {"yoga": {"popularity": {"views_1h": 4.0}}}  # all four counted (no other views)

    seen: list[dict[str, object]] = []

    def counted() -> bool:
        seen.append(popular())
        return seen[-1]["action_features"] == four

    wait_until(counted, 15, "yoga's four views in its popularity")  # recomputed each second
    d = seen[-1]
    assert logged(stack, d["event_id"]).action_features == d["action_features"]

    anonymous = stack.decide("banners", context={"page": "home"}, debug=True)
    assert set(anonymous["features"]) == {"context"}  # type: ignore[arg-type]


def test_a_catalog_declares_its_features_and_bad_specs_name_the_field(stack: Stack) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    spec = [{"name": "spent", "aggregation": "scalar", "scalar": "lifetime_spend"}]
    body = {**CATALOG, "features": spec}
    assert stack.http.put("/v1/catalogs/spend", json=body).status_code == 201
    purchase = {"type": "purchase", "user_id": user, "revenue": 42.5}
    assert stack.http.post("/v1/events", json=purchase).status_code == 202
    wait_until(lambda: stored(stack, user) is not None, 15, "the purchase to reach the replica")
    d = stack.decide("spend", user_id=user, debug=True)
    assert d["features"]["user_features"] == {"spent": 42.5}  # type: ignore[index]
    off = stack.http.put("/v1/catalogs/spend", json={**CATALOG, "features": []})
    assert off.status_code == 200
    assert set(stack.decide("spend", user_id=user, debug=True)["features"]) == set()  # type: ignore[arg-type]

    bad = {**CATALOG, "features": [{"name": "x", "window": "2h"}]}
    r = stack.http.put("/v1/catalogs/spend", json=bad)
    assert r.status_code == 422 and r.json()["field"] == "features[0].window"
    assert "5m, 1h, 24h, 7d" in r.json()["detail"]
    r = stack.http.post("/v1/events", json={"type": "purchase", "user_id": user, "revenue": -1})
    assert r.status_code == 422 and r.json()["field"] == "revenue"
    r = stack.http.post("/v1/events", json={"events": [view(user, "s", "x"), {"type": "view"}]})
    assert r.status_code == 422 and r.json()["field"] == "events[1].type"


def test_erasure_removes_the_user_from_every_table_and_replica(
    stack: Stack, tmp_path: Path
) -> None:
    user, other = f"erase-{uuid.uuid4().hex[:8]}", f"keep-{uuid.uuid4().hex[:8]}"
    events = [view(user, "s1", "running"), view(user, "s2", "yoga"), view(other, "s9", "yoga")]
    assert stack.http.post("/v1/events", json={"events": events}).status_code == 202
    wait_until(lambda: stored(stack, user) and stored(stack, other), 15, "both users' features")
    shown = {stack.decide("banners", user_id=user)["chosen"]["id"] for _ in range(3)}  # type: ignore[index]
    assert len(shown) == 3, "a cap of 1 per hour shows each banner once"
    capped = stack.decide("banners", user_id=user)
    assert capped["chosen"] is None and capped["removed"] == {"cap:once": 3}

    r = stack.http.delete(f"/v1/users/{user}")
    assert r.status_code == 202 and r.json()["exposure_records_erased"] == 1
    assert stack.http.get(f"/v1/users/{user}/features").status_code == 404
    assert stack.decide("banners", user_id=user)["chosen"] is not None, "exposures are gone"

    # the changelog: the user's last record is a tombstone; the other user is untouched
    changelog = f"t{stack.port}-worker-profiles-changelog"

    def tombstoned() -> bool:
        last = dict(asyncio.run(read_topic(stack.broker, changelog, timeout=2.0)))
        return profiles.key(user) in last and not last[profiles.key(user)]

    wait_until(tombstoned, 15, "a tombstone for the erased user in the changelog")
    # a fresh replica (a second API reading the changelog from the start) has no trace
    replica = Stack(stack.broker, tmp_path, LOOPWISE_TOPIC_PREFIX=f"t{stack.port}")
    replica.api.start()
    try:
        replica.wait_ready()
        assert replica.http.get(f"/v1/users/{user}/features").status_code == 404
        assert replica.http.get(f"/v1/users/{other}/features").status_code == 200
    finally:
        replica.http.close()
        replica.api.stop()
    # the worker's own RocksDB table, read after the worker stopped
    stack.worker.stop()
    try:
        stores = list((stack.data / "worker").rglob("profiles-*.db"))
        assert stores, "the worker keeps its profiles table in RocksDB"
        keys = set()
        for path in stores:
            db = Rdict(str(path), access_type=AccessType.read_only())
            keys |= set(db.keys())
            db.close()
        assert profiles.key(user) not in keys and profiles.key(other) in keys
    finally:
        restarted = time.time()
        stack.worker.start()
        stack.wait_ready()
        stack.wait_worker(since=restarted)  # the next test's events need a consuming worker


def test_a_retried_batch_counts_once_in_profiles_and_popularity(stack: Stack) -> None:
    user, product = f"retry-{uuid.uuid4().hex[:8]}", f"sku-{uuid.uuid4().hex[:8]}"
    views = [
        {**view(user, "s1", "running"), "event_id": f"{user}-{i}", "product": {"id": product}}
        for i in range(3)
    ]
    for _ in range(2):  # the client did not see the first 202 and sent the batch again
        assert stack.http.post("/v1/events", json={"events": views}).status_code == 202
    last = {**view(user, "s1", "yoga"), "event_id": f"{user}-last"}
    assert stack.http.post("/v1/events", json=last).status_code == 202

    def all_in() -> bool:  # the sentinel comes after both copies on the user's partition
        got = stored(stack, user)
        return got is not None and "views_1h.yoga" in got["features"]["user_features"]  # type: ignore[index]

    wait_until(all_in, 30, "the retried batch and the last event")
    got = stored(stack, user)
    assert got is not None and got["events"] == 4, got
    spec = [{"name": "views", "key": "action", "event": "product_view", "window": "1h"}]
    body = {
        "actions": [{"id": "a", "metadata": {"product_id": product}}],
        "learning": {"reward_wait_seconds": 1.0},
        "features": spec,
    }
    assert stack.http.put("/v1/catalogs/retry", json=body).status_code == 201
    three = {"a": {"popularity": {"views": 2.0 ** (round(4 * math.log2(3)) / 4)}}}
    seen: list[object] = []

    def popular() -> bool:
        seen.append(stack.decide("retry", debug=True)["action_features"])
        return seen[-1] == three

    wait_until(popular, 15, "the product's popularity to count three views")
