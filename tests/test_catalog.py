"""Catalog validation: every mistake is refused with a message that names its field."""

from __future__ import annotations

import copy

import pytest

from engine.catalog import parse_catalog
from engine.errors import InvalidInput, LimitExceeded
from engine.learning import (
    ALGORITHMS,
    DEFAULT_FLOOR,
    DEFAULTS,
    FLOORED_DEFAULTS,
    LEGACY_DEFAULTS,
    Exploration,
    Learning,
    learning_json,
)
from engine.limits import Limits
from policies.vw import vw_args

GOOD: dict[str, object] = {
    "actions": [
        {
            "id": "a",
            "features": {"banner": {"theme": "run", "discount": 0.2}},
            "metadata": {"x": 1},
        },
        {"id": "b", "features": {"banner": {"theme": "yoga"}}},
    ],
    "learning": {
        "exploration": {"algorithm": "epsilon", "epsilon": 0.1},
        "interactions": ["ca"],
        "reward_wait_seconds": 5,
        "default_reward": 0,
        "aggregation": "sum",
    },
}


def test_good_catalog_parses_with_defaults_and_versions() -> None:
    c = parse_catalog("shop", GOOD, Limits(), version=3, now=1.0)
    assert c.version == 3 and [a.id for a in c.actions] == ["a", "b"]
    assert c.learning.aggregation == "sum" and c.learning.exploration.value("epsilon") == 0.1
    assert c.action("b").features == {"banner": {"theme": "yoga"}}
    assert c.to_json()["learning"]["exploration"] == {"algorithm": "epsilon", "epsilon": 0.1}  # type: ignore[index]
    assert (
        parse_catalog("d", {"actions": [{"id": "x"}]}, Limits(), version=1, now=0).learning
        == Learning()
    )


def with_change(path: str, value: object) -> dict[str, object]:
    body = copy.deepcopy(GOOD)
    node: object = body
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    last = keys[-1]
    if value is KeyError:
        del node[last]  # type: ignore[attr-defined]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return body


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("not an object", "body", "must be an object"),
        (with_change("actions", {"id": "a"}), "actions", "must be an array"),
        (with_change("actions.1.id", "a"), "actions[1].id", "appears twice"),
        (with_change("actions.0.id", ""), "actions[0].id", "1-128"),
        (with_change("actions.0.id", "a\nb"), "actions[0].id", "printable"),
        (with_change("actions.0.colour", "red"), "actions[0].colour", "not a known field"),
        (
            with_change("actions.0.features", {"banner": {"d": float("nan")}}),
            "actions[0].features.banner.d",
            "finite",
        ),
        (with_change("learning.aggregation", "max"), "learning.aggregation", "earliest, sum"),
        (
            with_change("learning.reward_wait_seconds", 0),
            "learning.reward_wait_seconds",
            "must be in",
        ),
        (
            with_change("learning.reward_wait_seconds", "5"),
            "learning.reward_wait_seconds",
            "number",
        ),
        (
            with_change("learning.exploration", {"algorithm": "greedy"}),
            "learning.exploration.algorithm",
            "epsilon, squarecb",
        ),
        (
            with_change("learning.exploration", {"algorithm": "epsilon", "epsilon": 2}),
            "learning.exploration.epsilon",
            "[0, 1]",
        ),
        (
            with_change("learning.exploration", {"algorithm": "epsilon", "bag": 3}),
            "learning.exploration.bag",
            "not a parameter of 'epsilon'",
        ),
        (
            with_change("learning.exploration", {"algorithm": "bag", "bag": 2.5}),
            "learning.exploration.bag",
            "whole number",
        ),
        (
            with_change(
                "learning.exploration", {"algorithm": "regcbopt", "min_reward": 1, "max_reward": 1}
            ),
            "learning.exploration.max_reward",
            "above min_reward",
        ),
        (with_change("learning.interactions", ["cx"]), "learning.interactions[0]", "2-3 letters"),
        (with_change("learning.policy", "magic"), "learning.policy", "vw, uniform"),
    ],
)
def test_invalid_catalogs_name_the_field(body: object, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        parse_catalog("shop", body, Limits(), version=1, now=0)
    assert info.value.field == field


def test_limits_are_enforced_and_stated() -> None:
    body = {"actions": [{"id": str(i)} for i in range(11)]}
    with pytest.raises(LimitExceeded, match="limit of 10") as info:
        parse_catalog("shop", body, Limits(max_actions=10), version=1, now=0)
    assert info.value.field == "actions"


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "a/b", "ü"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="name"):
        parse_catalog(name, GOOD, Limits(), version=1, now=0)


