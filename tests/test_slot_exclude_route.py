"""POST /v1/decide with a slot's own `exclude`, in process: each slot avoids its own
exclusions (another slot may show them), a slot left with nothing is answered empty in
its place while the later slots are filled, the records say so, and bad input is a 4xx
naming the field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.serving.answers import answer
from engine.limits import Limits
from engine.records import EmptySlotLogged
from tests.routes import app_client, logged, problem, state_of

IDS = ["a0", "a1", "a2", "a3"]
# no exploration floor: the one-candidate slots below are exactly one-hot
CATALOG = {
    "actions": [{"id": i, "features": {"x": {"i": n}}} for n, i in enumerate(IDS)],
    "constraints": {"exploration_floor": 0},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("slot-exclude"), limits=Limits(max_actions=4)) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        yield c


def decide(client: TestClient, **body: object) -> dict[str, Any]:
    r = client.post("/v1/decide", json={"catalog": "shop", **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_each_slot_avoids_its_own_exclusions_only(client: TestClient) -> None:
    slots: list[dict[str, Any]] = [
        {"id": "hero", "exclude": ["a0", "a1"]},
        {"id": "side", "exclude": ["a2"]},
        {"id": "footer"},
    ]
    shown: Counter[tuple[str, str]] = Counter()
    st = state_of(client)
    for n in range(30):
        slate = decide(client, slots=slots, event_id=f"own-{n}")
        assert [s["slot"] for s in slate["slots"]] == ["hero", "side", "footer"]
        earlier: set[str] = set()
        for spec, s in zip(slots, slate["slots"], strict=True):
            own = set(spec.get("exclude", []))
            ranked = {r["id"] for r in s["ranking"]}
            assert ranked == set(IDS) - own - earlier, (spec, s)  # exactly what it may show
            assert s["chosen"]["id"] not in own
            assert sum(r["probability"] for r in s["ranking"]) == pytest.approx(1.0)
            record = logged(st, s["event_id"])
            assert set(record.eligible) == ranked and record.empty_slots == []
            assert record.probability == s["chosen"]["probability"]
            earlier.add(s["chosen"]["id"])
            shown[(s["slot"], s["chosen"]["id"])] += 1
    assert shown[("side", "a0")] + shown[("side", "a1")] > 0, "what hero excludes fills side"
    again = client.post("/v1/decide", json={"catalog": "shop", "slots": slots, "event_id": "own-0"})
    assert again.json()["replay"] is True
    other = [slots[0], {"id": "side", "exclude": ["a3"]}, slots[2]]
    r = client.post("/v1/decide", json={"catalog": "shop", "slots": other, "event_id": "own-0"})
    problem(r, 409, "event_id")  # another slot exclusion is another request


def test_a_slot_its_exclude_empties_is_answered_empty_and_the_next_is_filled(
    client: TestClient,
) -> None:
    slots = [{"id": "hero", "exclude": ["a1"]}, {"id": "side", "exclude": ["a1"]}, {"id": "foot"}]
    slate = decide(client, candidates=["a0", "a1"], slots=slots, event_id="hole")
    hero, side, foot = slate["slots"]
    assert hero["chosen"] == {"id": "a0", "probability": 1.0}
    assert side["slot"] == "side" and side["chosen"] is None and side["event_id"] is None
    assert side["ranking"] == [] and "its exclude removes all 1 actions" in side["reason"]
    assert foot["chosen"] == {"id": "a1", "probability": 1.0}
    st = state_of(client)
    records = [logged(st, "hole/hero"), logged(st, "hole/foot")]
    assert [(r.position, r.slots) for r in records] == [(0, 2), (1, 2)]
    empty = [EmptySlotLogged(1, "side", side["reason"])]
    assert all(r.empty_slots == empty for r in records)
    # another API process answers a repeat from the records alone: the same answer
    assert answer("hole", records, slate["logged"]) == slate
    with pytest.raises(AssertionError):
        logged(st, "hole/side")  # nothing shown, nothing logged or learned


def test_a_slot_exclude_is_checked_against_what_the_request_offers(client: TestClient) -> None:
    slots = [{"id": "hero"}, {"id": "side", "exclude": ["a0"]}]
    r = client.post("/v1/decide", json={"catalog": "shop", "slots": slots, "candidates": ["a0"]})
    body = problem(r, 422, "slots[1].exclude")  # as exclude leaving nothing is refused
    assert "leaves this slot no action" in body["detail"]
    slots = [{"id": "hero", "exclude": ["a1"]}, {"id": "side", "exclude": ["a0"]}]
    slate = decide(client, candidates=["a0", "a1"], slots=slots)
    assert [s["chosen"]["id"] for s in slate["slots"]] == ["a0", "a1"]


@pytest.mark.parametrize(
    ("slots", "status", "field", "kind"),
    [
        ([{"id": "s", "exclude": "a0"}], 422, "slots[0].exclude", "invalid-input"),
        ([{"id": "s"}, {"id": "t", "exclude": ["a0", 3]}], 422, "slots[1].exclude[1]", None),
        (
            [{"id": "s"}, {"id": "t"}, {"id": "u", "exclude": ["nope"]}],
            422,
            "slots[2].exclude[0]",
            "invalid-input",
        ),
        ([{"id": "s", "exclude": [*IDS, "a0"]}], 422, "slots[0].exclude", "limit-exceeded"),
        ([{"id": "s", "exclude": IDS}], 422, "slots[0].exclude", "invalid-input"),
    ],
)
def test_a_bad_slot_exclude_is_refused_naming_the_field(
    client: TestClient, slots: list[dict[str, object]], status: int, field: str, kind: str | None
) -> None:
    r = client.post("/v1/decide", json={"catalog": "shop", "slots": slots})
    body = problem(r, status, field, kind=kind)
    if kind == "limit-exceeded":
        assert "limit of 4" in body["detail"]
    if field == "slots[2].exclude[0]":
        assert "'nope' is not an action of catalog 'shop'" in body["detail"]
