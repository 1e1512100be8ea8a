"""Failover through the API in process: the safe policy answers every decision, flagged
with its reason, while the model is over budget, forced off, or not loaded; GET and PUT
/v1/catalogs/{name}/failover show and reverse it; /metrics counts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from engine.records import DecisionLogged, decode
from streams.telemetry import samples
from tests.routes import app_client, problem, state_of

ACTIONS = [{"id": f"b{i}", "features": {"banner": {"i": i}}} for i in range(5)]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("failover")) as c:
        yield c


def put(client: TestClient, name: str, failover: dict[str, object], **extra: object) -> None:
    body = {"actions": ACTIONS, "failover": failover, **extra}
    r = client.put(f"/v1/catalogs/{name}", json=body)
    assert r.status_code in (200, 201), r.text


def decide(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/decide", json={"catalog": name, "context": {"u": {"x": 1}}, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_forced_failover_is_one_call_each_way(client: TestClient) -> None:
    # no exploration floor: the safe policy's own one-hot answers, slate included
    priority = {"safe_policy": "priority", "priority": ["b3", "b1"]}
    put(client, "forced", priority, constraints={"exploration_floor": 0})
    assert decide(client, "forced")["fallback"] is False
    r = client.put("/v1/catalogs/forced/failover", json={"mode": "safe", "reason": "incident 7"})
    assert r.status_code == 200 and r.json()["breaker"]["state"] == "forced", r.text
    for _ in range(5):
        d = decide(client, "forced")
        assert d["fallback"] is True and d["policy"] == "safe:priority"
        assert d["chosen"] == {"id": "b3", "probability": 1.0}
        assert "incident 7" in d["fallback_reason"]
    slate = decide(client, "forced", slots=2)
    assert [s["chosen"]["id"] for s in slate["slots"]] == ["b3", "b1"]
    shown = client.get("/v1/catalogs/forced/failover").json()
    assert shown["failovers"]["forced"] == 7 and shown["model"] == "serving"
    metrics = samples(client.get("/metrics").text, strict=True)
    assert metrics['loopwise_failovers_total{catalog="forced",cause="forced"}'] == 7
    assert metrics['loopwise_breaker_open{catalog="forced"}'] == 1
    back = client.put("/v1/catalogs/forced/failover", json={"mode": "auto"})
    assert back.json()["breaker"]["state"] == "closed"
    d = decide(client, "forced")
    assert d["fallback"] is False and "fallback_reason" not in d


def test_a_model_over_its_latency_budget_trips_to_the_safe_policy(client: TestClient) -> None:
    put(client, "slow", {"latency_budget_ms": 0.001, "trip_after": 3, "cooldown_seconds": 3600})
    answers = [decide(client, "slow") for _ in range(8)]
    assert [a["fallback"] for a in answers] == [False] * 3 + [True] * 5
    assert all(a["policy"] == "safe:uniform" for a in answers[3:])
    assert "over the latency budget of 0.001 ms" in answers[3]["fallback_reason"]
    for a in answers[3:]:  # the uniform safe policy: exact, equal probabilities
        assert {r["probability"] for r in a["ranking"]} == {0.2}
    state = client.get("/v1/catalogs/slow/failover").json()
    assert state["breaker"]["state"] == "open" and state["breaker"]["trips"] == 1
    assert state["over_budget"] == 3 and state["failovers"]["breaker_open"] == 5
    assert client.put("/v1/catalogs/slow/failover", json={"mode": "auto"}).status_code == 200
    assert decide(client, "slow")["fallback"] is False  # closed again, tries the model


def test_a_fallback_is_logged_with_its_reason(client: TestClient) -> None:
    put(client, "logged", {})
    client.put("/v1/catalogs/logged/failover", json={"mode": "safe", "reason": "audit"})
    d = decide(client, "logged", event_id="ev-fallback-1")
    logged = [decode(p.value) for p in state_of(client).outbox.pending if p.key == b"ev-fallback-1"]
    assert len(logged) == 1 and isinstance(logged[0], DecisionLogged)
    assert logged[0].fallback and logged[0].policy == "safe:uniform"
    assert logged[0].fallback_reason == "failover forced by an operator: audit"
    assert d["fallback"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "off"}, "mode"),
        ({}, "mode"),
        ({"mode": "safe", "reason": "x" * 513}, "reason"),
        ({"mode": "safe", "until": 5}, "until"),
    ],
)
def test_bad_failover_requests_name_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    put(client, "bad", {})
    problem(client.put("/v1/catalogs/bad/failover", json=body), 422, field)


def test_unknown_catalog_is_404(client: TestClient) -> None:
    problem(client.get("/v1/catalogs/nope/failover"), 404, "catalog")


def test_after_a_refused_checkpoint_every_decision_answers_from_the_safe_policy(
    tmp_path: Path,
) -> None:
    """The checkpoint is unreadable and no broker is there to replay the training log
    from: the model cannot serve, and every decision still answers 200."""
    with app_client(tmp_path) as c:
        put(c, "shop", {"safe_policy": "first"}, constraints={"exploration_floor": 0})
    ckpt = tmp_path / "api" / "model.ckpt"
    ckpt.write_bytes(b"not a checkpoint" * 100)
    with app_client(tmp_path) as c:
        for n in range(20):
            d = decide(c, "shop", slots=2 if n % 2 else None)
            slots = d.get("slots", [d])
            assert all(s["fallback"] for s in slots), d
            assert all("the checkpoint was refused" in s["fallback_reason"] for s in slots)
            assert slots[0]["chosen"]["id"] == "b0"
        state = c.get("/v1/catalogs/shop/failover").json()
        assert (
            state["model"].startswith("model not loaded") and state["failovers"]["not_loaded"] == 30
        )
        assert (
            samples(c.get("/metrics").text, strict=True)[
                "loopwise_replica_corrupt_checkpoints_total"
            ]
            == 1
        )
