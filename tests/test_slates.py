"""Slates: no duplicates, diversity kept, logged conditional probabilities are exact."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine.actions import Action
from engine.errors import InvalidInput
from engine.sampling import Pmf, normalise, rng_for
from engine.slates import diversity_values, sample_slate

WEIGHTS = {"a": 5.0, "b": 3.0, "c": 2.0, "d": 1.0, "e": 0.5}
CATEGORY = {"a": "shoes", "b": "shoes", "c": "bags", "d": "hats", "e": "bags"}
ACTIONS = [
    Action(id=i, features={"banner": {"category": CATEGORY[i]}}, metadata={"tags": ["x"]})
    for i in WEIGHTS
]


def policy(slot: int, candidates: Sequence[Action]) -> Pmf:
    """A fixed policy that depends on the slot, with an exploration floor."""
    tilt = 1.0 + slot
    return normalise([WEIGHTS[a.id] ** (1.0 / tilt) for a in candidates], floor=0.1)


def test_slots_are_filled_in_order_without_duplicates() -> None:
    slate = sample_slate(3, ACTIONS, policy, rng_for("e-1"))
    assert [c.slot for c in slate] == [0, 1, 2]
    assert len({c.action.id for c in slate}) == 3
    for choice in slate:
        assert choice.probability == choice.pmf[choice.candidates.index(choice.action.id)] > 0
        assert sum(choice.pmf) == pytest.approx(1.0, abs=1e-12)


def test_slots_after_the_candidates_run_out_are_left_empty() -> None:
    empty: dict[int, str] = {}
    slate = sample_slate(5, ACTIONS, policy, rng_for("e-2"), {"category": 1}, empty=empty)
    assert len(slate) == 3  # three categories, one action each
    assert sorted(CATEGORY[c.action.id] for c in slate) == ["bags", "hats", "shoes"]
    assert sorted(empty) == [3, 4] and "used every eligible action" in empty[3]


def test_an_action_one_slot_excludes_may_fill_another() -> None:
    slate = sample_slate(2, ACTIONS[:2], policy, rng_for("e-4"), exclude=[{"a"}, set()])
    assert [(c.action.id, c.probability, c.candidates) for c in slate] == [
        ("b", 1.0, ["b"]),
        ("a", 1.0, ["a"]),
    ]


def test_a_slot_its_own_exclude_empties_is_left_empty_and_the_next_filled() -> None:
    empty: dict[int, str] = {}
    everything = set(WEIGHTS)
    slate = sample_slate(3, ACTIONS, policy, rng_for("e-5"), exclude=[(), everything], empty=empty)
    assert [c.slot for c in slate] == [0, 2]
    assert list(empty) == [1] and "its exclude removes all 4 actions" in empty[1]
    with pytest.raises(InvalidInput):
        sample_slate(1, ACTIONS, policy, rng_for("x"), exclude=[(), ()])


def test_same_seed_same_slate() -> None:
    first = sample_slate(3, ACTIONS, policy, rng_for("e-3"))
    assert first == sample_slate(3, ACTIONS, policy, rng_for("e-3"))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        sample_slate(0, ACTIONS, policy, rng_for("x"))
    assert info.value.field == "slots"
    with pytest.raises(InvalidInput) as info:
        sample_slate(2, ACTIONS, lambda k, c: np.ones(len(c) + 1), rng_for("x"))
    assert info.value.field == "pmf"


def test_diversity_keys_come_from_metadata_then_features() -> None:
    a = Action(
        id="a",
        features={"banner": {"category": "shoes", "colors=red": 1.0, "colors=blue": 1.0}},
        metadata={"brand": "acme", "tags": ["x", "y"]},
    )
    limits = {"brand": 1, "category": 1, "colors": 1, "tags": 1, "missing": 1}
    assert diversity_values(a, limits) == [
        ("brand", "acme"),
        ("category", "shoes"),
        ("colors", "red"),
        ("colors", "blue"),
        ("tags", "x"),
        ("tags", "y"),
    ]


@st.composite
def catalogs(draw: st.DrawFn) -> list[Action]:
    n = draw(st.integers(1, 12))
    return [
        Action(
            id=f"a{i}",
            features={"f": {"kind": draw(st.sampled_from(["k1", "k2", "k3"]))}},
            metadata={"brand": draw(st.sampled_from(["x", "y"]))},
        )
        for i in range(n)
    ]


@settings(max_examples=200, deadline=None)
@given(
    actions=catalogs(),
    n_slots=st.integers(1, 8),
    max_kind=st.integers(1, 3),
    max_brand=st.integers(1, 4),
    seed=st.text(max_size=8),
)
def test_no_duplicates_and_diversity_respected(
    actions: list[Action], n_slots: int, max_kind: int, max_brand: int, seed: str
) -> None:
    limits = {"kind": max_kind, "brand": max_brand}
    slate = sample_slate(n_slots, actions, policy_uniform, rng_for(seed), limits)
    ids = [c.action.id for c in slate]
    assert len(ids) == len(set(ids)) and 1 <= len(slate) <= n_slots
    kinds = Counter(c.action.features["f"]["kind"] for c in slate)
    brands = Counter(c.action.metadata["brand"] for c in slate)
    assert max(kinds.values()) <= max_kind and max(brands.values()) <= max_brand
    if len(slate) < n_slots:  # stopped early: nothing else would have fitted
        left = [a for a in actions if a.id not in ids]
        assert all(
            kinds[a.features["f"]["kind"]] >= max_kind or brands[a.metadata["brand"]] >= max_brand
            for a in left
        )
    for choice in slate:
        assert choice.action.id in choice.candidates
        assert choice.probability == choice.pmf[choice.candidates.index(choice.action.id)]


def policy_uniform(slot: int, candidates: Sequence[Action]) -> Pmf:
    return normalise(np.ones(len(candidates)))


@st.composite
def slot_exclusions(draw: st.DrawFn, actions: list[Action], n_slots: int) -> list[set[str]]:
    ids = st.sampled_from([a.id for a in actions])
    return [draw(st.sets(ids, max_size=len(actions))) for _ in range(n_slots)]


def policy_tilted(slot: int, candidates: Sequence[Action]) -> Pmf:
    """Unequal weights that change with the slot, with a floor."""
    weights = [1.0 + (int(a.id[1:]) * (slot + 1)) % 5 for a in candidates]
    return normalise(weights, floor=0.05)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), actions=catalogs(), n_slots=st.integers(1, 6), max_kind=st.integers(1, 3))
def test_a_slot_never_shows_what_it_excludes_and_its_pmf_is_over_its_own_candidates(
    data: st.DataObject, actions: list[Action], n_slots: int, max_kind: int
) -> None:
    own = data.draw(slot_exclusions(actions, n_slots))
    limits = {"kind": max_kind}
    empty: dict[int, str] = {}
    seed = data.draw(st.text(max_size=6))
    slate = sample_slate(n_slots, actions, policy_tilted, rng_for(seed), limits, None, own, empty)
    assert sorted([c.slot for c in slate] + list(empty)) == list(range(n_slots))
    filled = {c.slot: c for c in slate}
    shown: list[Action] = []
    for k in range(n_slots):
        kinds = Counter(a.features["f"]["kind"] for a in shown)
        expected = [
            a.id
            for a in actions
            if a not in shown and a.id not in own[k] and kinds[a.features["f"]["kind"]] < max_kind
        ]
        if k in empty:  # nothing left for it: the earlier slots, diversity, its exclude
            assert expected == [], (k, expected)
            continue
        c = filled[k]
        assert c.candidates == expected, "exactly what the slot may show, in catalog order"
        assert c.action.id not in own[k] and c.action not in shown
        assert sum(c.pmf) == pytest.approx(1.0, abs=1e-12) and min(c.pmf) > 0
        assert c.probability == c.pmf[c.candidates.index(c.action.id)]
        shown.append(c.action)


def test_conditional_frequencies_match_logged_probabilities() -> None:
    """Group slates by the choices of the earlier slots; within a group the next slot's
    candidates and pmf are fixed, so its empirical frequencies must match that pmf."""
    n = 100_000
    groups: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    pmfs: dict[tuple[str, ...], dict[str, float]] = {}
    for i in range(n):
        prefix: tuple[str, ...] = ()
        for choice in sample_slate(3, ACTIONS, policy, rng_for(str(i)), {"category": 2}):
            logged = dict(zip(choice.candidates, choice.pmf, strict=True))
            assert pmfs.setdefault(prefix, logged) == logged
            assert choice.probability == logged[choice.action.id]
            groups[prefix][choice.action.id] += 1
            prefix = (*prefix, choice.action.id)
    total_chi2, total_dof = 0.0, 0
    worst: tuple[float, tuple[str, ...]] = (1.0, ())
    tested = 0
    for prefix, counts in groups.items():
        size = sum(counts.values())
        ids = list(pmfs[prefix])
        expected = np.array([pmfs[prefix][i] for i in ids]) * size
        if len(ids) < 2 or expected.min() < 5:
            continue
        observed = np.array([counts[i] for i in ids])
        chi2, p = stats.chisquare(observed, expected)
        total_chi2, total_dof, tested = total_chi2 + chi2, total_dof + len(ids) - 1, tested + 1
        worst = min(worst, (float(p), prefix))
    overall = float(stats.chi2.sf(total_chi2, total_dof))
    report = (
        f"{tested} (slot, earlier choices) groups; pooled chi2={total_chi2:.1f} "
        f"dof={total_dof} p={overall:.3g}; worst group {worst[1]} p={worst[0]:.3g}"
    )
    print(report)
    assert tested >= 20, report
    assert overall > 1e-3, report
    assert worst[0] > 1e-3 / tested, report  # Bonferroni over the groups
