"""Two API processes on one broker: whatever one decided, the other takes rewards for,
replays, counts against caps and erases (api.serving.peers). Real Tansu, worker, APIs over HTTP."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import msgspec
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.serving.decided import DecisionIndex
from loopwise.supervisor import Child
from streams.broker import free_port
from streams.kv import KV
from streams.settings import Settings
from tests.conftest import Stack, loopwise_env, read_topic, ready, wait_until

pytestmark = pytest.mark.integration

CATALOG = {
    "actions": [
        {"id": "promo-a", "features": {"kind": "promo"}},
        {"id": "promo-b", "features": {"kind": "promo"}},
        {"id": "plain", "features": {"kind": "plain"}},
    ],
    "constraints": {
        "frequency_caps": [
            {
                "name": "one-promo",
                "actions": ["promo-a", "promo-b"],
                "limit": 1,
                "window_seconds": 3600,
            }
        ]
    },
    "learning": {"reward_wait_seconds": 1.0, "default_reward": 0.0},
}
USER = "shop/42 ü"  # a slash and a non-ASCII letter: any printable id is erasable


class Pair:
    """A stack (worker and API A) and a second API process B on the same topics."""

    def __init__(self, broker: str, a: Stack, b_url: str, b: Child, prefix: str) -> None:
        self.broker, self.a, self.b, self.prefix = broker, a, b, prefix
        self.api_a = a.http
        self.api_b = httpx.Client(base_url=b_url, timeout=10.0)


@pytest.fixture(scope="module")
def pair(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    prefix = f"peers{uuid.uuid4().hex[:8]}"
    shared = {"LOOPWISE_TOPIC_PREFIX": prefix, "LOOPWISE_PSEUDONYM_KEY": secrets.token_hex(16)}
    a = Stack(broker, tmp_path_factory.mktemp("a"), LOOPWISE_RETENTION_SECONDS="2", **shared)
    data_b = tmp_path_factory.mktemp("b")
    port_b = free_port()
    b = Child("api", loopwise_env(data_b, port_b, broker, **shared), data_b / "api.log")
    url_b = f"http://127.0.0.1:{port_b}"
    p = Pair(broker, a, url_b, b, prefix)
    try:  # stopped even when starting fails
        a.start()
        b.start()
        wait_until(lambda: ready(url_b), 60, "API B to be ready")
        for api in (p.api_a, p.api_b):  # catalogs are kept per serving process
            assert api.put("/v1/catalogs/promos", json=CATALOG).status_code == 201
        yield p
    finally:
        p.api_b.close()
        b.stop()
        a.stop()


def _followed(api: httpx.Client, event_id: str) -> None:
    """Until `api` has followed this decision from the decisions log."""
    wait_until(
        lambda: api.get(f"/v1/events/{event_id}").json()["decided"], 10, f"{event_id} followed"
    )


def _decide(api: httpx.Client, **body: object) -> dict[str, object]:
    r = api.post("/v1/decide", json={"catalog": "promos", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_every_reward_sent_to_the_other_process_is_learned(pair: Pair) -> None:
    event_ids: list[str] = []
    for i in range(30):  # rewards sent at once: B waits for the decisions log, not the client
        answer = _decide(pair.api_a, context={"i": i % 3}, **({"slots": 2} if i % 3 == 0 else {}))
        slots = answer.get("slots")
        ids = [s["event_id"] for s in slots] if isinstance(slots, list) else [answer["event_id"]]
        for event_id in ids:
            r = pair.api_b.post("/v1/rewards", json={"event_id": event_id, "value": 1.0})
            assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        event_ids += [str(e) for e in ids]
    batch = pair.api_b.post(
        "/v1/rewards", json={"rewards": [{"event_id": e, "value": 0.5} for e in event_ids[:5]]}
    )
    known = {"accepted", "late"}  # late: their 1 s reward windows may have closed by now
    assert all(x["status"] in known for x in batch.json()["results"]), batch.text
    unknown = pair.api_b.post("/v1/rewards", json={"event_id": "never-decided", "value": 1.0})
    assert unknown.status_code == 404 and unknown.json()["field"] == "event_id"

    def learned() -> set[str]:
        records = asyncio.run(read_topic(pair.broker, f"{pair.prefix}-training", timeout=10))
        examples = [msgspec.json.decode(v) for _, v in records]
        return {e["event_id"] for e in examples if e["reason"] == "reward" and e["reward"] > 0}

    wait_until(lambda: set(event_ids) <= learned(), 60, "every reward to be learned", interval=1)
    for event_id in event_ids[:3]:  # and either process says so
        wait_until(
            lambda e=event_id: pair.api_b.get(f"/v1/events/{e}").json()["learned"],  # type: ignore[misc]
            30,
            f"B's replica to have learned {event_id}",
        )


def test_a_deferred_slate_decided_on_one_process_is_activated_on_the_other(pair: Pair) -> None:
    """B knows A's slate by its event id from the decisions log, and activates every
    slot; each slot is learned once, with the reward B took for it."""
    slate = _decide(pair.api_a, context={"x": 3}, slots=2, defer_activation=True)
    slots = [str(s["event_id"]) for s in slate["slots"]]  # type: ignore[attr-defined]
    r = pair.api_b.post(f"/v1/events/{slate['event_id']}/activate")
    assert r.status_code == 202 and r.json() == {
        "event_id": slate["event_id"],
        "events": slots,
        "status": "activated",
    }, r.text
    reward = pair.api_b.post("/v1/rewards", json={"event_id": slots[0], "value": 1.0})
    assert reward.json()["status"] == "accepted"
    for eid in slots:
        wait_until(
            lambda e=eid: pair.api_a.get(f"/v1/events/{e}").json()["learned"],  # type: ignore[misc]
            30,
            f"{eid} learned",
        )


@pytest.mark.parametrize("slots", [None, 2])
def test_a_repeated_event_id_is_replayed_or_refused_by_the_other_process(
    pair: Pair, slots: int | None
) -> None:
    body: dict[str, object] = {"event_id": f"e-{uuid.uuid4().hex}", "context": {"x": 1}}
    if slots:
        body["slots"] = slots
    first = _decide(pair.api_a, **body)
    assert "replay" not in first
    for k in range(slots or 1):  # each slot is its own record, maybe on its own partition
        _followed(pair.api_b, f"{body['event_id']}/{k}" if slots else str(body["event_id"]))
    again = pair.api_b.post("/v1/decide", json={"catalog": "promos", **body}).json()
    assert again.pop("replay") is True, "the first repeat on B is already a replay"
    assert again == first, "the same answer: chosen actions, probabilities, ranking"
    other = pair.api_b.post("/v1/decide", json={"catalog": "promos", **body, "context": {"x": 2}})
    assert other.status_code == 409 and other.json()["field"] == "event_id"


def test_caps_and_erasure_reach_every_process(pair: Pair) -> None:
    promos = {"candidates": ["promo-a", "promo-b"], "user_id": USER}
    shown = _decide(pair.api_a, **promos)
    assert shown["chosen"] is not None and not shown["removed"]
    _followed(pair.api_b, str(shown["event_id"]))
    assert _decide(pair.api_b, **promos)["removed"] == {"cap:one-promo": 2}, "A's exposure"
    event = {"type": "product_view", "user_id": USER, "product": {"id": "p1"}}
    assert pair.api_a.post("/v1/events", json=event).status_code == 202
    path = f"/v1/users/{quote(USER, safe='')}/features"
    for api in (pair.api_a, pair.api_b):
        wait_until(lambda a=api: a.get(path).status_code == 200, 30, "the profile on both")  # type: ignore[misc]

    erased = pair.api_b.delete(f"/v1/users/{quote(USER, safe='')}")
    assert erased.status_code == 202, erased.text
    assert erased.json() == {"user_id": USER, "status": "erasing", "exposure_records_erased": 1}

    def no_profile(api: httpx.Client) -> bool:
        gone = api.get(path).status_code == 404
        return gone and api.get("/v1/features", params={"user_id": USER}).status_code == 404

    assert no_profile(pair.api_b), "B forgot the profile at once (and its exposure: above)"
    # A's caps start again from zero. Checked on A alone: the decision that shows it (the
    # first one after the erasure reached A) is a new exposure, which B then counts.
    wait_until(lambda: no_profile(pair.api_a), 30, "A to forget the profile")
    wait_until(
        lambda: _decide(pair.api_a, **promos)["removed"] == {}, 30, "A to forget the exposure"
    )


def test_the_query_form_erases_an_id_on_every_process(pair: Pair) -> None:
    user = "mail:ann@example.com/x?y=1#z"
    promos = {"candidates": ["promo-a", "promo-b"], "user_id": user}
    _followed(pair.api_a, str(_decide(pair.api_b, **promos)["event_id"]))
    assert _decide(pair.api_a, **promos)["removed"] == {"cap:one-promo": 2}, "B's exposure"
    erased = pair.api_a.delete("/v1/users", params={"user_id": user})
    assert erased.status_code == 202 and erased.json()["user_id"] == user
    wait_until(lambda: _decide(pair.api_b, **promos)["removed"] == {}, 30, "B to forget the user")
    missing = pair.api_a.delete("/v1/users")
    assert missing.status_code == 422 and missing.json()["field"] == "user_id"


def test_without_the_decisions_log_an_unknown_reward_is_kept_as_pending(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker=f"127.0.0.1:{free_port()}")  # no broker
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/rewards", json={"event_id": "decided-elsewhere", "value": 1.0})
        assert r.status_code == 202 and r.json()["status"] == "pending", r.text
        assert len(client.app_state["lw"].outbox) == 1, "kept in the outbox for the broker"


def test_a_slates_slots_are_kept_in_slot_order_whatever_order_the_log_brings_them(
    tmp_path: Path,
) -> None:
    index = DecisionIndex(KV(tmp_path / "decisions"))
    index.add_slot("e", "e/side", 3, 1)
    assert index.slate("e") == (3, ["e/side"])  # known so far, in their places
    index.add_slot("e", "e/foot", 3, 2)
    index.add_slot("e", "e/side", 3, 1)  # a repeat changes nothing
    index.add_slot("e", "e/hero", 3, 0)
    assert index.slate("e") == (3, ["e/hero", "e/side", "e/foot"])
    index.add_slot("e", "e/bad", 3, 7)  # a position the slate does not have
    assert index.slate("e") == (3, ["e/hero", "e/side", "e/foot"])
    assert index.slate("other") is None
    index.kv.close()
