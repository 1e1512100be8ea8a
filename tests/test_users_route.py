"""The user routes in process: GET /v1/users/{id}/features (and /v1/features?user_id=),
DELETE /v1/users/{id} (and /v1/users?user_id=), and their problem+json answers.

The profile replica is fed what the worker's profile table would write to its changelog
(agents.profiler folds the events); erasure's messages wait in the outbox.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agents.profiler import Profiler
from api.serving.state import State
from engine.behaviour import BehaviourObserved, Product, UserErased
from engine.records import decode, encode
from tests.routes import app_client, problem, state_of


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("users")) as c:
        catalog = {"actions": [{"id": "a"}, {"id": "b"}]}
        assert c.put("/v1/catalogs/shop", json=catalog).status_code == 201
        yield c


def store(st: State, *events: BehaviourObserved) -> None:
    """Fold `events` as the worker does and apply its table's writes to the replica."""
    table: dict[bytes, bytes] = {}
    profiler = Profiler(table, {}, Counter())
    for event in events:
        profiler.handle(encode(event))
    for offset, (key, value) in enumerate(table.items()):
        st.profiles.apply(0, offset, key, value)


def view(user_id: str, ts: float, session_id: str | None = None) -> BehaviourObserved:
    product = Product(id="p-1", category="shoes", brand="acme", price=20.0)
    return BehaviourObserved(
        kind="product_view", user_id=user_id, ts=ts, session_id=session_id, product=product
    )


@pytest.mark.parametrize(
    ("path", "user"),
    [("/v1/users/{}/features", "in/the path"), ("/v1/features?user_id={}", "as/a query")],
    ids=["path", "query"],
)
def test_the_features_of_a_stored_user(client: TestClient, path: str, user: str) -> None:
    now = time.time()
    store(state_of(client), view(user, now - 30, "s-1"), view(user, now - 10, "s-2"))
    r = client.get(path.format(user.replace("/", "%2F").replace(" ", "%20")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user and body["events"] == 2
    assert body["last_event_ts"] == pytest.approx(now - 10)
    assert sorted(body["sessions"]) == ["s-1", "s-2"]
    assert body["catalog"] is None and body["session_id"] is None
    assert isinstance(body["features"], dict) and body["features"]


def test_a_catalog_and_a_session_choose_the_features(client: TestClient) -> None:
    now = time.time()
    store(state_of(client), view("u-cat", now - 5, "s-9"))
    r = client.get("/v1/users/u-cat/features?catalog=shop&session_id=s-9")
    assert r.status_code == 200, r.text
    assert (r.json()["catalog"], r.json()["session_id"]) == ("shop", "s-9")
    found = problem(
        client.get("/v1/users/u-cat/features?catalog=nope"),
        404,
        "catalog",
        kind="unknown-catalog",
        title="Unknown catalog",
    )
    assert "'nope'" in found["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status", "field", "kind", "fragment"),
    [
        ("GET", "/v1/users/nobody/features", 404, "user_id", "unknown-user", "'nobody'"),
        ("GET", "/v1/features", 422, "user_id", "invalid-input", "in the path or as ?user_id="),
        ("DELETE", "/v1/users", 422, "user_id", "invalid-input", "user_id is required"),
        ("GET", "/v1/features?user_id=%01", 422, "user_id", "invalid-input", "printable"),
        ("DELETE", "/v1/users?user_id=%00", 422, "user_id", "invalid-input", "printable"),
        ("GET", "/v1/users/" + "u" * 129 + "/features", 422, "user_id", "invalid-input", "1-128"),
        ("DELETE", "/v1/users/" + "u" * 129, 422, "user_id", "invalid-input", "1-128"),
    ],
    ids=["unknown", "no id", "erase no id", "control", "erase NUL", "long", "erase long"],
)
def test_bad_user_requests_get_problem_json_naming_the_field(
    client: TestClient, method: str, path: str, status: int, field: str, kind: str, fragment: str
) -> None:
    found = problem(client.request(method, path), status, field, kind=kind)
    assert fragment in found["detail"], found["detail"]


def test_erasure_forgets_the_user_here_at_once_and_tells_the_others(client: TestClient) -> None:
    st = state_of(client)
    store(st, view("u-erase", time.time() - 5))
    decided = client.post("/v1/decide", json={"catalog": "shop", "user_id": "u-erase"})
    assert decided.status_code == 200
    assert client.get("/v1/users/u-erase/features").status_code == 200
    before, erased = len(st.outbox), st.metrics.counts["users_erased"]
    r = client.delete("/v1/users/u-erase")
    assert r.status_code == 202
    assert r.json() == {"user_id": "u-erase", "status": "erasing", "exposure_records_erased": 1}
    problem(client.get("/v1/users/u-erase/features"), 404, "user_id", kind="unknown-user")
    messages = [(p.topic, p.key, decode(p.value)) for p in list(st.outbox.pending)[before:]]
    assert [m[0] for m in messages] == ["loopwise-behaviour", "loopwise-decisions"]
    (_, by_user, to_worker), (_, by_pseudonym, to_peers) = messages
    assert isinstance(to_worker, UserErased) and to_worker.user_id == "u-erase"
    assert by_user == b"u-erase"
    assert isinstance(to_peers, UserErased) and to_peers.user_id != "u-erase", "a pseudonym"
    assert by_pseudonym == to_peers.user_id.encode()
    assert st.metrics.counts["users_erased"] == erased + 1
    again = client.delete("/v1/users?user_id=u-erase")  # nothing left: still accepted
    assert again.status_code == 202 and again.json()["exposure_records_erased"] == 0


def test_a_full_outbox_refuses_an_erasure_with_503(tmp_path: Path) -> None:
    with app_client(tmp_path, outbox_capacity=1) as c:
        found = problem(c.delete("/v1/users/u-1"), 503, None, kind="unavailable")
        assert "retry later" in found["detail"]
