"""LinUCB and Thompson through the API in process, wherever a catalog names learning
settings: as the catalog's own policy (shown resolved, deciding with exact propensities,
learning through the replica) and as experiment arms beside a frozen one, every learning
arm learning from all traffic. No broker runs: the test hands the replica the training
examples the worker would emit (as tests/test_experiments_route.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from api.serving.state import State
from engine.experiment import arm_model
from engine.join import training_example
from tests.routes import app_client, logged, problem, state_of

ACTIONS = [{"id": f"b{i}", "features": {"banner": {"i": i}}} for i in range(4)]
# the click rate of each action (column) for each segment (row): each segment has its best
TRUTH = np.array(
    [[0.1, 0.7, 0.2, 0.1], [0.6, 0.1, 0.1, 0.2], [0.1, 0.1, 0.1, 0.8], [0.2, 0.2, 0.7, 0.1]]
)
LINUCB = {"policy": "linucb", "linucb": {"alpha": 0.5}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("numpy-policies")) as c:
        yield c


def put(client: TestClient, name: str, **body: object) -> dict[str, Any]:
    r = client.put(f"/v1/catalogs/{name}", json={"actions": ACTIONS, **body})
    assert r.status_code in (200, 201), r.text
    answer: dict[str, Any] = r.json()
    return answer


def play(client: TestClient, catalog: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` decisions for visitors of random segments, each checked for an exact logged
    probability and learned with a reward drawn from TRUTH; the answers."""
    st = state_of(client)
    rng = np.random.default_rng(seed)
    answers = []
    for k in range(n):
        segment = int(rng.integers(len(TRUTH)))
        body = {
            "catalog": catalog,
            "user_id": f"{catalog}-{k}",
            "event_id": f"{catalog}-{seed}-{k}",
            "context": {"user": {"segment": str(segment)}},
        }
        r = client.post("/v1/decide", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        record = logged(st, answer["event_id"])
        shown = record.eligible[record.chosen]
        assert answer["chosen"] == {"id": shown, "probability": record.probability}
        assert record.probability == record.pmf[record.chosen] > 0.0, record
        assert abs(sum(record.pmf) - 1.0) < 1e-9
        reward = float(rng.random() < TRUTH[segment, int(shown[1:])])
        st.replica.learn(training_example(record, reward, 1, "reward", record.ts))
        answers.append(answer)
    return answers


def best_per_segment(st: State, catalog: str, model: str) -> list[int]:
    """The action the model's pmf favours for each segment."""
    c = st.catalogs.latest(catalog)
    policy = st.replica.models[model].policy
    return [
        int(np.argmax(policy.distribution({"user": {"segment": str(s)}}, c.actions)))
        for s in range(len(TRUTH))
    ]


def test_a_linucb_catalog_shows_its_settings_decides_and_learns(client: TestClient) -> None:
    shown = put(client, "lin", learning=LINUCB)["learning"]
    assert shown["policy"] == "linucb" and "exploration" not in shown
    assert shown["linucb"] == {"alpha": 0.5, "epsilon": 0.05, "dim": 64, "ridge": 1.0}
    assert client.get("/v1/catalogs/lin").json()["learning"] == shown
    answers = play(client, "lin", 400, seed=1)
    assert {a["policy"] for a in answers} == {"linucb"}
    model = client.get("/v1/models/lin").json()
    assert model["policy"] == "linucb" and model["learned"] == 400
    st = state_of(client)
    assert best_per_segment(st, "lin", "lin") == list(TRUTH.argmax(axis=1))
    revenue = client.post("/v1/rewards", json={"event_id": answers[0]["event_id"], "value": 30})
    assert revenue.status_code == 202 and "warning" not in revenue.json()  # learned as given
    bad = {"actions": ACTIONS, "learning": {**LINUCB, "interactions": ["ca"]}}
    problem(client.put("/v1/catalogs/lin", json=bad), 422, "learning.interactions")
    bad = {"actions": ACTIONS, "learning": {"policy": "linucb", "linucb": {"dim": 1}}}
    problem(client.put("/v1/catalogs/lin", json=bad), 422, "learning.linucb.dim")


EXPERIMENT = {
    "name": "numpy",
    "seed": 3,
    "arms": [
        {"name": "model", "share": 0.4},
        {"name": "lin", "share": 0.3, "policy": {"learning": LINUCB}},
        {"name": "frozen", "share": 0.3, "policy": "frozen"},
    ],
}


def test_numpy_arms_learn_from_all_traffic_beside_a_frozen_thompson(client: TestClient) -> None:
    """A Thompson catalog learns 100 decisions, then runs an experiment: its own model,
    a LinUCB arm learning from every decision, and its model frozen as it was when the
    arm first decided."""
    put(client, "ts", learning={"policy": "thompson", "thompson": {"draws": 256}})
    play(client, "ts", 100, seed=2)
    put(
        client,
        "ts",
        learning={"policy": "thompson", "thompson": {"draws": 256}},
        experiment=EXPERIMENT,
    )
    shown = client.get("/v1/catalogs/ts/experiment").json()["arms"][1]["policy"]
    assert shown["learning"]["linucb"] == {"alpha": 0.5, "epsilon": 0.05, "dim": 64, "ridge": 1.0}
    answers = play(client, "ts", 300, seed=3)
    policies = {a["experiment"]["arm"]: a["policy"] for a in answers}
    assert policies == {"model": "thompson", "lin": "linucb", "frozen": "thompson"}
    models = state_of(client).replica.models
    assert models["ts"].policy.learned == 400  # version 2 kept the model: same settings
    assert models[arm_model("ts", "lin")].policy.learned == 300  # all traffic, not its share
    first = next(i for i, a in enumerate(answers) if a["experiment"]["arm"] == "frozen")
    assert models[arm_model("ts", "frozen")].policy.learned == 100 + first  # as it first decided
    revenue = client.post("/v1/rewards", json={"event_id": answers[0]["event_id"], "value": 30})
    warning = revenue.json()["warning"]
    assert "Thompson" in warning and "learned as 1" in warning, warning
    arm = {"name": "x", "policy": {"learning": {"policy": "thompson", "thompson": {"draws": 0}}}}
    bad = {**EXPERIMENT, "arms": [{"name": "model"}, arm]}
    field = "experiment.arms[1].policy.learning.thompson.draws"
    problem(client.put("/v1/catalogs/ts/experiment", json=bad), 422, field)
