"""Apprentice and logging modes through the API in process: the storefront's baseline is
shown and logged with probability 1, the policy's own draw beside it; apprentice learns
from it and reports agreement and rewards, logging learns nothing; online is one call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.routes import app_client, problem, state_of
from tests.test_experiments_route import logged, train

ACTIONS = [{"id": f"b{i}", "features": {"banner": {"i": i}}} for i in range(4)]
NO_B3 = {"rules": [{"name": "no-b3", "exclude": "action.id == 'b3'"}]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("apprentice")) as c:
        yield c


def put(client: TestClient, name: str, mode: str) -> None:
    body = {"actions": ACTIONS, "mode": mode, "constraints": NO_B3}
    r = client.put(f"/v1/catalogs/{name}", json=body)
    assert r.status_code in (200, 201), r.text


def decide(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/decide", json={"catalog": name, "context": {"u": {"x": 1}}, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_apprentice_shows_the_baseline_learns_from_it_and_reports(client: TestClient) -> None:
    """The storefront rotates b0, b1, b2 and only b1 is clicked: the apprentice learns
    that from the baseline's own decisions, and its draw settles on b1."""
    put(client, "appr", "apprentice")
    st = state_of(client)
    late: list[str] = []
    for n in range(300):
        baseline = f"b{n % 3}"
        d = decide(client, "appr", baseline=baseline, event_id=f"ap-{n}")
        assert d["chosen"] == {"id": baseline, "probability": 1.0} and d["policy"] == "baseline"
        assert d["model_choice"]["id"] in {"b0", "b1", "b2"}  # b3 is ruled out for it too
        record = logged(st, d["event_id"])
        assert record.mode == "apprentice" and record.model_choice == d["model_choice"]["id"]
        assert record.pmf[record.chosen] == 1.0 == record.probability and sum(record.pmf) == 1.0
        train(st, record, float(baseline == "b1"))
        if n >= 240:
            late.append(d["model_choice"]["id"])
    assert late.count("b1") >= 0.8 * len(late), late
    report = client.get("/v1/catalogs/appr/apprentice").json()["report"]
    assert report["decisions"] == 300
    base = report["baseline_reward"]
    assert base["low"] <= 1 / 3 <= base["high"] and base["mean"] == pytest.approx(1 / 3)
    agreement = report["agreement"]
    assert agreement["low"] <= agreement["mean"] <= agreement["high"]
    span = report["policy_reward_range"]
    assert 0.0 <= span["low"] <= span["high"] <= 1.0 and report["verdict"]
    assert st.replica.model_version("appr").endswith(".300")


def test_a_baseline_the_rules_forbid_is_not_shown(client: TestClient) -> None:
    put(client, "forbid", "apprentice")
    d = decide(client, "forbid", baseline="b3")
    assert d["chosen"]["id"] != "b3" and d["fallback"] is True
    assert "baseline 'b3' is not eligible (rule:no-b3)" in d["fallback_reason"]


def test_logging_mode_logs_without_learning_and_online_is_one_call(client: TestClient) -> None:
    put(client, "logonly", "logging")
    st = state_of(client)
    for n in range(20):
        d = decide(client, "logonly", candidates=["b2", "b0"], event_id=f"lo-{n}")
        assert d["chosen"]["id"] == "b2"  # no baseline sent: the first candidate
        train(st, logged(st, d["event_id"]), 0.0)
    assert st.replica.model_version("logonly").endswith(".0")  # asked, never taught
    assert st.replica.counts["logging_only"] >= 20
    r = client.put("/v1/catalogs/logonly/mode", json={"mode": "online"})
    assert r.status_code == 200 and r.json()["mode"] == "online", r.text
    d = decide(client, "logonly")
    assert d["policy"].startswith("vw:") and "model_choice" not in d
    problem(
        client.post("/v1/decide", json={"catalog": "logonly", "baseline": "b1"}), 422, "baseline"
    )


def test_bad_mode_requests_name_the_field(client: TestClient) -> None:
    put(client, "modes", "apprentice")
    problem(client.post("/v1/decide", json={"catalog": "modes", "slots": 2}), 422, "slots")
    problem(client.post("/v1/decide", json={"catalog": "modes", "baseline": "zz"}), 422, "baseline")
    problem(client.put("/v1/catalogs/modes/mode", json={"mode": "auto"}), 422, "mode")
    r = client.put("/v1/catalogs/modes", json={"actions": ACTIONS, "mode": "shadow"})
    problem(r, 422, "mode")
