"""engine.decision: constraints before the policy, exact probabilities after it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import stats

from engine.actions import Action
from engine.catalog import Catalog, parse_catalog
from engine.decision import Slot, decide
from engine.features import Features
from engine.limits import Limits
from engine.sampling import Pmf

NOW = 1_800_000_000.0
ACTIONS = [
    {
        "id": f"a{i}",
        "features": {"banner": {"i": i}},
        "metadata": {
            "sku": f"S{i}",
            "category": "shoes" if i % 2 else "bags",
            "tags": ["kids"] if i == 3 else [],
        },
    }
    for i in range(8)
]
CONSTRAINTS = {
    "rules": [
        {
            "name": "no-kids-at-night",
            "when": "context.hour >= 22",
            "exclude": "'kids' in action.tags",
        }
    ],
    "schedules": {"a5": {"start": "2020-01-01T00:00:00+00:00", "end": "2021-01-01T00:00:00+00:00"}},
    "inventory": {"sku_field": "sku", "threshold": 0},
    "frequency_caps": [{"name": "a0-twice", "actions": ["a0"], "limit": 2, "window_seconds": 3600}],
    "boost": {"a1": 3.0},
    "exploration_floor": 0.2,
    "diversity": {"max_per": {"category": 2}},
}


def catalog(constraints: object = CONSTRAINTS) -> Catalog:
    body = {"actions": ACTIONS, "constraints": constraints}
    return parse_catalog("shop", body, Limits(), version=1, now=0.0)


class Fixed:
    """A fixed model: weight grows with the action's index."""

    name = "fixed"

    def ranked(self, context: Features, actions: Sequence[Action]) -> tuple[Pmf, Pmf]:
        weights = np.array([1.0 + float(a.id[1:]) for a in actions])
        return weights / weights.sum(), weights


fixed_policy = Fixed()


def test_constraints_remove_before_the_policy_and_say_why() -> None:
    c = catalog()
    d = decide(
        c,
        c.actions,
        {"context": {"hour": 23.0}},
        "e1",
        NOW,
        fixed_policy,
        exposures={"a0": [NOW - 10, NOW - 20]},
        stock={"S2": 0.0, "S4": 7.0},
    )
    shown = [a.id for a in d.slots[0].actions]
    assert shown == ["a1", "a4", "a6", "a7"]
    assert d.removed == {
        "schedule": ["a5"],
        "inventory": ["a2"],
        "rule:no-kids-at-night": ["a3"],
        "cap:a0-twice": ["a0"],
    }


def test_100k_decisions_show_each_action_at_its_logged_probability() -> None:
    c = catalog()
    context: Features = {"context": {"hour": 12.0}}
    n = 100_000
    shown: Counter[str] = Counter()
    pmf_seen = None
    for i in range(n):
        d = decide(c, c.actions, context, f"ev-{i}", NOW, fixed_policy, stock={"S2": 0.0})
        s = d.slots[0]
        assert s.probability == s.pmf[s.chosen] > 0
        shown[s.actions[s.chosen].id] += 1
        pmf_seen = s.pmf if pmf_seen is None else pmf_seen
        assert np.array_equal(s.pmf, pmf_seen), "a fixed model gives a fixed pmf"
    ids = [a.id for a in d.slots[0].actions]
    expected = np.asarray(pmf_seen) * n
    observed = np.array([shown[a] for a in ids])
    chi2, p = stats.chisquare(observed, expected)
    report = f"{n} decisions, {len(ids)} actions: chi2={chi2:.2f} dof={len(ids) - 1} p={p:.3g}"
    print(report)
    assert p > 1e-4, f"{report} observed={observed} expected={expected.round()}"
    assert min(pmf_seen) >= 0.2 / len(ids) - 1e-12, "the exploration floor holds"
    assert "a2" not in shown and "a5" not in shown


def test_slots_never_repeat_keep_diversity_and_log_conditional_probabilities() -> None:
    c = catalog()
    slots = [Slot("hero", {}), Slot("side", {"slot": {"size": 1.0}}), Slot("footer", {})]
    for i in range(300):
        d = decide(c, c.actions, {}, f"s-{i}", NOW, fixed_policy, slots=slots)
        chosen = [s.actions[s.chosen] for s in d.slots]
        assert len({a.id for a in chosen}) == len(chosen) == 3
        assert max(Counter(a.metadata["category"] for a in chosen).values()) <= 2
        for k, s in enumerate(d.slots):
            assert s.event_id == f"s-{i}/{slots[k].id}"
            assert s.context["slot"]["position"] == float(k)
            assert s.probability == pytest.approx(s.pmf[s.chosen]) and s.probability > 0
            earlier = {a.id for a in chosen[:k]}
            assert not earlier & {a.id for a in s.actions}, "candidates exclude earlier slots"


@pytest.mark.parametrize(
    ("fallback", "expect"),
    [({"action": "a7"}, "a7"), ({"empty": True, "reason": "sold out"}, None), (None, None)],
)
def test_nothing_eligible_gives_the_fallback_or_an_empty_answer(
    fallback: object, expect: str | None
) -> None:
    spec = {"inventory": {"sku_field": "sku", "threshold": 0}}
    if fallback is not None:
        spec["fallback"] = fallback
    c = catalog(spec)
    stock = {f"S{i}": 0.0 for i in range(8)}
    d = decide(c, c.actions, {}, "e", NOW, fixed_policy, stock=stock)
    if expect is None:
        assert d.slots == [] and d.reason
        if fallback:
            assert d.reason == "sold out"
    else:
        assert [s.actions[s.chosen].id for s in d.slots] == [expect]
        assert d.slots[0].fallback and d.slots[0].probability == 1.0
    assert len(d.removed["inventory"]) == 8


