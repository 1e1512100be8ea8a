"""The operator routes in process: /healthz, /readyz, /metrics, /v1/models/{catalog} and
/v1/events/{event_id}, as far as they answer without a broker (readiness fails: nothing
is connected, and the checks say which)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine.join import training_example
from streams.telemetry import samples
from tests.routes import app_client, logged, problem, state_of

CATALOG = {"actions": [{"id": "a"}, {"id": "b"}]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("ops")) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        yield c


def metrics(client: TestClient) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text, strict=True)


def test_health_answers_while_the_process_runs(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readiness_fails_without_a_broker_and_says_which_checks(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    assert body["checks"] == {
        "broker": False,
        "model": False,
        "stock": False,
        "features": False,
        "peers": False,
    }, "no worker check: the broker is not the embedded one"


def test_metrics_show_the_gauges_and_what_the_routes_counted(client: TestClient) -> None:
    before = metrics(client)
    for name in (
        "loopwise_up_seconds",
        "loopwise_outbox_pending",
        "loopwise_broker_connected",
        "loopwise_ledger_size",
        "loopwise_stock_skus",
        "loopwise_feature_store_users",
        "loopwise_peers_live",
    ):
        assert name in before, name
    assert before["loopwise_broker_connected"] == 0 and before["loopwise_peers_live"] == 0
    assert client.post("/v1/decide", json={"catalog": "shop"}).status_code == 200
    event = {"type": "inventory", "sku": "s", "level": 1}
    assert client.post("/v1/events", json={"events": [event, event]}).status_code == 202
    after = metrics(client)
    assert (
        int(after["loopwise_decisions_total"]) == int(before.get("loopwise_decisions_total", 0)) + 1
    )
    assert int(after["loopwise_events_accepted_total"]) == 2 + int(
        before.get("loopwise_events_accepted_total", 0)
    )
    assert int(after["loopwise_outbox_pending"]) >= int(before["loopwise_outbox_pending"]) + 3
    decided = after["loopwise_decide_seconds_count"] - before["loopwise_decide_seconds_count"]
    assert decided == 1
    assert (
        after['loopwise_decide_seconds_bucket{le="+Inf"}'] == after["loopwise_decide_seconds_count"]
    )


def test_metrics_count_constraint_removals_by_the_rule_that_removed(tmp_path: Path) -> None:
    rules = [
        {"name": "vip-only", "when": "context.segment == 'guest'", "exclude": "action.id == 'a'"},
        {"name": "no-b", "exclude": "action.id == 'b'"},
    ]
    body = {
        "actions": [
            {"id": "a"},
            {"id": "b"},
            {"id": "c"},
        ],
        "constraints": {"rules": rules},
    }
    with app_client(tmp_path) as c:
        assert c.put("/v1/catalogs/ruled", json=body).status_code == 201, "the catalog"
        for segment in ("guest", "guest", "vip"):
            ctx = {"segment": segment}
            assert (
                c.post("/v1/decide", json={"catalog": "ruled", "context": ctx}).status_code == 200
            )
        shown = metrics(c)
    removals = "loopwise_constraint_removals_total"
    assert shown[f'{removals}{{catalog="ruled",reason="rule:vip-only"}}'] == 2
    assert shown[f'{removals}{{catalog="ruled",reason="rule:no-b"}}'] == 3


def test_metrics_latencies_are_histograms_a_quantile_can_be_read_from(client: TestClient) -> None:
    d = client.post("/v1/decide", json={"catalog": "shop"}).json()
    assert (
        client.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1}).status_code == 202
    )
    shown = metrics(client)
    for name in ("loopwise_decide_seconds", "loopwise_reward_seconds"):
        buckets = sorted(
            (float(k.split('le="')[1].rstrip('"}')), v)
            for k, v in shown.items()
            if k.startswith(f"{name}_bucket")
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{name}: buckets are cumulative"
        assert buckets[-1] == (float("inf"), shown[f"{name}_count"]) and counts[-1] >= 1
        assert buckets[0][0] <= 0.0005 and len(buckets) >= 15, "fine enough near the targets"
        assert 0 < shown[f"{name}_sum"] < 10 * shown[f"{name}_count"]


def test_metrics_show_the_workers_counters_from_its_stats_file(client: TestClient) -> None:
    stats = state_of(client).settings.data_dir / "worker-stats.json"
    stats.write_text(
        json.dumps({"counts": {"failed": 2, "decisions": 7}, "pending": 0, "ts": time.time()})
    )
    try:
        shown = metrics(client)
        assert shown["loopwise_join_failed_total"] == 2
        assert shown["loopwise_join_decisions_total"] == 7
        assert shown["loopwise_join_pending"] == 0
        stats.write_text("{not json")  # a torn file: no worker counters, not a 500
        assert not [k for k in metrics(client) if k.startswith("loopwise_join_")]
    finally:
        stats.unlink()


def test_the_model_of_a_catalog(client: TestClient) -> None:
    r = client.get("/v1/models/shop")
    assert r.status_code == 200, r.text
    model = r.json()
    assert (model["catalog"], model["catalog_version"]) == ("shop", 1)
    assert model["policy"] == "vw:regcbopt" and model["learned"] == 0
    assert model["model_version"] == f"{model['generation']}.0"
    assert model["caught_up"] is False and model["freshness_seconds"] == {}
    assert isinstance(model["replica"], dict)


def test_a_models_freshness_is_its_own_catalogs(tmp_path: Path) -> None:
    """Each catalog's freshness counts only its own examples; /metrics has them all."""
    with app_client(tmp_path) as c:
        for name in ("busy", "idle"):
            assert c.put(f"/v1/catalogs/{name}", json=CATALOG).status_code == 201
        st = state_of(c)
        for _ in range(3):
            d = logged(st, c.post("/v1/decide", json={"catalog": "busy"}).json()["event_id"])
            assert st.replica.learn(training_example(d, 1.0, 1, "reward", d.ts))
        busy = c.get("/v1/models/busy").json()
        assert busy["learned"] == 3 and set(busy["freshness_seconds"]) == {"0.5", "0.9", "0.99"}
        assert c.get("/v1/models/idle").json()["freshness_seconds"] == {}
        shown = metrics(c)  # /metrics has every catalog's, labelled
        assert shown['loopwise_reward_to_model_seconds_count{catalog="busy"}'] == 3
        assert 'loopwise_reward_to_model_seconds_count{catalog="idle"}' not in shown


def test_the_model_of_an_unknown_catalog_is_a_404(client: TestClient) -> None:
    found = problem(
        client.get("/v1/models/nope"),
        404,
        "catalog",
        kind="unknown-catalog",
        title="Unknown catalog",
    )
    assert "'nope'" in found["detail"]


def test_event_status_says_whether_this_process_decided_it(client: TestClient) -> None:
    r = client.get("/v1/events/never")
    assert r.status_code == 200
    assert r.json() == {"event_id": "never", "decided": False, "deferred": False, "learned": False}
    one = client.post("/v1/decide", json={"catalog": "shop"}).json()["event_id"]
    assert client.get(f"/v1/events/{one}").json() == {
        "event_id": one,
        "decided": True,
        "deferred": False,
        "learned": False,
    }
    slate = client.post("/v1/decide", json={"catalog": "shop", "slots": [{"id": "hero"}]}).json()
    slot = f"{slate['event_id']}/hero"  # a slot is its own event
    assert client.get(f"/v1/events/{slot}").json()["decided"] is True
