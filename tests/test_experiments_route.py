"""Experiments through the API in process: arms attached, re-weighted, paused and ended
over HTTP as catalog versions; sticky arms in every answer and the log; results and
their picture from what the replica learned; every learning arm learns from all traffic.
No broker runs: the test hands the replica the training examples the worker would emit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from api.serving.state import State
from engine.experiment import arm_model
from engine.features import flatten
from engine.join import training_example
from engine.learning import DEFAULT_FLOOR
from engine.limits import Limits
from engine.records import DecisionLogged
from tests.routes import app_client, logged, problem, state_of

ACTIONS = [{"id": f"b{i}", "features": {"banner": {"i": i}}} for i in range(4)]
EPSILON = {"learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.2}}}
EXPERIMENT = {
    "name": "hero-ab",
    "seed": 11,
    "arms": [
        {"name": "model", "share": 0.6},
        {"name": "rule", "share": 0.2, "policy": {"rule": "priority", "priority": ["b2"]}},
        {"name": "eps", "share": 0.2, "policy": EPSILON},
    ],
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("experiments")) as c:
        yield c


def put_catalog(client: TestClient, name: str, **extra: object) -> None:
    r = client.put(f"/v1/catalogs/{name}", json={"actions": ACTIONS, **extra})
    assert r.status_code in (200, 201), r.text


def decide(client: TestClient, name: str, user: str, **extra: Any) -> dict[str, Any]:
    body = {"catalog": name, "user_id": user, "context": {"user": {"segment": user[-1]}}}
    r = client.post("/v1/decide", json={**body, **extra})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def train(st: State, d: DecisionLogged, reward: float) -> None:
    """What the worker emits once the decision's reward window closed."""
    st.replica.learn(training_example(d, reward, 1, "reward", d.ts))


def test_an_experiment_assigns_sticky_arms_logged_with_their_probability(
    client: TestClient,
) -> None:
    put_catalog(client, "ab")
    r = client.put("/v1/catalogs/ab/experiment", json=EXPERIMENT)
    assert r.status_code == 200 and r.json()["catalog_version"] == 2, r.text
    seen: dict[str, str] = {}
    for n in range(300):
        user = f"u{n % 60}"
        d = decide(client, "ab", user)
        arm = d["experiment"]["arm"]
        assert seen.setdefault(user, arm) == arm  # sticky
        record = logged(state_of(client), d["event_id"])
        assert record.arm == arm and record.experiment == "hero-ab"
        share = {"model": 0.6, "rule": 0.2, "eps": 0.2}[arm]
        assert record.arm_probability == pytest.approx(share)
        assert record.probability == pytest.approx(record.pmf[record.chosen])
        if arm == "rule":
            # the rule's choice, under the catalog's default exploration floor
            assert d["policy"] == "rule:priority"
            floored = 1 - DEFAULT_FLOOR + DEFAULT_FLOOR / len(ACTIONS)
            assert d["ranking"][0]["id"] == "b2"
            assert d["ranking"][0]["probability"] == pytest.approx(floored)
        if arm == "eps":
            assert d["policy"] == "vw:epsilon" and min(x["probability"] for x in d["ranking"]) > 0
    assert set(seen.values()) == {"model", "rule", "eps"}
    paused = client.patch("/v1/catalogs/ab/experiment/arms/rule", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["catalog_version"] == 3, paused.text
    for user, arm in seen.items():
        now = decide(client, "ab", user)["experiment"]["arm"]
        assert now != "rule" and (arm == "rule" or now == arm)
    assert client.get("/v1/catalogs/ab").json()["version"] == 3


def test_results_and_their_picture_come_from_the_learned_examples(client: TestClient) -> None:
    put_catalog(client, "res", experiment=EXPERIMENT)
    st = state_of(client)
    for n in range(600):
        d = decide(client, "res", f"r{n}", event_id=f"res-{n}")
        record = logged(st, d["event_id"])
        train(st, record, 1.0 if record.arm == "rule" else 0.0)
    report = client.get("/v1/catalogs/res/experiment/results").json()
    rows = {r["arm"]: r for r in report["arms"]}
    assert sum(r["decisions"] for r in rows.values()) == 600
    assert rows["rule"]["mean"] == 1.0 and rows["model"]["mean"] == 0.0
    assert rows["rule"]["difference"]["low"] > 0.5  # clearly better than control
    assert rows["eps"]["difference"]["low"] <= 0.0 <= rows["eps"]["difference"]["high"]
    svg = client.get("/v1/catalogs/res/experiment/results.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<polyline" in svg.content and b"rule (running)" in svg.content
    # every learning arm learned from every decision, whichever arm made it
    learned = st.replica.models[arm_model("res", "eps")].policy.learned
    assert learned == 600


def test_ending_an_experiment_is_a_new_version_and_results_need_one(
    client: TestClient,
) -> None:
    put_catalog(client, "end", experiment=EXPERIMENT)
    assert client.delete("/v1/catalogs/end/experiment").status_code == 204
    shown = client.get("/v1/catalogs/end").json()
    assert shown["version"] == 2 and "experiment" not in shown
    assert "experiment" not in decide(client, "end", "u1")
    problem(client.get("/v1/catalogs/end/experiment/results"), 404, "experiment")


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/catalogs/bad/experiment", {**EXPERIMENT, "control": "x"}, 422, "experiment.control"),
        ("/v1/catalogs/bad/experiment/arms/rule", {"share": "big"}, 422, "share"),
        ("/v1/catalogs/bad/experiment/arms/nobody", {"share": 1}, 404, "arm"),
    ],
)
def test_bad_experiment_requests_name_the_field(
    client: TestClient, path: str, body: dict[str, object], status: int, field: str
) -> None:
    put_catalog(client, "bad", experiment=EXPERIMENT)
    method = client.put if path.endswith("/experiment") else client.patch
    problem(method(path, json=body), status, field)


