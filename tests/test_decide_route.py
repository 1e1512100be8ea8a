"""POST /v1/decide in process: typed fields, and event_id as an idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from streams.broker import free_port
from streams.settings import Settings

CATALOG = {"actions": [{"id": f"a{i}", "features": {"x": {"i": i}}} for i in range(6)]}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, broker=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        yield c


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"debug": "yes"}, "debug"),
        ({"user_id": 42}, "user_id"),
        ({"session_id": ["s"]}, "session_id"),
        ({"candidates": "a1"}, "candidates"),
        ({"candidates": ["a1", 2]}, "candidates[1]"),
        ({"exclude": {"a1": True}}, "exclude"),
        ({"event_id": 7}, "event_id"),
        ({"slots": True}, "slots"),
        ({"slots": 2.5}, "slots"),
        ({"slots": [{"id": 1}]}, "slots[0].id"),
        ({"slots": [{"id": "s", "features": []}]}, "slots[0].features"),
        ({"slots": [{"id": "s", "extra": 1}]}, "slots[0].extra"),
        ({"context": "home"}, "context"),
        ({"unknown": 1}, "unknown"),
        ({"catalog": 3}, "catalog"),
    ],
)
def test_every_field_of_a_decide_is_type_checked(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    r = client.post("/v1/decide", json={"catalog": "shop", **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field, r.json()


@pytest.mark.parametrize("slots", [None, 3])
def test_a_repeated_event_id_replays_the_answer_once_logged(
    client: TestClient, slots: int | None
) -> None:
    body: dict[str, object] = {"catalog": "shop", "event_id": "page-1", "user_id": "u"}
    if slots:
        body["slots"] = slots
    first = client.post("/v1/decide", json=body)
    assert first.status_code == 200, first.text
    again = client.post("/v1/decide", json={**body, "debug": False})
    assert again.status_code == 200
    replay = again.json()
    assert replay.pop("replay") is True and replay == first.json()
    assert "replay" not in first.json()
    other = client.post("/v1/decide", json={**body, "context": {"page": "cart"}})
    assert other.status_code == 409 and other.json()["field"] == "event_id"
    assert "another request" in other.json()["detail"]


def test_a_generated_event_id_cannot_be_reused(client: TestClient) -> None:
    first = client.post("/v1/decide", json={"catalog": "shop"}).json()
    reuse = client.post("/v1/decide", json={"catalog": "shop", "event_id": first["event_id"]})
    assert reuse.status_code == 409 and reuse.json()["field"] == "event_id"
