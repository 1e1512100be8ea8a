"""engine.inline: a request's own actions, checked once and reused (VW's parsed examples
with them), and rebuilt from the log for learning and for evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from api.requests import ActionRequest
from api.serving.catalogs import CatalogStore
from api.serving.replica import ModelReplica
from engine.catalog import parse_catalog
from engine.evaluation import ConstraintsPolicy, RulePolicy
from engine.failover import parse_failover
from engine.inline import parse_inline, rebuilt
from engine.learning import Exploration, Learning
from engine.limits import Limits
from engine.records import ActionUsed, TrainingExample
from jobs.evaluate import row
from policies.vw import VWPolicy
from streams.kv import KV
from streams.settings import Settings

LIMITS = Limits()
RAW: list[dict[str, Any]] = [
    {"id": f"a{i}", "features": {"item": {"size": float(i)}}, "metadata": {"tags": tags}}
    for i, tags in enumerate([[], ["kids"], [], ["sale"]])
]


def items(raw: list[dict[str, Any]]) -> list[ActionRequest]:
    return msgspec.convert(raw, list[ActionRequest])


def test_the_same_inline_actions_are_the_same_actions_and_hit_vws_parsed_examples() -> None:
    first, again = parse_inline(items(RAW), LIMITS), parse_inline(items(RAW), LIMITS)
    assert again.actions is first.actions, "a list seen before: one lookup"
    subset = parse_inline(items(RAW[1:3]), LIMITS)
    assert subset.actions[0] is first.actions[1], "an action seen before: the same object"
    changed: list[dict[str, Any]] = [{**RAW[0], "features": {"item": {"size": 9.0}}}]
    assert parse_inline(items(changed), LIMITS).actions[0] is not first.actions[0]
    policy = VWPolicy(Learning(exploration=Exploration("squarecb")))
    try:
        for k in range(20):  # many requests, each its own parse, over the same actions
            offered = parse_inline(items(RAW[k % 2 :][:3]), LIMITS).actions
            policy.distribution({"user": {"k": float(k)}}, offered)
        assert policy.parsed_examples == 4, "each distinct action parsed once"
    finally:
        policy.close()


def used() -> list[ActionUsed]:
    return parse_inline(items(RAW), LIMITS).used


def example(
    eligible: list[str], chosen: int = 0, actions: list[ActionUsed] | None = None
) -> TrainingExample:
    pmf = [1.0 / len(eligible)] * len(eligible)
    return TrainingExample(
        event_id="e1", catalog="c", catalog_version=1, context={"user": {"x": 1.0}},
        eligible=eligible, chosen=chosen, probability=pmf[chosen], reward=1.0, rewards=1,
        reason="reward", decided_ts=0.0, emitted_ts=0.0, pmf=pmf,
        actions=used() if actions is None else actions,
    )  # fmt: skip


def test_evaluations_replay_the_request_s_actions_as_its_universe() -> None:
    """A catalog that stores none: its rule removed a0's neighbour a1 (kids) from the
    logged decision. Without the rule a1 would be shown, and the log never showed it:
    the constraints candidate must see a1 in the universe to say so."""
    body = {
        "actions": [],
        "constraints": {"rules": [{"name": "k", "exclude": "'kids' in action.tags"}]},
    }
    catalog = parse_catalog("c", body, LIMITS, version=1, now=0.0)
    found = row(example(["a0", "a2", "a3"]), catalog)
    assert found is not None
    assert [a.id for a in found.actions] == ["a0", "a2", "a3"]
    assert found.actions[2].metadata == {"tags": ["sale"]}
    no_rule = parse_catalog("c", {"actions": [], "constraints": {}}, LIMITS, version=2, now=0.0)
    pmf = ConstraintsPolicy(no_rule.constraints).pmf(found)
    assert np.isclose(pmf.sum(), 3 / 4), "a quarter on a1, which the log could not show"
    priority = RulePolicy(
        parse_failover({"safe_policy": "priority", "priority": ["a3"]}, [], LIMITS)
    )
    assert list(priority.pmf(found)) == [0.0, 0.0, 1.0]
    assert row(example(["a0", "zz"]), catalog) is None, "an id neither logged nor stored"


def test_the_replica_learns_inline_examples_and_refuses_ones_naming_what_they_lack(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, broker="127.0.0.1:1")
    catalogs = CatalogStore(KV(tmp_path / "catalogs"), settings.limits)
    catalogs.put("c", {"actions": []}, 0.0)
    replica = ModelReplica(settings, catalogs)
    try:
        assert replica.learn(example(["a0", "a3"], chosen=1))
        assert not replica.learn(msgspec.structs.replace(example(["a0", "x"]), event_id="e2"))
        assert not replica.learn(
            msgspec.structs.replace(example(["a0"], actions=[]), event_id="e3")
        )
        assert replica.counts["learned"] == 1 and replica.counts["invalid_examples"] == 2
        rebuilt_ = rebuilt(used())
        assert rebuilt_["a3"].vw_body is None, "a VW line only where one is read"
    finally:
        replica.close()