def test_pinned_action_is_shown_with_probability_one() -> None:
    c = catalog({"pinned": "a6"})
    d = decide(c, c.actions, {}, "e", NOW, fixed_policy)
    s = d.slots[0]
    assert s.actions[s.chosen].id == "a6" and s.probability == 1.0


@pytest.mark.parametrize(
    ("cap", "field"),
    [
        ({"limit": 257, "window_seconds": 60}, "constraints.frequency_caps[0].limit"),
        (
            {"limit": 5, "window_seconds": 90 * 86400},
            "constraints.frequency_caps[0].window_seconds",
        ),
    ],
)
def test_caps_the_exposure_store_could_not_enforce_are_refused(
    cap: dict[str, object], field: str
) -> None:
    from engine.errors import InvalidInput

    spec = {"frequency_caps": [{"name": "c", "actions": ["a0"], **cap}]}
    with pytest.raises(InvalidInput) as info:
        catalog(spec)
    assert info.value.field == field


PROMOS = [
    {"id": f"promo-{c}", "features": {"p": {"x": 1.0}}, "metadata": {"category": "promo"}}
    for c in "abc"
] + [
    {"id": f"item-{i}", "features": {"p": {"x": 0.5}}, "metadata": {"category": "item"}}
    for i in range(4)
]


def promo_catalog(cap: dict[str, object]) -> Catalog:
    body = {
        "actions": PROMOS,
        "constraints": {"frequency_caps": [cap], "diversity": {"max_per": {"category": 2}}},
    }
    return parse_catalog("promos", body, Limits(), version=1, now=0.0)


class PromoFirst:
    """Puts most of the mass on promos, so a slate that may show one will."""

    name = "promo-first"

    def ranked(self, context: Features, actions: Sequence[Action]) -> tuple[Pmf, Pmf]:
        weights = np.array([50.0 if a.id.startswith("promo") else 1.0 for a in actions])
        return weights / weights.sum(), weights


promo_first = PromoFirst()


@pytest.mark.parametrize(
    ("cap", "history"),
    [
        (  # a set cap with one promo already shown this hour: one more at most
            {"name": "promos", "actions": ["promo-a", "promo-b", "promo-c"], "limit": 2},
            {"promo-a": [NOW - 60.0]},
        ),
        ({"name": "per-category", "group": "category", "limit": 2}, {"promo-a": [NOW - 60.0]}),
        ({"name": "promos", "actions": ["promo-a", "promo-b", "promo-c"], "limit": 1}, None),
    ],
    ids=["set-cap", "group-cap", "no-user-in-slate"],
)
def test_caps_count_the_earlier_slots_of_a_slate(
    cap: dict[str, object], history: dict[str, list[float]] | None
) -> None:
    c = promo_catalog({**cap, "window_seconds": 3600})
    already = sum(len(ts) for ts in (history or {}).values())
    limit = int(str(cap["limit"]))
    slots = [Slot(str(k), {}) for k in range(3)]
    for n in range(300):
        d = decide(c, c.actions, {}, f"e{n}", NOW, promo_first, exposures=history, slots=slots)
        shown = [s.actions[s.chosen].id for s in d.slots]
        assert sum(a.startswith("promo") for a in shown) + already <= limit, shown
        for k, s in enumerate(d.slots):  # each slot sampled from what the cap still allows
            used = already + sum(a.startswith("promo") for a in shown[:k])
            offered = [a.id for a in s.actions]
            assert used < limit or not any(a.startswith("promo") for a in offered), offered
            assert s.probability == pytest.approx(float(s.pmf[s.chosen])) and s.probability > 0


class Broken:
    """A model that fails on every request, as a corrupt one would."""

    name = "broken"

    def ranked(self, context: Features, actions: Sequence[Action]) -> tuple[Pmf, Pmf]:
        raise RuntimeError("the model file is corrupt")


@pytest.mark.parametrize("slots", [None, [Slot("hero", {}), Slot("side", {})]])
def test_a_failing_policy_is_answered_by_the_safe_policy_and_reported(
    slots: list[Slot] | None,
) -> None:
    c = catalog({"exploration_floor": 0.0})
    d = decide(c, c.actions, {}, "e", NOW, Broken(), slots=slots)
    assert len(d.slots) == (len(slots) if slots else 1)
    for s in d.slots:
        assert s.policy == "uniform" and s.fallback
        assert np.allclose(s.pmf, 1.0 / len(s.actions)) and s.probability == s.pmf[s.chosen]
    reason = "policy broken failed: the model file is corrupt"
    assert [(f.cause, f.detail) for f in d.failures] == [("error", reason)] * len(d.slots)
    assert all(s.fallback_reason == reason for s in d.slots)
    healthy = decide(c, c.actions, {}, "e", NOW, fixed_policy, slots=slots)
    assert not healthy.failures and not any(s.fallback for s in healthy.slots)
