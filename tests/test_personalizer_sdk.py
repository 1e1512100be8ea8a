"""Azure Personalizer's official Python SDKs, unchanged, against a real stack: only the
endpoint and the key are Loopwise's.

`azure-cognitiveservices-personalizer` speaks v1.0 (rank, reward, activate);
`azure-ai-personalizer` 1.0.0b1 speaks 2022-09-01-preview (rank, multi-slot, the service
configuration, the policy, the model, evaluations). Each loop is named by the endpoint
(`<url>/loops/<loop>`), and the stack requires a key, sent as Ocp-Apim-Subscription-Key.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient
from azure.ai.personalizer import PersonalizerClient as PreviewClient
from azure.cognitiveservices.personalizer import PersonalizerClient
from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import HttpOperationError

from tests.conftest import ROOT, Stack, wait_until

pytestmark = pytest.mark.integration
KEY = "personalizer-test-key-0001"
ACTIONS = [
    {"id": "news", "features": [{"kind": {"topic": "news"}}, {"length": 3}]},
    {"id": "sports", "features": [{"kind": {"topic": "sports"}}, {"length": 5}]},
    {"id": "music", "features": [{"kind": {"topic": "music", "tags": ["live", "pop"]}}]},
]
CONTEXT = [{"user": {"tier": "gold", "mobile": True}}, {"weekday": "tuesday"}]


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        broker,
        tmp_path_factory.mktemp("personalizer"),
        LOOPWISE_API_KEYS=f"admin:{KEY}",
        LOOPWISE_CHECKPOINT_SECONDS="1",
    )
    s.start()
    s.http.headers["Ocp-Apim-Subscription-Key"] = KEY
    yield s
    s.stop()


def _fast(stack: Stack, loop: str, **changes: Any) -> None:
    """The loop's reward wait down to a second, through the preview SDK's admin client."""
    admin = PersonalizerAdministrationClient(f"{stack.url}/loops/{loop}", AzureKeyCredential(KEY))
    config = admin.get_service_configuration()
    config.update(rewardWaitTime="PT1S", **changes)
    assert admin.update_service_configuration(config)["rewardWaitTime"] == "PT1S"


def _learned(stack: Stack, event_id: str) -> bool:
    return bool(stack.http.get(f"/v1/events/{event_id}").json()["learned"])


def test_the_v1_sdk_ranks_with_exclusions_rewards_and_defers_activation(stack: Stack) -> None:
    _fast(stack, "v1")
    client = PersonalizerClient(f"{stack.url}/loops/v1", CognitiveServicesCredentials(KEY))
    actions = [RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS]
    request = RankRequest(
        actions=actions, context_features=CONTEXT, excluded_actions=["sports"], event_id="v1-a"
    )
    first = client.rank(request)
    assert first.event_id == "v1-a" and first.reward_action_id != "sports"
    ranked = {r.id: r.probability for r in first.ranking}
    assert set(ranked) == {"news", "sports", "music"} and ranked["sports"] == 0.0
    assert abs(sum(ranked.values()) - 1.0) < 1e-9
    again = client.rank(request)  # the same request and event id: the same answer
    assert again.reward_action_id == first.reward_action_id
    assert [r.id for r in again.ranking] == [r.id for r in first.ranking]
    client.events.reward(event_id="v1-a", value=1.0)
    wait_until(lambda: _learned(stack, "v1-a"), 30, "the reward to be learned")

    # deferred: a reward without activation is not learned; with one, it is
    deferred = RankRequest(actions=actions, context_features=CONTEXT, defer_activation=True)
    never, shown = client.rank(deferred), client.rank(deferred)
    client.events.reward(event_id=never.event_id, value=1.0)
    client.events.activate(event_id=shown.event_id)
    client.events.reward(event_id=shown.event_id, value=1.0)
    wait_until(lambda: _learned(stack, shown.event_id), 30, "the activated event to be learned")
    time.sleep(1.5)  # past the never-activated event's wait too
    assert not _learned(stack, never.event_id)

    with pytest.raises(HttpOperationError) as bad:
        client.events.reward(event_id="v1-a", value=7.0)
    assert bad.value.response.status_code == 400
    assert bad.value.response.json()["error"]["code"] == "BadRequest"  # v1.0 knows three
    with pytest.raises(HttpOperationError) as unknown:
        client.events.reward(event_id=f"never-{uuid.uuid4().hex}", value=1.0)
    assert unknown.value.response.status_code == 404
    wrong = PersonalizerClient(f"{stack.url}/loops/v1", CognitiveServicesCredentials("wrong"))
    with pytest.raises(HttpOperationError) as denied:
        wrong.rank(request)
    assert denied.value.response.status_code == 401


def test_the_preview_sdk_ranks_one_and_many_slots(stack: Stack) -> None:
    _fast(stack, "preview")
    client = PreviewClient(f"{stack.url}/loops/preview", AzureKeyCredential(KEY))
    one = client.rank({"actions": ACTIONS, "contextFeatures": CONTEXT, "excludedActions": ["news"]})
    assert one["rewardActionId"] in ("sports", "music")
    client.reward(one["eventId"], {"value": 0.5})
    slots = [
        {"id": "hero", "baselineAction": "news", "features": [{"size": "large"}]},
        {"id": "side", "baselineAction": "sports", "features": [{"size": "small"}]},
    ]
    many = client.rank_multi_slot(
        {"actions": ACTIONS, "contextFeatures": CONTEXT, "slots": slots, "deferActivation": True}
    )
    chosen = [s["rewardActionId"] for s in many["slots"]]
    assert [s["id"] for s in many["slots"]] == ["hero", "side"] and len(set(chosen)) == 2
    assert all(0 < s["probability"] <= 1 for s in many["slots"])  # the extension
    client.activate_multi_slot(many["eventId"])
    client.reward_multi_slot(many["eventId"], {"reward": [{"slotId": "hero", "value": 1.0}]})
    for slot in ("hero", "side"):  # the side slot is learned with the default reward
        wait_until(
            lambda slot=slot: _learned(stack, f"{many['eventId']}/{slot}"), 30, f"{slot} learned"
        )
    differing = client.rank_multi_slot(  # each slot's own excludedActions
        {
            "actions": ACTIONS,
            "slots": [{**slots[0], "excludedActions": ["music"]}, slots[1]],
        }
    )
    assert differing["slots"][0]["rewardActionId"] != "music"
    with pytest.raises(HttpResponseError) as unknown:
        client.rank_multi_slot(
            {"actions": ACTIONS, "slots": [{**slots[0], "excludedActions": ["zz"]}, slots[1]]}
        )
    assert unknown.value.status_code == 400
    assert "excludedActions" in str(unknown.value)


def test_the_preview_sdk_configures_the_loop_and_moves_its_model(stack: Stack) -> None:
    admin = PersonalizerAdministrationClient(f"{stack.url}/loops/admin", AzureKeyCredential(KEY))
    config = admin.get_service_configuration()  # a new loop, as Personalizer's started
    assert config["rewardWaitTime"] == "PT10M" and config["explorationPercentage"] == 0.2
    config.update(
        rewardWaitTime="PT2S",
        explorationPercentage=0.05,
        rewardAggregation="sum",
        learningMode="Apprentice",
        modelExportFrequency="PT5M",
    )
    changed = admin.update_service_configuration(config)
    assert changed["learningMode"] == "Apprentice" and changed["modelExportFrequency"] == "PT5M"
    catalog = stack.http.get("/v1/catalogs/admin").json()
    assert catalog["mode"] == "apprentice"
    assert catalog["learning"]["reward_wait_seconds"] == 2.0
    assert catalog["learning"]["aggregation"] == "sum"
    assert catalog["constraints"]["exploration_floor"] == 0.05
    client = PreviewClient(f"{stack.url}/loops/admin", AzureKeyCredential(KEY))
    shown = client.rank(
        {"actions": ACTIONS, "contextFeatures": CONTEXT, "excludedActions": ["news"]}
    )
    assert shown["rewardActionId"] == "sports"  # apprentice: the first action not excluded

    policy = {"name": "eps", "arguments": "--cb_explore_adf --epsilon 0.1 -q ::"}
    assert admin.update_policy(policy)["arguments"].startswith("--cb_explore_adf --epsilon 0.1")
    assert admin.get_policy()["name"] == "eps"
    with pytest.raises(HttpResponseError) as refused:
        admin.update_policy({"name": "x", "arguments": "--cb_explore_adf --epsilon 0.2 -l 0.5"})
    assert refused.value.status_code == 400 and "-l" in str(refused.value)
    assert "--regcbopt" in admin.reset_policy()["arguments"]

    exported = b"".join(admin.export_model())
    admin.import_model(io.BytesIO(exported))
    assert admin.get_model_properties()["modelVersion"].startswith("2.")
    admin.reset_model()
    with pytest.raises(HttpResponseError) as garbage:
        admin.import_model(io.BytesIO(b"not a model"))
    assert garbage.value.status_code == 400
    assert "from" in admin.get_log_properties()["dateRange"]
    with pytest.raises(HttpResponseError) as logs:
        admin.delete_logs()
    assert logs.value.status_code == 501


def test_an_evaluation_through_the_preview_sdk(stack: Stack) -> None:
    admin = PersonalizerAdministrationClient(f"{stack.url}/loops/preview", AzureKeyCredential(KEY))
    now = time.time()
    contract = {
        "name": "try epsilon",
        "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "endTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
        "policies": [{"name": "eps", "arguments": "--cb_explore_adf --epsilon 0.3 -q ::"}],
    }
    admin.create_evaluation("eval-1", contract)
    listed = list(admin.list_evaluations())
    assert [e["id"] for e in listed] == ["eval-1"] and listed[0]["name"] == "try epsilon"
    start, end = time.gmtime(now - 3600), time.gmtime(now + 60)
    wait_until(
        lambda: (
            admin.get_evaluation("eval-1", start_time=_dt(start), end_time=_dt(end))["status"]
            in ("Succeeded", "Failed")
        ),
        60,
        "the evaluation to finish",
    )
    done = admin.get_evaluation("eval-1", start_time=_dt(start), end_time=_dt(end))
    assert done["status"] == "Succeeded", done
    sources = {r["name"]: r["policySource"] for r in done["content"]["value"]}
    assert sources == {
        "Online Policy": "Online",
        "Baseline": "Baseline",
        "Random": "Random",
        "eps": "Custom",
    }
    admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "eps"})
    assert admin.get_policy()["arguments"].startswith("--cb_explore_adf --epsilon 0.3")
    with pytest.raises(HttpResponseError) as rule:
        admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "Random"})
    assert rule.value.status_code == 404 and "LearningSettingsNotFound" in str(rule.value)
    admin.delete_evaluation("eval-1")
    assert list(admin.list_evaluations()) == []


def test_microsofts_quickstart_runs_with_only_endpoint_and_key_changed(stack: Stack) -> None:
    env = {
        **os.environ,
        "LOOPWISE_ENDPOINT": stack.url,
        "LOOPWISE_KEY": KEY,
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "personalizer_quickstart.py")],
        input="again\nq\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("featured") == 10
    r = httpx.get(
        f"{stack.url}/v1/catalogs/personalizer", headers={"Ocp-Apim-Subscription-Key": KEY}
    )
    assert r.status_code == 200  # the default loop, created by the first rank


def _dt(t: time.struct_time) -> Any:
    import datetime

    return datetime.datetime(*t[:6], tzinfo=datetime.UTC)
