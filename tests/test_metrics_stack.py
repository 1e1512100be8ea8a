"""Operations on a real stack: the API's and the worker's /metrics in the standard format,
moving as traffic flows; the alert rules and the Grafana dashboard in docs/monitoring read
only series that exist; every log line of both processes is one JSON object."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import NamedTuple

import httpx
import pytest
import yaml

from streams.telemetry import samples
from tests.conftest import ROOT, Stack, wait_until

pytestmark = pytest.mark.integration

MONITORING = ROOT / "docs" / "monitoring"
CATALOG = {
    "actions": [{"id": "red"}, {"id": "blue"}, {"id": "green"}],
    "learning": {"reward_wait_seconds": 1.0},
    "constraints": {"rules": [{"name": "no-green", "exclude": "action.id == 'green'"}]},
}
DECISIONS, REWARDED = 20, 10
USER = "shopper-7d1f"  # no log line may hold a user id
_SERIES = re.compile(r"\bloopwise_[a-z0-9_]+")


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("metrics"))
    s.start()
    assert s.http.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
    yield s
    s.stop()


def api_metrics(stack: Stack) -> dict[str, float]:
    r = stack.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text, strict=True)  # every family with its HELP and TYPE


def worker_metrics(stack: Stack) -> dict[str, float]:
    port = json.loads((stack.data / "worker-stats.json").read_text())["metrics_port"]
    return samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text, strict=True)


class Scrapes(NamedTuple):
    api: tuple[dict[str, float], dict[str, float]]  # before, after
    worker: tuple[dict[str, float], dict[str, float]]

    def exposed(self) -> set[str]:
        """Every series name either process shows, without a histogram's suffixes."""
        keys = {*self.api[1], *self.worker[1]}
        return {re.sub(r"_(bucket|count|sum)$", "", key.split("{")[0]) for key in keys}


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Scrapes:
    """The API's and the worker's metrics before and after decisions, rewards for half of
    them and every example learned."""
    wait_until(lambda: "metrics_port" in (stack.data / "worker-stats.json").read_text(), 30, "w")
    api, worker = api_metrics(stack), worker_metrics(stack)
    learned = stack.learned("shop")
    for i in range(DECISIONS):
        d = stack.decide("shop", context={"i": i}, user_id=f"{USER}-{i}")
        if i < REWARDED:
            body = {"event_id": d["event_id"], "value": 1.0}
            assert stack.http.post("/v1/rewards", json=body).status_code == 202
    wait_until(lambda: stack.learned("shop") >= learned + DECISIONS, 60, "every example learned")
    return Scrapes((api, api_metrics(stack)), (worker, worker_metrics(stack)))


def moved(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after[name] - before.get(name, 0.0)


def test_the_api_series_move_with_the_traffic(traffic: Scrapes) -> None:
    before, after = traffic.api
    assert moved(before, after, "loopwise_decisions_total") == DECISIONS
    assert moved(before, after, "loopwise_decide_seconds_count") == DECISIONS
    assert moved(before, after, "loopwise_reward_seconds_count") == REWARDED
    assert moved(before, after, "loopwise_rewards_accepted_total") == REWARDED
    assert moved(before, after, 'loopwise_reward_to_model_seconds_count{catalog="shop"}') == (
        DECISIONS
    )
    assert moved(before, after, "loopwise_replica_learned_total") == DECISIONS
    assert moved(before, after, "loopwise_outbox_sent_total") >= DECISIONS + REWARDED
    removed = 'loopwise_constraint_removals_total{catalog="shop",reason="rule:no-green"}'
    assert moved(before, after, removed) == DECISIONS
    assert after["loopwise_ready"] == 1 and after["loopwise_broker_connected"] == 1
    assert after['loopwise_follower_caught_up{replica="model"}'] == 1
    assert after["loopwise_outbox_pending"] == 0


def test_the_worker_serves_its_own_series_and_they_move(stack: Stack, traffic: Scrapes) -> None:
    before, after = traffic.worker
    assert moved(before, after, "loopwise_join_decisions_total") == DECISIONS
    # a reward that reaches the worker before its decision is held for it, then joined
    rewards = ("loopwise_join_rewards_total", "loopwise_join_held_rewards_total")
    assert sum(moved(before, after, name) for name in rewards) == REWARDED
    assert moved(before, after, "loopwise_join_emitted_total") == DECISIONS
    assert after["loopwise_worker_partitions"] > 0
    decisions_topic = f'loopwise_worker_consumer_lag_records{{topic="t{stack.port}-decisions"}}'
    assert decisions_topic in after


def referenced(text: str) -> set[str]:
    """The series a PromQL text names, without a histogram's _bucket/_count/_sum."""
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in _SERIES.findall(text)}


def test_the_alert_rules_read_only_series_that_exist(
    traffic: Scrapes,
) -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"]]
    names = {r["alert"] for r in alerts}
    for wanted in ("LoopwiseModelStale", "LoopwiseOutboxFilling", "LoopwiseFailoverActive"):
        assert wanted in names
    assert "LoopwiseWorkerConsumerLag" in names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        missing = referenced(rule["expr"]) - traffic.exposed()
        assert not missing, f"{rule['alert']} reads {missing}, which no process exposes"


def test_the_grafana_dashboard_reads_only_series_that_exist(
    traffic: Scrapes,
) -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    missing = referenced("\n".join(exprs)) - traffic.exposed()
    assert not missing, f"the dashboard reads {missing}, which no process exposes"


def test_the_metrics_reference_documents_every_series_a_process_exposes(
    traffic: Scrapes,
) -> None:
    doc = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    undocumented = []
    for name in sorted(traffic.exposed()):
        join = re.fullmatch(r"loopwise_join_(\w+)_total", name)  # listed by their short names
        if (
            f"`{name}`" not in doc
            and f"`{name}{{" not in doc
            and not (join and f"`{join.group(1)}`" in doc)
        ):
            undocumented.append(name)
    assert not undocumented, f"docs/reference/metrics.md does not list {undocumented}"


def test_every_log_line_of_the_api_and_the_worker_is_one_json_object(
    stack: Stack, traffic: Scrapes
) -> None:
    for name in ("api", "worker"):
        lines = (stack.data / "logs" / f"{name}.log").read_text().splitlines()
        assert lines, f"the {name} logged nothing"
        for line in lines:
            record = json.loads(line)
            assert {"ts", "level", "logger", "message"} <= record.keys(), line
            assert record["process"] == name
            assert USER not in line