def greedy_value(st: State, catalog: str, model: str, truth: np.ndarray) -> float:
    """The true mean reward of the model's best action per segment."""
    c = st.catalogs.latest(catalog)
    policy = st.replica.models[model].policy
    value = 0.0
    for segment in range(truth.shape[0]):
        context = {"user": {"segment": str(segment)}}
        pmf, scores = policy.ranked(flatten(context, Limits()), c.actions)
        best = int(np.lexsort((scores, pmf))[-1])
        value += truth[segment, best] / truth.shape[0]
    return value


def run(client: TestClient, catalog: str, truth: np.ndarray, n: int, seed: int) -> None:
    st = state_of(client)
    rng = np.random.default_rng(seed)
    for k in range(n):
        segment = int(rng.integers(truth.shape[0]))
        d = decide(client, catalog, f"{catalog}-{k}-{segment}", event_id=f"{catalog}-{k}")
        record = logged(st, d["event_id"])
        chosen = int(record.eligible[record.chosen][1:])
        train(st, record, float(rng.random() < truth[segment, chosen]))


def test_an_arm_with_a_tenth_of_the_traffic_learns_about_as_well_as_with_all_of_it(
    client: TestClient,
) -> None:
    """The challenger decides 10% of the traffic and learns from 100% of it off-policy
    (the logged probabilities are exact); the same settings deciding all traffic of a
    catalog of their own are the yardstick. Both are judged by the true value of their
    greedy choice per segment."""
    truth = np.array(
        [[0.1, 0.6, 0.2, 0.1], [0.5, 0.1, 0.1, 0.2], [0.1, 0.1, 0.1, 0.7], [0.2, 0.2, 0.6, 0.1]]
    )
    experiment = {
        "name": "tenth",
        "arms": [
            {"name": "control", "share": 0.9},
            {"name": "challenger", "share": 0.1, "policy": EPSILON},
        ],
    }
    put_catalog(client, "tenth", learning={"policy": "uniform"}, experiment=experiment)
    put_catalog(client, "whole", learning=EPSILON["learning"])
    run(client, "tenth", truth, 1500, seed=1)
    run(client, "whole", truth, 1500, seed=2)
    st = state_of(client)
    tenth = greedy_value(st, "tenth", arm_model("tenth", "challenger"), truth)
    whole = greedy_value(st, "whole", "whole", truth)
    best, average = truth.max(axis=1).mean(), truth.mean()
    print(f"tenth {tenth:.3f} whole {whole:.3f} best {best:.3f} average {average:.3f}")
    assert tenth >= whole - 0.05 and tenth > average + 0.2, (tenth, whole, best, average)
    rows = client.get("/v1/catalogs/tenth/experiment/results").json()["arms"]
    assert 80 <= rows[1]["decisions"] <= 220  # it did decide only about a tenth
