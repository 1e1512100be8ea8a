"""GET /v1/catalogs/{name}/performance[.svg] in process: the served value and uniform's,
per slot, from the examples the replica learned; the query checked by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine import ope
from engine.join import training_example
from tests.routes import app_client, logged, problem, state_of

CATALOG = {
    "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
    "constraints": {"exploration_floor": 0.3},
}
SINGLE, SLATES = 150, 20
ROWS: list[tuple[float, float, int]] = []  # the single decisions' (reward, probability, K)
URL = "/v1/catalogs/shop/performance"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Single decisions rewarded 1 when `a` was shown, and two-slot slates whose `top`
    slot is rewarded 1 always and `next` never; every example learned."""
    with app_client(tmp_path_factory.mktemp("performance")) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        st = state_of(c)

        def learn(event_id: str, reward: float) -> None:
            d = logged(st, event_id)
            assert st.replica.learn(training_example(d, reward, 1, "reward", d.ts + 1))
            if d.slot is None:
                ROWS.append((reward, d.probability, len(d.eligible)))

        for i in range(SINGLE):
            d = c.post("/v1/decide", json={"catalog": "shop", "context": {"i": i}}).json()
            learn(d["event_id"], float(d["chosen"]["id"] == "a"))
        for i in range(SLATES):
            body = {"catalog": "shop", "slots": [{"id": "top"}, {"id": "next"}]}
            slate = c.post("/v1/decide", json=body).json()
            for s in slate["slots"]:
                learn(s["event_id"], float(s["slot"] == "top") if i % 2 else 0.5)
        yield c


def test_each_slot_has_its_served_value_and_uniforms_with_intervals(client: TestClient) -> None:
    r = client.get(URL, params={"every": 300})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["every"] == 300 and report["alpha"] == 0.05
    by = {s["slot"]: s for s in report["slots"]}
    assert set(by) == {None, "top", "next"}
    single = by[None]["total"]
    assert single["decisions"] == SINGLE
    served = single["served"]
    assert served["supported"] and served["low"] <= served["estimate"] <= served["high"]
    r_, p_, k_ = zip(*ROWS, strict=True)
    log = ope.tally(r_, p_, [1.0 / k for k in k_])  # the same rows, read in one batch
    for key, method in (("served", "logged"), ("uniform", "snips")):
        want = ope.estimate(log, method)
        assert isinstance(want, ope.Estimate), want
        assert single[key]["estimate"] == pytest.approx(want.estimate)
        assert single[key]["low"] == pytest.approx(want.low)
    assert by["top"]["total"]["served"]["estimate"] == pytest.approx(0.75)
    assert by["next"]["total"]["served"]["estimate"] == pytest.approx(0.25)
    points = by[None]["series"]
    assert sum(p["decisions"] for p in points) == SINGLE and points[0]["start"] % 300 == 0
    assert report["model"]["learned"] == SINGLE + 2 * SLATES
    assert set(report["model"]["freshness_seconds"]) == {"0.5", "0.9", "0.99"}
    assert report["this_process"]["decisions"] == SINGLE + SLATES


def test_the_picture_draws_served_and_uniform_per_slot(client: TestClient) -> None:
    r = client.get(f"{URL}.svg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    svg = r.text
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for label in ("decisions: served", "decisions: uniform (snips)", "top: served", "next: served"):
        assert label in svg


def test_a_catalog_that_learned_nothing_has_no_series(client: TestClient) -> None:
    assert client.put("/v1/catalogs/idle", json=CATALOG).status_code == 201
    r = client.get("/v1/catalogs/idle/performance")
    assert r.status_code == 200 and r.json()["slots"] == []


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"every": 7}, "every", "multiple of 300"),
        ({"every": "hourly"}, "every", "must be an integer"),
        ({"alpha": 2}, "alpha", "alpha"),
        ({"since": "yesterday"}, "since", "must be a number"),
        ({"resolution": 300}, "resolution", "not a known field"),
    ],
)
def test_a_bad_query_is_refused_naming_its_parameter(
    client: TestClient, query: dict[str, object], field: str, says: str
) -> None:
    found = problem(client.get(URL, params=query), 422, field)
    assert says in found["detail"]


def test_an_unknown_catalog_is_a_404(client: TestClient) -> None:
    problem(client.get("/v1/catalogs/nope/performance"), 404, "catalog")


def test_the_series_survive_a_restart_in_the_models_checkpoint(tmp_path: Path) -> None:
    with app_client(tmp_path) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        st = state_of(c)
        for i in range(5):
            d = logged(st, c.post("/v1/decide", json={"catalog": "shop"}).json()["event_id"])
            assert st.replica.learn(training_example(d, float(i % 2), 1, "reward", d.ts + 1))
        before = c.get(URL).json()["slots"]
    with app_client(tmp_path) as c:  # closing saved the checkpoint; this process loads it
        assert c.get(URL).json()["slots"] == before and before[0]["total"]["decisions"] == 5
