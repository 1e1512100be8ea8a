"""An off-policy evaluation through a real stack: the API starts the job as a process of
its own, the job reads the training log from the broker, and the estimates come back
over HTTP while decisions go on being answered."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack, wait_until

CATALOG = {
    "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
    "learning": {"policy": "uniform", "reward_wait_seconds": 1.0},
}
CLICKS = {"a": 0.1, "b": 0.8, "c": 0.4}  # each action's true click rate
CANDIDATES = [
    {"name": "always-b", "rule": "priority", "priority": ["b"]},
    {"name": "always-a", "rule": "first"},
    {"name": "no-b", "constraints": {"rules": [{"name": "no-b", "exclude": "action.id == 'b'"}]}},
    {"name": "epsilon", "learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.1}}},
]


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("evaluation"), LOOPWISE_CHECKPOINT_SECONDS="1")
    s.start()
    yield s
    s.stop()


def test_an_evaluation_job_estimates_rules_changes_and_settings_from_the_log(
    stack: Stack,
) -> None:
    assert stack.http.put("/v1/catalogs/eval", json=CATALOG).status_code == 201
    started = time.time()
    rng = random.Random(5)
    for n in range(600):
        d = stack.decide("eval", event_id=f"ev-{n}")
        chosen: Any = d["chosen"]
        if rng.random() < CLICKS[chosen["id"]]:
            r = stack.http.post("/v1/rewards", json={"event_id": f"ev-{n}", "value": 1.0})
            assert r.status_code == 202, r.text
    wait_until(lambda: stack.learned("eval") >= 600, 60, "every decision to be learned")
    r = stack.http.post(
        "/v1/catalogs/eval/evaluations",
        # until now: the decisions answered while the job runs are outside the window
        json={"since": started - 60, "until": time.time(), "candidates": CANDIDATES},
    )
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    answered = 0

    def done() -> bool:
        nonlocal answered
        stack.decide("eval")  # decisions are answered while the job runs
        answered += 1
        return bool(stack.http.get(location).json()["state"] in ("done", "failed"))

    wait_until(done, 120, "the evaluation to finish", interval=0.2)
    result = stack.http.get(location).json()
    assert result["state"] == "done", result
    assert result["rows"] == 600 and answered > 0
    by = {c["name"]: c for c in result["candidates"]}
    truths = {"always-b": 0.8, "always-a": 0.1, "no-b": (0.1 + 0.4) / 2}
    for name, truth in truths.items():
        for method in ("ips", "snips", "dr"):
            e = by[name][method]
            assert e["supported"] and e["low"] <= truth <= e["high"], (name, method, e)
    logged = by["always-b"]["logged"]  # the uniform logger: (0.1 + 0.8 + 0.4) / 3
    assert logged["low"] <= 1.3 / 3 <= logged["high"], logged
    assert by["epsilon"]["dr"]["supported"] and by["epsilon"]["dr"]["estimate"] > 0.5
    listing = stack.http.get("/v1/catalogs/eval/evaluations").json()["evaluations"]
    assert [e["id"] for e in listing] == [result["id"]]


def test_bad_evaluation_requests_name_the_field(stack: Stack) -> None:
    stack.http.put("/v1/catalogs/eval2", json=CATALOG)
    for body, field in (
        ({"candidates": []}, "candidates"),
        ({"candidates": CANDIDATES, "since": 10, "until": 5}, "since"),
        ({"candidates": CANDIDATES, "alpha": 0.9}, "alpha"),
        ({"candidates": CANDIDATES, "window": 1}, "window"),
    ):
        r = stack.http.post("/v1/catalogs/eval2/evaluations", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert stack.http.get("/v1/catalogs/eval2/evaluations/nope").status_code == 404


def test_an_optimisation_promotes_only_what_beats_the_current_settings(stack: Stack) -> None:
    """On the uniform catalog's log, an epsilon-greedy model (trained progressively) is
    estimated far above the current (uniform) settings: promoted, a new catalog version.
    A second uniform is not: the settings stay, and the run says why."""
    assert stack.http.put("/v1/catalogs/opt", json=CATALOG).status_code == 201
    started = time.time()
    rng = random.Random(7)
    for n in range(600):
        d = stack.decide("opt", event_id=f"op-{n}")
        chosen: Any = d["chosen"]
        if rng.random() < CLICKS[chosen["id"]]:
            stack.http.post("/v1/rewards", json={"event_id": f"op-{n}", "value": 1.0})
    wait_until(lambda: stack.learned("opt") >= 600, 60, "every decision to be learned")
    window = {"since": started - 60, "until": time.time() + 60}
    same = {"name": "uniform-again", "learning": {"policy": "uniform"}}
    kept = run_optimisation(stack, {**window, "candidates": [same]})
    assert kept["verdict"]["promote"] is None and "settings stay" in kept["verdict"]["reason"]
    assert kept["applied"] == {"promoted": False}
    eps = {**CANDIDATES[3], "name": "eps"}
    promoted = run_optimisation(stack, {**window, "candidates": [same, eps]})
    assert promoted["verdict"]["promote"] == "eps", promoted["verdict"]
    assert promoted["applied"]["promoted"] is True
    catalog = stack.http.get("/v1/catalogs/opt").json()
    assert catalog["version"] == promoted["applied"]["catalog_version"] == 2
    assert catalog["learning"]["exploration"]["algorithm"] == "epsilon"
    assert catalog["learning"]["policy"] == "vw"


def run_optimisation(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.http.post("/v1/catalogs/opt/optimizations", json=body)
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    wait_until(
        lambda: "applied" in stack.http.get(location).json(), 120, "the verdict to be applied"
    )
    result: dict[str, Any] = stack.http.get(location).json()
    assert result["state"] == "done" and result["kind"] == "optimize", result
    return result


def test_a_catalog_optimises_itself_on_its_schedule_once_a_period(stack: Stack) -> None:
    """`optimization` in the body: the API starts a run per period over the window before
    it, promotes its verdict, and starts no second run in the same period (a promotion is
    a new version of a catalog that keeps its schedule)."""
    for body, field in (
        ({"every_seconds": 1}, "optimization.every_seconds"),
        ({"window_seconds": "day"}, "optimization.window_seconds"),
        ({"candidates": [{"name": "current", "learning": {}}]}, "optimization.candidates[0].name"),
        (
            {"candidates": [{"name": "x", "learning": {"policy": "no"}}]},
            "optimization.candidates[0].learning.policy",
        ),
        ({"promote": "yes"}, "optimization.promote"),
    ):
        r = stack.http.put("/v1/catalogs/sched", json={**CATALOG, "optimization": body})
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert stack.http.put("/v1/catalogs/sched", json=CATALOG).status_code == 201
    rng = random.Random(11)
    for n in range(600):
        d = stack.decide("sched", event_id=f"sc-{n}")
        chosen: Any = d["chosen"]
        if rng.random() < CLICKS[chosen["id"]]:
            stack.http.post("/v1/rewards", json={"event_id": f"sc-{n}", "value": 1.0})
    wait_until(lambda: stack.learned("sched") >= 600, 60, "every decision to be learned")
    eps = {**CANDIDATES[3], "name": "eps"}
    schedule = {"every_seconds": 3600, "window_seconds": 600, "candidates": [eps]}
    r = stack.http.put("/v1/catalogs/sched", json={**CATALOG, "optimization": schedule})
    assert r.status_code == 200, r.text
    assert r.json()["optimization"] == {**schedule, "promote": True}

    def scheduled() -> list[dict[str, Any]]:
        listing = stack.http.get("/v1/catalogs/sched/evaluations").json()["evaluations"]
        return [e for e in listing if e.get("scheduled")]

    wait_until(lambda: any("applied" in e for e in scheduled()), 120, "a scheduled run applied")
    run = scheduled()
    assert len(run) == 1 and run[0]["kind"] == "optimize", run
    assert run[0]["verdict"]["promote"] == "eps" and run[0]["applied"]["promoted"] is True
    catalog = stack.http.get("/v1/catalogs/sched").json()
    assert catalog["version"] == run[0]["applied"]["catalog_version"] == 3
    assert catalog["learning"]["exploration"]["algorithm"] == "epsilon"
    assert catalog["optimization"]["every_seconds"] == 3600  # the schedule goes on
    time.sleep(2.5)  # the scheduler looks every second: the period has had its run
    assert len(scheduled()) == 1
