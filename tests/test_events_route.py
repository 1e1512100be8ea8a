"""POST /v1/events and GET /v1/inventory/{sku} in process: typed events, problem+json.

Accepted events wait in the outbox (no broker runs); the stock replica is fed the records
the worker's stock table would write to its changelog.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.requests import BehaviourEvent, Event
from engine import behaviour
from engine.behaviour import BehaviourObserved, Product
from engine.records import InventoryUpdate, decode, encode_stock
from tests.routes import app_client, problem, state_of

INVENTORY = {"type": "inventory", "sku": "sku-1", "level": 3}
VIEW = {"type": "product_view", "user_id": "u-1", "product": {"id": "p-1", "price": 9.5}}
SEARCH = {"type": "search", "user_id": "u-2", "query": "shoes", "session_id": "s-1"}
PURCHASE = {"type": "purchase", "user_id": "u-1", "revenue": 10, "quantity": 2}
TYPES = "inventory, page_view, product_view, search, add_to_cart, remove_from_cart, purchase"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("events")) as c:
        yield c


def sent(client: TestClient, since: int) -> list[tuple[str, bytes, object]]:
    """What the route put in the outbox after its first `since` messages: topic, key and
    the decoded record."""
    pending = list(state_of(client).outbox.pending)[since:]
    return [(p.topic, p.key, decode(p.value)) for p in pending]


def test_one_event_is_typed_and_sent_keyed_by_sku_or_user(client: TestClient) -> None:
    before = len(state_of(client).outbox)
    start = time.time()
    r = client.post("/v1/events", json=INVENTORY)
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    r = client.post("/v1/events", json={**VIEW, "ts": start - 60})
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    (stock_topic, sku, update), (behaviour_topic, user, view) = sent(client, before)
    assert (stock_topic, sku) == ("loopwise-events", b"sku-1")
    assert isinstance(update, InventoryUpdate) and update.level == 3.0
    assert isinstance(update.level, float) and start <= update.ts <= time.time()
    assert (behaviour_topic, user) == ("loopwise-behaviour", b"u-1")
    assert view == BehaviourObserved(
        kind="product_view", user_id="u-1", ts=start - 60, product=Product(id="p-1", price=9.5)
    )


def test_a_mixed_batch_is_accepted_in_order(client: TestClient) -> None:
    before = len(state_of(client).outbox)
    accepted = state_of(client).metrics.counts["events_accepted"]
    batch = {"events": [INVENTORY, VIEW, SEARCH, PURCHASE, {**INVENTORY, "ts": 1000}]}
    r = client.post("/v1/events", json=batch)
    assert r.status_code == 202 and r.json() == {"accepted": 5}
    records = [record for _, _, record in sent(client, before)]
    kinds = [getattr(r, "kind", "inventory") for r in records]
    assert kinds == ["inventory", "product_view", "search", "purchase", "inventory"]
    search, purchase, late = records[2], records[3], records[4]
    assert isinstance(search, BehaviourObserved) and search.session_id == "s-1"
    assert isinstance(purchase, BehaviourObserved)
    assert (purchase.revenue, purchase.quantity) == (10.0, 2.0)
    assert isinstance(late, InventoryUpdate) and late.ts == 1000.0
    assert state_of(client).metrics.counts["events_accepted"] == accepted + 5


def test_a_batch_is_validated_whole_before_any_event_is_accepted(client: TestClient) -> None:
    before = len(state_of(client).outbox)
    accepted = state_of(client).metrics.counts["events_accepted"]
    batch = {"events": [INVENTORY, VIEW, {**SEARCH, "query": ""}]}
    problem(client.post("/v1/events", json=batch), 422, "events[2].query", kind="invalid-input")
    assert len(state_of(client).outbox) == before
    assert state_of(client).metrics.counts["events_accepted"] == accepted


# (name, body, status, field, type slug, fragment of the detail)
INVALID: list[tuple[str, object, int, str, str, str]] = [
    # moved from test_stack.py (they need no broker)
    ("empty batch", {"events": []}, 422, "events", "invalid-input", "non-empty array"),
    ("level not a number", {**INVENTORY, "level": "x"}, 422, "level", "invalid-input", "number"),
    ("unknown type", {"type": "teleport"}, 422, "type", "invalid-input", "inventory"),
    # the type picks the fields
    ("no type", {"sku": "s", "level": 1}, 422, "type", "invalid-input", f"one of {TYPES}"),
    ("type a number", {**INVENTORY, "type": 3}, 422, "type", "invalid-input", "got an integer"),
    ("type unknown", {"type": "click"}, 422, "type", "invalid-input", f"{TYPES}, got 'click'"),
    (
        "batch type",
        {"events": [INVENTORY, {"type": "x"}]},
        422,
        "events[1].type",
        "invalid-input",
        "got 'x'",
    ),
    # inventory
    ("no sku", {"type": "inventory", "level": 1}, 422, "sku", "invalid-input", "sku is required"),
    ("no level", {"type": "inventory", "sku": "s"}, 422, "level", "invalid-input", "is required"),
    ("sku empty", {**INVENTORY, "sku": ""}, 422, "sku", "invalid-input", "1-128 printable"),
    ("sku control", {**INVENTORY, "sku": "a\nb"}, 422, "sku", "invalid-input", "printable"),
    ("sku too long", {**INVENTORY, "sku": "s" * 129}, 422, "sku", "invalid-input", "1-128"),
    (
        "level boolean",
        {**INVENTORY, "level": True},
        422,
        "level",
        "invalid-input",
        "level must be a number, got a boolean",
    ),
    (
        "level beyond",
        {**INVENTORY, "level": 1e13},
        422,
        "level",
        "limit-exceeded",
        "max_abs_number of +/-1e+12",
    ),
    ("ts a string", {**INVENTORY, "ts": "now"}, 422, "ts", "invalid-input", "must be a number"),
    (
        "inventory extra",
        {**INVENTORY, "user_id": "u"},
        422,
        "user_id",
        "invalid-input",
        "user_id is not a known field",
    ),
    # behaviour, in a batch: the path names the item
    (
        "no user",
        {"events": [INVENTORY, {"type": "page_view"}]},
        422,
        "events[1].user_id",
        "invalid-input",
        "events[1].user_id is required",
    ),
    (
        "no product",
        {"events": [{"type": "add_to_cart", "user_id": "u"}]},
        422,
        "events[0].product",
        "invalid-input",
        "required for add_to_cart",
    ),
    (
        "price negative",
        {"events": [{**VIEW, "product": {"id": "p", "price": -1}}]},
        422,
        "events[0].product.price",
        "invalid-input",
        "must be >= 0",
    ),
    (
        "price beyond",
        {**VIEW, "product": {"id": "p", "price": 2e12}},
        422,
        "product.price",
        "limit-exceeded",
        "max_abs_number",
    ),
    (
        "revenue on a view",
        {**VIEW, "revenue": 0},
        422,
        "revenue",
        "invalid-input",
        "only for purchase events, not product_view",
    ),
    ("ts too old", {**VIEW, "ts": 1000}, 422, "ts", "invalid-input", "within the last 7 days"),
    (
        "product unknown field",
        {**VIEW, "product": {"id": "p", "size": 9}},
        422,
        "product.size",
        "invalid-input",
        "product.size is not a known field",
    ),
    (
        "batch and more",
        {"events": [INVENTORY], "source": "x"},
        422,
        "source",
        "invalid-input",
        "is not a known field",
    ),
    (
        "batch too long",
        {"events": [INVENTORY] * 1001},
        422,
        "events",
        "limit-exceeded",
        "events has 1001 entries, more than the limit of 1000",
    ),
    (
        "item not an object",
        {"events": [INVENTORY, 7]},
        422,
        "events[1]",
        "invalid-input",
        "events[1] must be an object",
    ),
    ("body not an object", [INVENTORY], 422, "body", "invalid-input", "must be a JSON object"),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "kind", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_bad_events_get_problem_json_naming_the_field(
    client: TestClient, body: object, status: int, field: str, kind: str, fragment: str
) -> None:
    title = {"invalid-input": "Invalid input", "limit-exceeded": "Limit exceeded"}[kind]
    found = problem(client.post("/v1/events", json=body), status, field, kind=kind, title=title)
    assert fragment in found["detail"], found["detail"]
    assert found["detail"].startswith(f"{field} ") or field == "body", found["detail"]


@pytest.mark.parametrize(
    ("content", "status", "kind"),
    [
        (b'{"type": "inventory", "sku": "s", "level": 1', 400, "malformed-body"),
        (b'{"type": "inventory", "sku": "s", "level": NaN}', 400, "malformed-body"),
        (
            b'{"type": "inventory", "type": "inventory", "sku": "s", "level": 1}',
            422,
            "invalid-input",
        ),
    ],
    ids=["truncated", "NaN", "duplicate key"],
)
def test_bodies_that_are_not_one_json_object_are_refused(
    client: TestClient, content: bytes, status: int, kind: str
) -> None:
    r = client.post("/v1/events", content=content, headers={"content-type": "application/json"})
    found = problem(r, status, "type" if status == 422 else "body", kind=kind)
    assert found["detail"]


def test_an_oversized_body_is_refused_by_its_length(client: TestClient) -> None:
    body = json.dumps({"events": [INVENTORY] * 40_000}).encode()
    r = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    found = problem(r, 413, "body", kind="payload-too-large", title="Payload too large")
    assert "1048576" in found["detail"]


def test_the_request_types_are_the_engines_behaviour_types() -> None:
    """One Struct per behaviour type: a type added to the engine needs its Struct."""
    tags = [t.__struct_config__.tag for t in typing.get_args(BehaviourEvent)]
    assert tags == list(behaviour.TYPES)
    assert [t.__struct_config__.tag for t in typing.get_args(Event)] == ["inventory", *tags]


def test_a_full_outbox_refuses_events_with_503(tmp_path: Path) -> None:
    with app_client(tmp_path, outbox_capacity=2) as c:
        assert c.post("/v1/events", json={"events": [INVENTORY, VIEW]}).status_code == 202
        r = c.post("/v1/events", json=SEARCH)
        found = problem(r, 503, None, kind="unavailable", title="Service unavailable")
        assert "outbox is full" in found["detail"] and r.headers["Retry-After"] == "5"
        assert state_of(c).outbox.refused == 1 and len(state_of(c).outbox) == 2


def test_inventory_answers_the_level_the_stock_replica_holds(client: TestClient) -> None:
    sku = "SKU-7"
    found = problem(client.get(f"/v1/inventory/{sku}"), 404, "sku", kind="unknown-sku")
    assert "SKU-7" in found["detail"]
    stock = state_of(client).stock
    stock.apply(0, 0, sku.encode(), encode_stock(4.0, 1000.5))  # as the worker's changelog
    r = client.get(f"/v1/inventory/{sku}")
    assert r.status_code == 200 and r.json() == {"sku": sku, "level": 4.0, "ts": 1000.5}
    stock.apply(0, 1, sku.encode(), None)  # a tombstone: the SKU is gone
    problem(client.get(f"/v1/inventory/{sku}"), 404, "sku", kind="unknown-sku")