@pytest.mark.parametrize("optimizer", ["coin", "adaptive"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_builds_a_command_line_vw_accepts(algorithm: str, optimizer: str) -> None:
    import vowpalwabbit

    args = vw_args(Learning(exploration=Exploration(algorithm), optimizer=optimizer))
    assert f"--{algorithm}" in args or algorithm == "epsilon"
    assert ("--coin" in args) == (optimizer == "coin")
    ws = vowpalwabbit.Workspace(args)
    ws.finish()


def test_regcb_gets_the_reward_range_as_its_cost_range_and_round_trips() -> None:
    body = with_change(
        "learning.exploration", {"algorithm": "regcbopt", "min_reward": -2, "max_reward": 50}
    )
    catalog = parse_catalog("shop", body, Limits(), version=1, now=0)
    args = vw_args(catalog.learning).split()
    assert args[args.index("--cb_min_cost") + 1] == "-50.0"
    assert args[args.index("--cb_max_cost") + 1] == "2.0"
    assert args[args.index("--mellowness") + 1] == "0.0001"
    again = parse_catalog("shop", catalog.to_json(), Limits(), version=2, now=0)
    assert vw_args(again.learning) == vw_args(catalog.learning)  # the same model


def test_each_defaults_epoch_resolves_to_its_own_settings_and_explicit_ones_win() -> None:
    bare = {"actions": [{"id": "x"}]}
    new = parse_catalog("d", bare, Limits(), version=1, now=0).learning
    assert (new.exploration.algorithm, new.optimizer) == ("regcbopt", "adaptive")
    assert new.exploration.value("mellowness") == 0.0001
    assert new == Learning(exploration=Exploration("regcbopt"), optimizer="adaptive")
    old = parse_catalog("d", bare, Limits(), version=1, now=0, defaults=LEGACY_DEFAULTS).learning
    assert (old.exploration.algorithm, old.optimizer) == ("squarecb", "coin")
    assert vw_args(old) == vw_args(Learning(exploration=Exploration("squarecb"), optimizer="coin"))
    regcb = {**bare, "learning": {"exploration": {"algorithm": "regcbopt"}}}
    legacy = parse_catalog("d", regcb, Limits(), version=1, now=0, defaults=LEGACY_DEFAULTS)
    assert legacy.learning.optimizer == "coin"  # what an opt-in RegCB catalog had
    assert legacy.learning.exploration.value("mellowness") == 0.001
    explicit = {
        **bare,
        "learning": {
            "exploration": {"algorithm": "regcbopt", "mellowness": 0.01},
            "optimizer": "coin",
        },
    }
    for defaults in (LEGACY_DEFAULTS, DEFAULTS):
        learning = parse_catalog(
            "d", explicit, Limits(), version=1, now=0, defaults=defaults
        ).learning
        assert learning.optimizer == "coin" and learning.exploration.value("mellowness") == 0.01
    # what GET shows resolves every default, so it parses back to the same model
    for learning in (new, old):
        shown = {**bare, "learning": learning_json(learning)}
        again = parse_catalog("d", shown, Limits(), version=2, now=0).learning
        assert learning_json(again) == learning_json(learning)
        assert vw_args(again) == vw_args(learning)


def test_new_catalogs_explore_with_the_default_floor_and_older_epochs_keep_none() -> None:
    bare = {"actions": [{"id": "x"}, {"id": "y"}]}
    new = parse_catalog("d", bare, Limits(), version=1, now=0)
    assert new.constraints.exploration_floor == DEFAULT_FLOOR > 0
    assert new.to_json()["constraints"] == {"exploration_floor": DEFAULT_FLOOR}  # GET shows it
    capped = {**bare, "constraints": {"pinned": "y"}}
    shown = parse_catalog("d", capped, Limits(), version=1, now=0).to_json()["constraints"]
    assert shown == {"pinned": "y", "exploration_floor": DEFAULT_FLOOR}
    for defaults in (LEGACY_DEFAULTS, FLOORED_DEFAULTS - 1):  # stored before the floor
        old = parse_catalog("d", bare, Limits(), version=1, now=0, defaults=defaults)
        assert old.constraints.exploration_floor == 0.0 and old.to_json()["constraints"] == {}
    off = {**bare, "constraints": {"exploration_floor": 0}}  # a catalog may turn it off
    assert parse_catalog("d", off, Limits(), version=1, now=0).constraints.exploration_floor == 0
    again = parse_catalog("d", new.to_json(), Limits(), version=2, now=0)
    assert again.constraints.exploration_floor == DEFAULT_FLOOR


def test_the_optimizer_defaults_by_algorithm_round_trips_and_is_validated() -> None:
    catalog = parse_catalog("shop", GOOD, Limits(), version=1, now=0)
    assert catalog.learning.optimizer == "coin"  # epsilon
    body = {**GOOD, "learning": {"optimizer": "adaptive"}}
    adaptive = parse_catalog("shop", body, Limits(), version=1, now=0)
    assert adaptive.learning.optimizer == "adaptive"
    again = parse_catalog("shop", adaptive.to_json(), Limits(), version=2, now=0)
    assert vw_args(again.learning) == vw_args(adaptive.learning)
    with pytest.raises(InvalidInput, match="coin, adaptive") as info:
        bad = {**GOOD, "learning": {"optimizer": "sgd"}}
        parse_catalog("shop", bad, Limits(), version=1, now=0)
    assert info.value.field == "learning.optimizer"
