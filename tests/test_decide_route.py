"""POST /v1/decide in process: typed fields, problem+json for bad input, candidates, and
event_id as an idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.requests import DecideRequest, SlotRequest
from streams.broker import free_port
from streams.settings import Settings
from tests.routes import app_client, problem

CATALOG = {"actions": [{"id": f"a{i}", "features": {"x": {"i": i}}} for i in range(6)]}
COLOURS = {
    "actions": [{"id": c, "features": {"banner": {"colour": c}}} for c in ("red", "blue", "green")],
    "learning": {"exploration": {"algorithm": "squarecb"}, "reward_wait_seconds": 1.0},
}


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


def test_a_request_keeps_the_fingerprint_the_release_before_inline_actions_gave_it() -> None:
    """A retry across an upgrade must match its decision: the digests below are what
    api.requests computed before inline actions and deferred activation were added."""
    full = DecideRequest(
        catalog="shop", context={"user": {"segment": "runner"}}, user_id="u1",
        candidates=["a", "b"], slots=2, event_id="e1",
    )  # fmt: skip
    assert full.fingerprint().hex() == "5597e65e2610aeb4972ce93797824a98"
    assert DecideRequest(catalog="shop").fingerprint().hex() == "84975dedd1d41c9180e00e94ff503796"
    deferred = DecideRequest(catalog="shop", defer_activation=True)
    assert deferred.fingerprint() != DecideRequest(catalog="shop").fingerprint()
    named = [SlotRequest(id="hero", features={"size": 2}), SlotRequest(id="side")]
    slate = DecideRequest(catalog="shop", slots=named, exclude=["a"], event_id="e2")
    assert slate.fingerprint().hex() == "40dfc967f14e58cc2cbe6bd5561a2186"  # before slot exclude
    own = [named[0], SlotRequest(id="side", exclude=["a"])]
    assert DecideRequest(catalog="shop", slots=own, exclude=["a"]).fingerprint() not in (
        slate.fingerprint(),
        DecideRequest(catalog="shop", slots=[own[1], named[0]], exclude=["a"]).fingerprint(),
    )


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


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("colours")) as c:
        assert c.put("/v1/catalogs/colours", json=COLOURS).status_code == 201
        yield c


def decide(client: TestClient, **body: object) -> dict[str, object]:
    r = client.post("/v1/decide", json={"catalog": "colours", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


# Moved from test_stack.py (none needs the broker): (body, status, field)
BAD_INPUT = [
    (b"{not json", 400, "body"),
    (b"[1,2]", 422, "body"),
    (b'{"catalog": "nope"}', 404, "catalog"),
    (b'{"catalog": 5}', 422, "catalog"),
    (b'{"catalog": "colours", "context": {"x": NaN}}', 400, "body"),
    (b'{"catalog": "colours", "context": {"x": 1e400}}', 400, "body"),
    (b'{"catalog": "colours", "context": {"x": 1e300}}', 422, "context.x"),
    (b'{"catalog": "colours", "candidates": ["pink"]}', 422, "candidates[0]"),
    (b'{"catalog": "colours", "colour": 1}', 422, "colour"),
    (b'{"catalog": "colours", "event_id": "a/hero"}', 422, "event_id"),
    (b'{"catalog": "colours", "user_id": "bad\\u0000id"}', 422, "user_id"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_INPUT)
def test_bad_input_gets_problem_json_naming_the_field(
    colours: TestClient, body: bytes, status: int, field: str
) -> None:
    r = colours.post("/v1/decide", content=body, headers={"content-type": "application/json"})
    problem(r, status, field)


@pytest.mark.parametrize(
    ("body", "kind", "title", "fragment"),
    [
        (b"{not json", "malformed-body", "Malformed body", "JSON"),
        (b'{"catalog": "nope"}', "unknown-catalog", "Unknown catalog", "'nope'"),
        (b'{"catalog": 5}', "invalid-input", "Invalid input", "catalog must be a string"),
        (
            b'{"catalog": "colours", "context": {"x": 1e300}}',
            "limit-exceeded",
            "Limit exceeded",
            "max_abs_number",
        ),
        (
            b'{"catalog": "colours", "candidates": ["pink"]}',
            "invalid-input",
            "Invalid input",
            "pink",
        ),
    ],
    ids=["malformed", "unknown catalog", "wrong type", "beyond the limit", "unknown candidate"],
)
def test_a_problem_says_its_type_and_title(
    colours: TestClient, body: bytes, kind: str, title: str, fragment: str
) -> None:
    r = colours.post("/v1/decide", content=body, headers={"content-type": "application/json"})
    found = problem(r, r.status_code, r.json().get("field"), kind=kind, title=title)
    assert fragment in found["detail"], found["detail"]


def test_oversized_body_is_refused_before_it_is_read(colours: TestClient) -> None:
    """Moved from test_stack.py."""
    r = colours.post(
        "/v1/decide", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert "1048576" in r.json()["detail"]


def test_same_event_id_gives_the_same_answer(colours: TestClient) -> None:
    """Moved from test_stack.py."""
    event_id = f"client-{uuid.uuid4().hex}"
    a = decide(colours, context={"x": 1}, event_id=event_id)
    b = decide(colours, context={"x": 1}, event_id=event_id)
    assert a["chosen"] == b["chosen"] and a["ranking"] == b["ranking"] and a["event_id"] == event_id


def test_candidates_restrict_the_ranking(colours: TestClient) -> None:
    """Moved from test_stack.py."""
    d = decide(colours, candidates=["red", "green"], exclude=["green"])
    assert [r["id"] for r in d["ranking"]] == ["red"]  # type: ignore[union-attr]
    assert d["chosen"] == {"id": "red", "probability": 1.0}
