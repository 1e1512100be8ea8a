"""GET/POST /v1/catalogs/{name}/actions/{action}/why in process: the constraint that
removes an action now (for a context and a user) and in recent decisions, its
probability when it is eligible, and that asking decides nothing for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from streams.telemetry import samples
from tests.routes import app_client, problem, state_of

RULE = "no-promo-a-for-minors"
CAP = "promo-b-once-an-hour"
CATALOG = {
    "actions": [{"id": "promo-a"}, {"id": "promo-b"}, {"id": "banner-c"}, {"id": "banner-d"}],
    "constraints": {
        "rules": [{"name": RULE, "when": "context.age < 18", "exclude": "action.id == 'promo-a'"}],
        "schedules": {
            "banner-d": {"start": "2999-01-01T00:00:00+00:00", "end": "2999-02-01T00:00:00+00:00"}
        },
        "frequency_caps": [
            {"name": CAP, "actions": ["promo-b"], "limit": 1, "window_seconds": 3600}
        ],
        "exploration_floor": 0.3,
    },
}
DECISIONS = 30


def why(client: TestClient, action: str, **body: Any) -> dict[str, Any]:
    url = f"/v1/catalogs/shop/actions/{action}/why"
    r = client.post(url, json=body) if body else client.get(url)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    assert (found["catalog"], found["action"]) == ("shop", action)
    return found


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """DECISIONS decisions for minors (so promo-a is removed by the rule each time)."""
    with app_client(tmp_path_factory.mktemp("why")) as c:
        assert c.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
        for _ in range(DECISIONS):
            d = c.post("/v1/decide", json={"catalog": "shop", "context": {"age": 12}})
            assert d.status_code == 200, d.text
        yield c


def test_a_scheduled_action_is_removed_by_its_schedule_now_and_in_every_decision(
    client: TestClient,
) -> None:
    found = why(client, "banner-d")
    assert found["now"]["eligible"] is False and found["now"]["removed_by"] == "schedule"
    assert found["now"]["probability"] == 0.0 and found["now"]["rank"] is None
    recent = found["recent"]
    assert recent["decisions"] == DECISIONS and recent["shown"] == 0
    assert recent["removed"] == {"schedule": DECISIONS} and recent["removed_share"] == 1.0


def test_a_rule_removes_for_one_context_and_not_another(client: TestClient) -> None:
    minor = why(client, "promo-a", context={"age": 12})
    assert minor["now"]["removed_by"] == f"rule:{RULE}" and not minor["now"]["eligible"]
    assert minor["recent"]["removed"] == {f"rule:{RULE}": DECISIONS}
    adult = why(client, "promo-a", context={"age": 30})
    now = adult["now"]
    assert now["eligible"] is True and now["removed_by"] is None
    assert now["probability"] >= 0.3 / 3 - 1e-9, "the floor over the three eligible"
    assert now["rank"] in (1, 2, 3) and now["policy"].startswith("vw:")


def test_the_shown_share_counts_what_recent_decisions_showed(client: TestClient) -> None:
    counts = [why(client, a)["recent"]["shown"] for a in ("promo-a", "promo-b", "banner-c")]
    assert sum(counts) == DECISIONS and counts[0] == 0


def test_a_users_frequency_cap_removes_for_that_user_only(client: TestClient) -> None:
    body = {"catalog": "shop", "user_id": "u-capped", "candidates": ["promo-b"]}
    assert client.post("/v1/decide", json=body).json()["chosen"]["id"] == "promo-b"
    capped = why(client, "promo-b", user_id="u-capped")
    assert capped["now"]["removed_by"] == f"cap:{CAP}" and not capped["now"]["eligible"]
    other = why(client, "promo-b", user_id="u-fresh")
    assert other["now"]["eligible"] is True
    r = client.get("/v1/catalogs/shop/actions/promo-b/why", params={"user_id": "u-capped"})
    assert r.json()["now"]["removed_by"] == f"cap:{CAP}", "the query form says the same"


def test_asking_decides_nothing_for_real(client: TestClient) -> None:
    st = state_of(client)
    before = samples(client.get("/metrics").text)
    outbox, kept = len(st.outbox), len(st.recent.catalogs["shop"])
    for _ in range(5):
        why(client, "promo-b", user_id="u-asker", context={"age": 40})
    after = samples(client.get("/metrics").text)
    assert after["loopwise_decisions_total"] == before["loopwise_decisions_total"]
    assert after["loopwise_decide_seconds_count"] == before["loopwise_decide_seconds_count"]
    assert len(st.outbox) == outbox and len(st.recent.catalogs["shop"]) == kept
    person = st.pseudonyms.of("u-asker")
    assert st.exposures.of("shop", person) == {}, "no exposure recorded for the user"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/catalogs/shop/actions/nope/why", None, 404, "action"),
        ("/v1/catalogs/nope/actions/promo-a/why", None, 404, "catalog"),
        ("/v1/catalogs/shop/actions/promo-a/why", {"context": "teen"}, 422, "context"),
        ("/v1/catalogs/shop/actions/promo-a/why", {"user": "u"}, 422, "user"),
        ("/v1/catalogs/shop/actions/promo-a/why", {"user_id": "a\nb"}, 422, "user_id"),
    ],
)
def test_bad_asks_are_refused_by_name(
    client: TestClient, path: str, body: dict[str, Any] | None, status: int, field: str
) -> None:
    r = client.post(path, json=body) if body is not None else client.get(path)
    problem(r, status, field)
