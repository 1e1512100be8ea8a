"""The Personalizer-compatible routes in process (no broker): every route of both specs
is served or refused with its reason, errors in Personalizer's shape, features mapped as
VW's JSON reader did and injection-safe, the policy's VW arguments read back or refused,
the service configuration onto the catalog."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.personalizer import durations, features, policy
from engine import vwformat
from engine.errors import InvalidInput, LimitExceeded
from engine.learning import parse_learning
from engine.limits import Limits
from policies.registry import model_key
from tests.conftest import ROOT
from tests.routes import app_client

SPECS = ROOT / "docs" / "reference" / "personalizer"  # Microsoft's, vendored
V1, V11 = "/personalizer/v1.0", "/personalizer/v1.1-preview.3"
ACTIONS = [
    {"id": "a", "features": [{"kind": {"t": "x"}}]},
    {"id": "b", "features": [{"kind": {"t": "y"}, "size": [1, 2]}]},
    {"id": "c"},
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("personalizer")) as c:
        yield c


def _error(r: Any, status: int, code: str, target: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code and error["message"], error
    if target is not None:
        assert error["target"] == target, error
    return error


def _spec_routes() -> list[tuple[str, str, str]]:
    out = []
    for name, base in (("stable-v1.0.json", V1), ("preview-v1.1-preview.3.json", V11)):
        spec = json.loads((SPECS / name).read_text())
        for path, ops in spec["paths"].items():
            for method in ops:
                if method != "parameters":
                    out.append((method.upper(), base, path))
    return out


@pytest.mark.parametrize(("method", "base", "path"), _spec_routes())
def test_every_route_of_both_specs_is_served_or_refused_with_a_reason(
    client: TestClient, method: str, base: str, path: str
) -> None:
    url = base + path.replace("{eventId}", "ev-route").replace("{evaluationId}", "none")
    r = client.request(method, url, json={})
    assert "no Personalizer route" not in r.text, (method, url, r.text)
    if r.status_code >= 400:
        assert set(r.json()["error"]) >= {"code", "message"}, r.text
    if r.status_code == 501:
        assert "Loopwise" in r.json()["error"]["message"]


def test_rank_excludes_seeds_by_event_id_and_refuses_a_reused_one(client: TestClient) -> None:
    body = {"actions": ACTIONS, "contextFeatures": [{"u": {"tier": "pro"}}], "eventId": "r-1"}
    body["excludedActions"] = ["a"]
    first = client.post(f"{V1}/rank", json=body)
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["eventId"] == "r-1" and answer["rewardActionId"] in ("b", "c")
    assert answer["ranking"][-1] == {"id": "a", "probability": 0.0}
    assert client.post(f"{V1}/rank", json=body).json() == answer  # replayed as it was
    other = client.post(f"{V11}/rank", json={**body, "excludedActions": []})
    _error(other, 409, "InvalidRankRequest", "event_id")
    unknown = client.post(f"{V11}/rank", json={**body, "excludedActions": ["z"], "eventId": "x"})
    _error(unknown, 400, "InvalidRankRequest", "excludedActions[0]")
    _error(client.post(f"{V1}/rank", json={"actions": []}), 400, "BadRequest", "actions")
    _error(client.post(f"{V1}/rank", json={"contextFeatures": []}), 400, "BadRequest", "actions")


def test_errors_take_personalizers_shape_and_codes(client: TestClient) -> None:
    big = {"actions": [{"id": "a", "features": [{"x": "y" * 2_000_000}]}]}
    _error(client.post(f"{V11}/rank", json=big), 413, "PayloadSizeExceeded")
    _error(client.get(f"{V1}/nowhere"), 404, "ResourceNotFound")
    _error(client.get(f"{V11}/evaluations/none"), 404, "EvaluationNotFound", "evaluationId")
    _error(client.get(f"{V1}/evaluations/none"), 404, "ResourceNotFound")  # v1.0's three codes
    _error(client.delete(f"{V1}/logs"), 501, "InternalServerError")
    _error(client.delete(f"{V11}/logs"), 501, "InvalidApiAccess")
    wrong = client.get("/personalizer/configurations/service?api-version=2019-01-01")
    _error(wrong, 400, "BadRequest", "api-version")
    malformed = client.post(
        f"{V11}/rank", content=b"{", headers={"content-type": "application/json"}
    )
    _error(malformed, 400, "InvalidRankRequest")


def test_a_key_is_asked_for_as_azure_did(tmp_path: Path) -> None:
    key = "a-personalizer-key-1234"
    with app_client(tmp_path, api_keys=f"storefront:{key}") as c:
        body = {"actions": ACTIONS}
        _error(c.post(f"{V1}/rank", json=body), 401, "401", "Authorization")
        ok = c.post(f"{V1}/rank", json=body, headers={"Ocp-Apim-Subscription-Key": key})
        assert ok.status_code == 201, ok.text
        admin = c.get(f"{V1}/configurations/service", headers={"Ocp-Apim-Subscription-Key": key})
        _error(admin, 403, "403")


def test_loops_are_named_by_the_endpoint_and_created_on_first_use(client: TestClient) -> None:
    r = client.post("/loops/shop-2/personalizer/v1.0/rank", json={"actions": ACTIONS})
    assert r.status_code == 201, r.text
    catalog = client.get("/v1/catalogs/shop-2").json()
    assert catalog["actions"] == [] and catalog["constraints"]["exploration_floor"] == 0.2
    assert catalog["learning"]["reward_wait_seconds"] == 600.0
    bad = client.post("/loops/no%20spaces/personalizer/v1.0/rank", json={"actions": ACTIONS})
    _error(bad, 400, "BadRequest", "loop")


def test_apprentice_mode_shows_the_first_action_not_excluded(client: TestClient) -> None:
    base = "/loops/learner/personalizer/v1.1-preview.3"
    config = client.get(f"{base}/configurations/service").json()
    r = client.put(f"{base}/configurations/service", json={**config, "learningMode": "Apprentice"})
    assert r.status_code == 200 and r.json()["learningMode"] == "Apprentice", r.text
    shown = client.post(f"{base}/rank", json={"actions": ACTIONS, "excludedActions": ["a"]})
    assert shown.json()["rewardActionId"] == "b"
    slots = [{"id": "s", "baselineAction": "a"}]
    refused = client.post(f"{base}/multislot/rank", json={"actions": ACTIONS, "slots": slots})
    _error(refused, 400, "InvalidRankRequest", "slots")


def test_multi_slot_exclusions_are_each_slots_own(client: TestClient) -> None:
    """Slots that exclude different actions rank, each slot avoiding only its own: an
    action one slot excludes still fills another."""
    slots: list[dict[str, Any]] = [
        {"id": "s1", "baselineAction": "a", "excludedActions": ["c"]},
        {"id": "s2", "baselineAction": "b", "excludedActions": ["c"], "features": [{"p": 2}]},
    ]
    ok = client.post(f"{V11}/multislot/rank", json={"actions": ACTIONS, "slots": slots})
    assert ok.status_code == 201, ok.text
    assert {s["rewardActionId"] for s in ok.json()["slots"]} == {"a", "b"}
    differ = [
        {"id": "s1", "baselineAction": "a", "excludedActions": ["b", "c"]},
        {"id": "s2", "baselineAction": "b", "excludedActions": ["a"]},
        {"id": "s3", "baselineAction": "c", "excludedActions": []},
    ]
    seen: set[str] = set()
    for n in range(12):
        body = {"actions": ACTIONS, "slots": differ, "eventId": f"per-slot-{n}"}
        r = client.post(f"{V11}/multislot/rank", json=body)
        assert r.status_code == 201, r.text
        answered = r.json()["slots"]
        assert [s["id"] for s in answered] == ["s1", "s2", "s3"]
        chosen = [s["rewardActionId"] for s in answered]
        assert chosen[0] == "a" and answered[0]["probability"] == 1.0  # b and c excluded
        assert chosen[1] in ("b", "c") and len(set(chosen)) == 3
        assert {x["id"] for x in answered[1]["ranking"]} == {"b", "c"}  # a: excluded, or s1's
        seen.add(chosen[1])
    assert seen == {"b", "c"}, "slot s2 draws from both of what it may show"
    unknown = [slots[0], {**slots[1], "excludedActions": ["a", "zz"]}]
    r = client.post(f"{V11}/multislot/rank", json={"actions": ACTIONS, "slots": unknown})
    _error(r, 400, "InvalidRankRequest", "slots[1].excludedActions[1]")
    everything = [slots[0], {**slots[1], "excludedActions": ["a", "b", "c"]}]
    r = client.post(f"{V11}/multislot/rank", json={"actions": ACTIONS, "slots": everything})
    _error(r, 400, "InvalidRankRequest", "slots[1].excludedActions")
    lost = [{**slots[0], "baselineAction": "zz"}]
    r = client.post(f"{V11}/multislot/rank", json={"actions": ACTIONS, "slots": lost})
    _error(r, 400, "InvalidRankRequest", "slots[0].baselineAction")
    assert client.post(f"{V1}/multislot/rank", json={}).status_code == 404  # not in v1.0


@pytest.mark.parametrize(
    ("change", "target"),
    [
        ({"rewardWaitTime": "ten minutes"}, "rewardWaitTime"),
        ({"rewardWaitTime": "P30D"}, "rewardWaitTime"),
        ({"defaultReward": 2}, "defaultReward"),
        ({"explorationPercentage": 1.5}, "explorationPercentage"),
        ({"rewardAggregation": "average"}, "rewardAggregation"),
        ({"learningMode": "Offline"}, "learningMode"),
        ({"logMirrorEnabled": True}, "logMirrorEnabled"),
        ({"logRetentionDays": -2}, "logRetentionDays"),
        ({"rewardWaitTime": None}, "rewardWaitTime"),
    ],
)
def test_a_bad_service_configuration_names_its_field(
    client: TestClient, change: dict[str, Any], target: str
) -> None:
    config = client.get(f"{V11}/configurations/service").json()
    r = client.put(f"{V11}/configurations/service", json={**config, **change})
    _error(r, 400, "InvalidServiceConfiguration", target)


def test_the_service_configuration_is_the_catalogs(client: TestClient) -> None:
    base = "/loops/configured/personalizer/v1.1-preview.3"
    config = client.get(f"{base}/configurations/service").json()
    config.update(
        rewardWaitTime="00:00:30",
        defaultReward=-0.5,
        rewardAggregation="Sum",
        explorationPercentage=0.3,
        isAutoOptimizationEnabled=True,
        autoOptimizationFrequency="P1D",
        logRetentionDays=30,
    )
    answer = client.put(f"{base}/configurations/service", json=config).json()
    assert answer["rewardWaitTime"] == "PT30S" and answer["rewardAggregation"] == "sum"
    assert answer["isAutoOptimizationEnabled"] and answer["autoOptimizationFrequency"] == "P1D"
    catalog = client.get("/v1/catalogs/configured").json()
    assert catalog["learning"]["default_reward"] == -0.5
    assert catalog["constraints"]["exploration_floor"] == 0.3
    assert catalog["optimization"]["every_seconds"] == 86_400.0
    assert client.get(f"{base}/configurations/service").json() == answer
    policy_before = client.get(f"{base}/configurations/policy").json()
    client.put(
        f"{base}/configurations/policy",
        json={"name": "eps", "arguments": "--cb_explore_adf --epsilon 0.1 -q ::"},
    )
    again = client.get(f"{base}/configurations/service").json()  # the policy kept the join
    assert again["rewardWaitTime"] == "PT30S" and again["defaultReward"] == -0.5
    reset = client.delete(f"{base}/configurations/policy").json()
    assert reset["arguments"] == policy_before["arguments"]


@pytest.mark.parametrize(
    "arguments",
    [
        "--cb_explore_adf --epsilon 0.2 -q ::",
        "--cb_explore_adf --epsilon=0.2 --cb_type mtr --dsjson -q::",
        "--cb_explore_adf --squarecb --gamma_scale 100 --coin --interactions ca",
        "--cb_explore_adf --bag 4 --epsilon 0.05",
        "--cb_explore_adf --cover 3 --psi 0.5 --nounif",
        "--cb_explore_adf --rnd 2 --rnd_alpha 0.2",
        "--cb_explore_adf --softmax --lambda 5",
        "--cb_explore_adf --regcbopt --mellowness 0.01 --cb_min_cost -1 --cb_max_cost 0",
    ],
)
def test_vw_arguments_read_back_as_the_same_settings(arguments: str) -> None:
    learning = parse_learning(policy.learning_body(arguments), Limits())
    shown = policy.arguments(learning)
    again = parse_learning(policy.learning_body(shown), Limits())
    assert model_key(again) == model_key(learning)  # the same VW command line: the same model


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ("--epsilon 0.2", "--cb_explore_adf"),
        ("--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 -q ::", "-l"),
        ("--cb_explore_adf --epsilon 0.2 --power_t 0", "--power_t"),
        ("--cb_explore_adf --epsilon 0.2 --cb_type ips", "--cb_type ips"),
        ("--cb_explore_adf --epsilon 0.2 -q UA", "'UA'"),
        ("--cb_explore_adf --squarecb --bag 3", "2 exploration algorithms"),
        ("--cb_explore_adf --squarecb --epsilon 0.1", "--epsilon is not a parameter"),
        ("--cb_explore_adf --epsilon x", "needs a number"),
        ("--cb_explore_adf --epsilon", "needs a value"),
        ("--cb_explore_adf", "no exploration"),
        ("--cb_explore_adf --epsilon 0.1 --marginal A", "'--marginal'"),
        ("--cb_explore_adf --epsilon 0.1 --cb_min_cost 0", "only with --regcbopt"),
    ],
)
def test_vw_arguments_loopwise_cannot_honour_are_refused_by_name(arguments: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        policy.learning_body(arguments)
    assert says in refused.value.detail and refused.value.field == "arguments"


def test_a_refused_policy_is_answered_in_personalizers_shape(client: TestClient) -> None:
    bad = {"name": "p", "arguments": "--cb_explore_adf --epsilon 2"}
    error = _error(
        client.put(f"{V11}/configurations/policy", json=bad), 400, "InvalidPolicyConfiguration"
    )
    assert "epsilon" in error["message"]


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("PT5M", 300.0, "PT5M"),
        ("P1DT12H", 129_600.0, "P1DT12H"),
        ("00:10:00", 600.0, "PT10M"),
        ("1.00:00:30", 86_430.0, "P1DT30S"),
        ("PT0.5S", 0.5, "PT0.5S"),
        ("P1W", 604_800.0, "P7D"),
    ],
)
def test_durations(text: str, seconds: float, shown: str) -> None:
    assert durations.parse(text, "x") == seconds and durations.format_seconds(seconds) == shown


@pytest.mark.parametrize("text", ["", "P", "PT", "5 minutes", "PT5", "-PT5M", "P1DT"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        durations.parse(text, "rewardWaitTime")


def test_feature_objects_become_namespaces_as_vws_json_reader_made_them() -> None:
    got = features.namespaces(
        [
            {"user": {"tier": "gold", "geo": {"city": "Oslo"}}, "weekday": "tue"},
            {"device": {"mobile": True, "screen": [1680, 1050]}, "_id": "x", "_ns": {"a": 1}},
            {"user": {"visits": 3}, "tags": ["new", "vip"], "gone": None},
        ],
        Limits(),
        "contextFeatures",
    )
    assert got == {
        "user": {"tier": "gold", "geo.city": "Oslo", "visits": 3.0},
        "context": {"weekday": "tue", "tags=new": 1.0, "tags=vip": 1.0},
        "device": {"mobile": 1.0, "screen[0]": 1680.0, "screen[1]": 1050.0},
    }


@pytest.mark.parametrize(
    ("objects", "error", "field"),
    [
        (["not an object"], InvalidInput, "contextFeatures[0]"),
        ([{"x": {"y": float("nan")}}], InvalidInput, "contextFeatures[0].x.y"),
        ([{"x": [1, "a"]}], InvalidInput, "contextFeatures[0].x[0]"),
        ([{"x": {"y": [{"z": 1}]}}], InvalidInput, "contextFeatures[0].x.y[0]"),
        (
            [{f"k{i}": 1 for i in range(3000)}, {f"j{i}": 1 for i in range(3000)}],
            LimitExceeded,
            "contextFeatures",
        ),
    ],
)
def test_bad_features_name_their_field(objects: list[Any], error: type, field: str) -> None:
    with pytest.raises(error) as refused:
        features.namespaces(objects, Limits(), "contextFeatures")
    assert refused.value.field == field  # type: ignore[attr-defined]  # an EngineError


def test_no_feature_byte_changes_the_structure_of_a_vw_example() -> None:
    hostile = "a|b:c d\ne\x00f shared |x 1:2 _label"
    got = features.namespaces(
        [{hostile: {hostile: hostile, "n": 1.5}}, {hostile: hostile}], Limits(), "contextFeatures"
    )
    line = vwformat.shared_line(got)
    assert "\n" not in line and "\x00" not in line
    assert line.count("|") == 2 and line.startswith("shared |c")  # two namespaces, no more
