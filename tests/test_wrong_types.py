"""Every field of every body is type-checked: a wrong type is a 4xx naming the field
(issue 22, defect 5). POST /v1/decide has its own table in test_decide_route.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from streams.broker import free_port
from streams.settings import Settings

ACTIONS = [{"id": "a0", "features": {"x": {"i": 0}}}, {"id": "a1", "features": {"x": {"i": 1}}}]
REWARD = {"event_id": "e-1", "value": 1.0}
INVENTORY = {"type": "inventory", "sku": "sku-1", "level": 3}
VIEW = {"type": "product_view", "user_id": "u-1", "product": {"id": "p-1"}}
SEARCH = {"type": "search", "user_id": "u-1", "query": "shoes"}
PURCHASE = {"type": "purchase", "user_id": "u-1", "revenue": 10.0}
CAP = {"name": "c", "limit": 2, "window_seconds": 60, "actions": ["a0"]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("wrong-types")
    settings = Settings(data_dir=data, broker=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as c:
        yield c


def check(r: httpx.Response, field: str) -> None:
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field, r.json()


REWARDS = [
    ({"event_id": 7}, "event_id"),
    ({"event_id": ["e-1"]}, "event_id"),
    ({"event_id": None}, "event_id"),
    ({"value": "1"}, "value"),
    ({"value": True}, "value"),
    ({"value": None}, "value"),
    ({"value": [1]}, "value"),
    ({"value": {"v": 1}}, "value"),
    ({"reward_id": 5}, "reward_id"),
    ({"reward_id": {"r": 1}}, "reward_id"),
    ({"slot": True}, "slot"),
    ({"slot": 1.5}, "slot"),
    ({"slot": [0]}, "slot"),
    ({"slot": {"id": 0}}, "slot"),
    ({"unknown": 1}, "unknown"),
]


@pytest.mark.parametrize(("change", "field"), REWARDS)
def test_every_field_of_a_reward_is_type_checked(
    client: TestClient, change: dict[str, object], field: str
) -> None:
    check(client.post("/v1/rewards", json={**REWARD, **change}), field)
    batch = {"rewards": [REWARD, {**REWARD, **change}]}
    check(client.post("/v1/rewards", json=batch), f"rewards[1].{field}")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rewards": "e-1"}, "rewards"),
        ({"rewards": {"event_id": "e-1"}}, "rewards"),
        ({"rewards": ["e-1"]}, "rewards[0]"),
        ({"rewards": [None]}, "rewards[0]"),
    ],
)
def test_a_reward_batch_is_type_checked(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    check(client.post("/v1/rewards", json=body), field)


EVENTS = [
    (INVENTORY, {"type": 3}, "type"),
    (INVENTORY, {"sku": 5}, "sku"),
    (INVENTORY, {"sku": ["sku-1"]}, "sku"),
    (INVENTORY, {"level": "3"}, "level"),
    (INVENTORY, {"level": True}, "level"),
    (INVENTORY, {"level": None}, "level"),
    (INVENTORY, {"ts": "now"}, "ts"),
    (INVENTORY, {"ts": [1]}, "ts"),
    (INVENTORY, {"unknown": 1}, "unknown"),
    (VIEW, {"type": ["product_view"]}, "type"),
    (VIEW, {"user_id": 1}, "user_id"),
    (VIEW, {"user_id": {"id": "u"}}, "user_id"),
    (VIEW, {"session_id": 1}, "session_id"),
    (VIEW, {"event_id": 1}, "event_id"),
    (VIEW, {"ts": "yesterday"}, "ts"),
    (VIEW, {"ts": True}, "ts"),
    (VIEW, {"product": "p-1"}, "product"),
    (VIEW, {"product": ["p-1"]}, "product"),
    (VIEW, {"product": {"id": 1}}, "product.id"),
    (VIEW, {"product": {"id": "p", "category": 1}}, "product.category"),
    (VIEW, {"product": {"id": "p", "brand": ["b"]}}, "product.brand"),
    (VIEW, {"product": {"id": "p", "price": "9.99"}}, "product.price"),
    (VIEW, {"product": {"id": "p", "price": False}}, "product.price"),
    (VIEW, {"product": {"id": "p", "size": 9}}, "product.size"),
    (VIEW, {"quantity": "2"}, "quantity"),
    (VIEW, {"quantity": True}, "quantity"),
    (VIEW, {"device": 1}, "device"),
    (VIEW, {"channel": {"c": 1}}, "channel"),
    (SEARCH, {"query": 1}, "query"),
    (SEARCH, {"query": ["shoes"]}, "query"),
    (PURCHASE, {"revenue": "10"}, "revenue"),
    (PURCHASE, {"revenue": None, "quantity": [1]}, "quantity"),
    (VIEW, {"unknown": 1}, "unknown"),
]


@pytest.mark.parametrize(("event", "change", "field"), EVENTS)
def test_every_field_of_an_event_is_type_checked(
    client: TestClient, event: dict[str, object], change: dict[str, object], field: str
) -> None:
    check(client.post("/v1/events", json={**event, **change}), field)
    batch = {"events": [INVENTORY, {**event, **change}]}
    check(client.post("/v1/events", json=batch), f"events[1].{field}")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": "x"}, "events"),
        ({"events": [7]}, "events[0]"),
        ({"events": [["inventory"]]}, "events[0]"),
    ],
)
def test_an_event_batch_is_type_checked(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    check(client.post("/v1/events", json=body), field)


CATALOG_FIELDS = [
    ({"name": 5}, "name"),
    ({"actions": "a0"}, "actions"),
    ({"actions": {"a0": {}}}, "actions"),
    ({"actions": ["a0"]}, "actions[0]"),
    ({"actions": [{"id": 5}]}, "actions[0].id"),
    ({"actions": [{"id": ["a0"]}]}, "actions[0].id"),
    ({"actions": [{"id": "a0", "features": "red"}]}, "actions[0].features"),
    ({"actions": [{"id": "a0", "features": ["red"]}]}, "actions[0].features"),
    ({"actions": [{"id": "a0", "features": {"x": {"i": [1]}}}]}, "actions[0].features.x.i[0]"),
    ({"actions": [{"id": "a0", "metadata": "m"}]}, "actions[0].metadata"),
    ({"actions": [{"id": "a0", "metadata": ["m"]}]}, "actions[0].metadata"),
    ({"learning": "vw"}, "learning"),
    ({"learning": {"policy": 1}}, "learning.policy"),
    ({"learning": {"exploration": "squarecb"}}, "learning.exploration"),
    ({"learning": {"exploration": {"algorithm": 1}}}, "learning.exploration.algorithm"),
    (
        {"learning": {"exploration": {"algorithm": "epsilon", "epsilon": "0.1"}}},
        "learning.exploration.epsilon",
    ),
    (
        {"learning": {"exploration": {"algorithm": "bag", "bag": True}}},
        "learning.exploration.bag",
    ),
    ({"learning": {"interactions": "ca"}}, "learning.interactions"),
    ({"learning": {"interactions": [1]}}, "learning.interactions[0]"),
    ({"learning": {"reward_wait_seconds": "10"}}, "learning.reward_wait_seconds"),
    ({"learning": {"reward_wait_seconds": None}}, "learning.reward_wait_seconds"),
    ({"learning": {"default_reward": "0"}}, "learning.default_reward"),
    ({"learning": {"aggregation": 1}}, "learning.aggregation"),
    ({"learning": {"optimizer": True}}, "learning.optimizer"),
    ({"constraints": "none"}, "constraints"),
    ({"constraints": {"exploration_floor": "0.1"}}, "constraints.exploration_floor"),
    ({"constraints": {"rules": {"name": "r"}}}, "constraints.rules"),
    ({"constraints": {"rules": ["r"]}}, "constraints.rules[0]"),
    ({"constraints": {"rules": [{"name": 1, "exclude": "true"}]}}, "constraints.rules[0].name"),
    ({"constraints": {"rules": [{"name": "r", "exclude": 1}]}}, "constraints.rules[0].exclude"),
    (
        {"constraints": {"rules": [{"name": "r", "when": 1, "exclude": "true"}]}},
        "constraints.rules[0].when",
    ),
    ({"constraints": {"schedules": ["a0"]}}, "constraints.schedules"),
    ({"constraints": {"schedules": {"a0": "2026"}}}, "constraints.schedules.a0"),
    ({"constraints": {"schedules": {"a0": {"start": 1}}}}, "constraints.schedules.a0.start"),
    (
        {"constraints": {"schedules": {"a0": {"end": "2026-01-01T00:00:00Z", "timezone": 1}}}},
        "constraints.schedules.a0.timezone",
    ),
    ({"constraints": {"inventory": "sku"}}, "constraints.inventory"),
    ({"constraints": {"inventory": {"sku_field": 1}}}, "constraints.inventory.sku_field"),
    (
        {"constraints": {"inventory": {"sku_field": "sku", "threshold": "1"}}},
        "constraints.inventory.threshold",
    ),
    (
        {"constraints": {"inventory": {"sku_field": "sku", "unknown": False}}},
        "constraints.inventory.unknown",
    ),
    ({"constraints": {"frequency_caps": CAP}}, "constraints.frequency_caps"),
    (
        {"constraints": {"frequency_caps": [{**CAP, "name": 1}]}},
        "constraints.frequency_caps[0].name",
    ),
    (
        {"constraints": {"frequency_caps": [{**CAP, "limit": "2"}]}},
        "constraints.frequency_caps[0].limit",
    ),
    (
        {"constraints": {"frequency_caps": [{**CAP, "limit": True}]}},
        "constraints.frequency_caps[0].limit",
    ),
    (
        {"constraints": {"frequency_caps": [{**CAP, "window_seconds": "60"}]}},
        "constraints.frequency_caps[0].window_seconds",
    ),
    (
        {"constraints": {"frequency_caps": [{**CAP, "actions": "a0"}]}},
        "constraints.frequency_caps[0].actions",
    ),
    (
        {"constraints": {"frequency_caps": [{**CAP, "actions": [0]}]}},
        "constraints.frequency_caps[0].actions[0]",
    ),
    ({"constraints": {"pinned": 0}}, "constraints.pinned"),
    ({"constraints": {"pinned": ["a0"]}}, "constraints.pinned"),
    ({"constraints": {"boost": ["a0"]}}, "constraints.boost"),
    ({"constraints": {"boost": {"a0": "2"}}}, "constraints.boost.a0"),
    ({"constraints": {"fallback": "a0"}}, "constraints.fallback"),
    ({"constraints": {"fallback": {"action": 0}}}, "constraints.fallback.action"),
    ({"constraints": {"fallback": {"empty": "yes"}}}, "constraints.fallback"),
    ({"constraints": {"fallback": {"empty": True, "reason": 1}}}, "constraints.fallback.reason"),
    ({"constraints": {"diversity": 2}}, "constraints.diversity"),
    ({"constraints": {"diversity": {"max_per": 2}}}, "constraints.diversity.max_per"),
    (
        {"constraints": {"diversity": {"max_per": {"brand": "2"}}}},
        "constraints.diversity.max_per.brand",
    ),
    ({"features": "recent"}, "features"),
    ({"features": [1]}, "features[0]"),
    ({"features": [{"name": 1}]}, "features[0].name"),
    ({"features": [{"name": "views", "key": 1}]}, "features[0].key"),
    ({"features": [{"name": "views", "aggregation": 1}]}, "features[0].aggregation"),
    ({"version": "latest"}, "version"),
    ({"version": True}, "version"),
    ({"updated_at": "now"}, "updated_at"),
    ({"unknown": 1}, "unknown"),
]


@pytest.mark.parametrize(("change", "field"), CATALOG_FIELDS)
def test_every_field_of_a_catalog_is_type_checked(
    client: TestClient, change: dict[str, object], field: str
) -> None:
    body = {"actions": ACTIONS, **change}
    check(client.put("/v1/catalogs/wrong", json=body), field)


def test_the_valid_bodies_of_these_tables_are_accepted(client: TestClient) -> None:
    """The tables change one field of a valid body: the body itself must pass."""
    assert client.put("/v1/catalogs/right", json={"actions": ACTIONS}).status_code == 201
    with_constraints = {
        "actions": ACTIONS,
        "constraints": {"frequency_caps": [CAP], "inventory": {"sku_field": "sku"}},
    }
    assert client.put("/v1/catalogs/right", json=with_constraints).status_code == 200
    for event in (INVENTORY, VIEW, SEARCH, PURCHASE):
        r = client.post("/v1/events", json=event)
        assert r.status_code == 202, r.text
    r = client.post("/v1/rewards", json=REWARD)  # never decided: pending, or unknown
    assert r.status_code == 202 or (r.status_code, r.json()["field"]) == (404, "event_id")
