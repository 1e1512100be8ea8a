"""POST /v1/rewards in process: statuses, warnings and problem+json for bad rewards.

The decisions index holds this process's own decisions at once, so rewards for them are
accepted without a broker; an id it does not know is `pending` (the decisions log cannot
be followed: no broker runs). The 404 for an unknown id needs the log followed live, so
it stays in test_stack.py. Type checks of every field: test_wrong_types.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from engine.records import RewardObserved, decode
from tests.routes import app_client, problem, state_of

CATALOG = {"actions": [{"id": c, "features": {"banner": {"colour": c}}} for c in ("r", "g")]}
QUICK = {**CATALOG, "learning": {"reward_wait_seconds": 0.2}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("rewards")) as c:
        for name, body in (("colours", CATALOG), ("quick", QUICK), ("revenue", CATALOG)):
            assert c.put(f"/v1/catalogs/{name}", json=body).status_code == 201
        yield c


def decide(client: TestClient, catalog: str = "colours", **body: object) -> dict[str, object]:
    r = client.post("/v1/decide", json={"catalog": catalog, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_reward_for_a_decision_made_here_is_accepted_and_sent(client: TestClient) -> None:
    event_id = str(decide(client)["event_id"])
    before = len(state_of(client).outbox)
    r = client.post("/v1/rewards", json={"event_id": event_id, "value": 1, "reward_id": "r-1"})
    assert r.status_code == 202
    assert r.json() == {"event_id": event_id, "reward_id": "r-1", "status": "accepted"}
    _, topic, key, raw = state_of(client).outbox.pending[before]
    record = decode(raw)
    assert (topic, key) == ("loopwise-rewards", event_id.encode())
    assert isinstance(record, RewardObserved)
    assert (record.event_id, record.reward_id, record.value) == (event_id, "r-1", 1.0)


def test_a_reward_without_an_id_gets_one(client: TestClient) -> None:
    event_id = decide(client)["event_id"]
    first = client.post("/v1/rewards", json={"event_id": event_id, "value": 0.5}).json()
    second = client.post("/v1/rewards", json={"event_id": event_id, "value": 0.5}).json()
    assert first["status"] == second["status"] == "accepted"
    assert len(first["reward_id"]) == 32 and first["reward_id"] != second["reward_id"]


def test_a_batch_answers_each_reward_in_order(client: TestClient) -> None:
    """One the index knows, one it does not (pending: the log is not followed live), and a
    slot of a multi-slot decision (its own event `<event_id>/<slot>`)."""
    known = decide(client)["event_id"]
    slate = decide(client, slots=[{"id": "hero"}, {"id": "side"}])
    batch = {
        "rewards": [
            {"event_id": known, "value": 1},
            {"event_id": "never-seen-here", "value": 1},
            {"event_id": slate["event_id"], "slot": "side", "value": 1},
        ]
    }
    r = client.post("/v1/rewards", json=batch)
    assert r.status_code == 202
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "pending", "accepted"]
    assert [x["event_id"] for x in results] == [
        known,
        "never-seen-here",
        f"{slate['event_id']}/side",
    ]
    assert "not known here yet" in results[1]["detail"]


def test_a_reward_after_its_window_is_late_with_the_reason(client: TestClient) -> None:
    event_id = decide(client, "quick")["event_id"]
    time.sleep(0.3)
    r = client.post("/v1/rewards", json={"event_id": event_id, "value": 1})
    assert r.status_code == 202 and r.json()["status"] == "late"
    assert "reward wait window of 0.2 s closed" in r.json()["detail"]


def test_a_reward_outside_the_learned_range_is_accepted_with_a_warning(client: TestClient) -> None:
    """Moved from test_stack.py. A catalog on the defaults (RegCB) learns rewards clipped to
    [0, 1]: revenue of 30 is accepted, and the answer says it is learned as 1 and which
    settings declare the range."""
    events = [decide(client, "revenue")["event_id"] for _ in range(2)]
    big = client.post("/v1/rewards", json={"event_id": events[0], "value": 30})
    assert big.status_code == 202 and big.json()["status"] == "accepted"
    warning = big.json()["warning"]
    assert "[0, 1]" in warning and "learned as 1" in warning and "max_reward" in warning
    fine = client.post("/v1/rewards", json={"event_id": events[1], "value": 1})
    assert fine.status_code == 202 and "warning" not in fine.json()
    assert client.delete("/v1/catalogs/revenue").status_code == 204


REWARD = {"event_id": "e-1", "value": 1}

# (name, body, status, field, type slug, fragment of the detail)
INVALID: list[tuple[str, bytes, int, str, str, str]] = [
    # moved from test_stack.py (they need no broker)
    ("value a string", b'{"event_id": "x", "value": "1"}', 422, "value", "invalid-input", "number"),
    (
        "batch item without event id",
        b'{"rewards": [{"event_id": "x", "value": 1}, {"value": 1}]}',
        422,
        "rewards[1].event_id",
        "invalid-input",
        "rewards[1].event_id is required",
    ),
    (
        "batch too long",
        json.dumps({"rewards": [{"event_id": "x", "value": 1}] * 1001}).encode(),
        422,
        "rewards",
        "limit-exceeded",
        "rewards has 1001 entries, more than the limit of 1000",
    ),
    # the rest of the rules
    ("empty batch", b'{"rewards": []}', 422, "rewards", "invalid-input", "non-empty array"),
    ("no value", b'{"event_id": "x"}', 422, "value", "invalid-input", "value is required"),
    ("no event id", b'{"value": 1}', 422, "event_id", "invalid-input", "event_id is required"),
    (
        "event id too long",
        json.dumps({"event_id": "e" * 129, "value": 1}).encode(),
        422,
        "event_id",
        "invalid-input",
        "1-128 printable characters",
    ),
    (
        "event id control",
        b'{"event_id": "a\\u0001b", "value": 1}',
        422,
        "event_id",
        "invalid-input",
        "printable",
    ),
    (
        "reward id empty",
        b'{"event_id": "x", "value": 1, "reward_id": ""}',
        422,
        "reward_id",
        "invalid-input",
        "reward_id must be a string of 1-128 printable characters",
    ),
    (
        "slot empty",
        b'{"event_id": "x", "value": 1, "slot": ""}',
        422,
        "slot",
        "invalid-input",
        "1-128",
    ),
    (
        "value beyond the limit",
        b'{"event_id": "x", "value": 1e13}',
        422,
        "value",
        "limit-exceeded",
        "max_abs_number of +/-1e+12",
    ),
    (
        "value boolean",
        b'{"event_id": "x", "value": true}',
        422,
        "value",
        "invalid-input",
        "value must be a number, got a boolean",
    ),
    ("NaN", b'{"event_id": "x", "value": NaN}', 400, "body", "malformed-body", "JSON"),
    ("not an object", b"[1]", 422, "body", "invalid-input", "must be a JSON object"),
    (
        "unknown field",
        b'{"event_id": "x", "value": 1, "colour": "red"}',
        422,
        "colour",
        "invalid-input",
        "colour is not a known field",
    ),
]


@pytest.mark.parametrize(
    ("content", "status", "field", "kind", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_bad_rewards_get_problem_json_naming_the_field(
    client: TestClient, content: bytes, status: int, field: str, kind: str, fragment: str
) -> None:
    before = len(state_of(client).outbox)
    r = client.post("/v1/rewards", content=content, headers={"content-type": "application/json"})
    found = problem(r, status, field, kind=kind)
    assert fragment in found["detail"], found["detail"]
    assert len(state_of(client).outbox) == before, "nothing of a refused body is sent"
