"""Every constraint invariant, checked on whole answers of `engine.decision.decide`.

Hypothesis draws catalogs with every kind of constraint (rules, schedules, inventory, set
and group frequency caps, diversity, pinned, boosts, exploration floors, fallbacks), a
user's exposure history (timestamps inside, outside and on the edge of the cap windows,
for actions the catalog no longer has too), stock levels, a context, the request's
candidates/exclude and its slots (none, a count, or named slots with features), each
slot with its own exclude or none. Each
answer is held against a plain reference written from the documented semantics
(engine.constraints, engine.slates), not from the code under test: for every slot k the
candidates are exactly the actions eligible once the user's exposures *and* slots
0..k-1 count, less slot k's own exclude (a slot left with none is empty, and the later
slots are still filled), and the logged pmf is the policy's pmf shaped by pin, boost and floor. A
small catalog is then sampled exhaustively: the frequency of each slate must match the
product of its slots' conditional probabilities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from engine.actions import Action
from engine.catalog import Catalog, parse_catalog
from engine.decision import Decision, Slot, SlotDecision, decide
from engine.eligibility import eligible
from engine.errors import InvalidInput
from engine.features import Features
from engine.limits import Limits
from engine.sampling import Pmf

NOW = 1_800_000_000.0
LIMITS = Limits()
GONE = "gone"  # an action id in the exposure history that the catalog no longer has
DIVERSITY_KEYS = ("brand", "tags", "kind", "colors")
BERLIN = "Europe/Berlin"

# --- the generated description and its catalog JSON ---------------------------------------


@dataclass(frozen=True)
class ActionSpec:
    id: str
    weight: float  # the fixed policy's weight
    brand: str | int | None = None  # metadata scalar: group caps and diversity
    sku: str | int | None = None  # metadata: inventory
    tags: tuple[str, ...] = ()  # metadata list: rules and diversity
    kind: str | None = None  # feature f.kind: rules and diversity
    colors: tuple[str, ...] = ()  # list feature f.colors (flattened colors=<value>): diversity

    def to_json(self) -> dict[str, object]:
        metadata: dict[str, object] = {"tags": list(self.tags)}
        if self.brand is not None:
            metadata["brand"] = self.brand
        if self.sku is not None:
            metadata["sku"] = self.sku
        f: dict[str, object] = {}
        if self.kind is not None:
            f["kind"] = self.kind
        if self.colors:
            f["colors"] = list(self.colors)
        return {"id": self.id, "features": {"f": f} if f else {}, "metadata": metadata}

    def diversity_values(self, key: str) -> set[object]:
        """What a diversity limit on `key` counts for this action, as generated."""
        if key == "brand":
            return set() if self.brand is None else {self.brand}
        if key == "tags":
            return set(self.tags)
        if key == "kind":
            return set() if self.kind is None else {self.kind}
        return set(self.colors)


@dataclass(frozen=True)
class RuleDef:
    name: str
    when: str | None
    test: str
    exclude: bool


@dataclass(frozen=True)
class WindowDef:
    start: float | None
    end: float | None
    zone: int | str  # how the times are written: a UTC offset in hours, or BERLIN local


@dataclass(frozen=True)
class InventoryDef:
    threshold: float
    unknown: str  # "in_stock" | "out_of_stock"


@dataclass(frozen=True)
class CapDef:
    name: str
    limit: int
    window: float
    members: tuple[str, ...] = ()  # a set cap
    group: str | None = None  # a group cap on this metadata key


NamedSlots = tuple[tuple[str, float | None], ...]  # (slot id, its "hint.tilt" feature)


@dataclass(frozen=True)
class Case:
    actions: tuple[ActionSpec, ...]
    rules: tuple[RuleDef, ...] = ()
    windows: Mapping[str, WindowDef] = field(default_factory=dict)
    inventory: InventoryDef | None = None
    caps: tuple[CapDef, ...] = ()
    pinned: str | None = None
    boost: Mapping[str, float] = field(default_factory=dict)
    floor: float = 0.0
    fallback: tuple[str, str] | None = None  # ("action", id) or ("empty", reason)
    diversity: Mapping[str, int] = field(default_factory=dict)
    context: Features = field(default_factory=dict)
    exposures: Mapping[str, Sequence[float]] | None = None
    stock: Mapping[str, float] = field(default_factory=dict)
    candidates: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    slots: int | NamedSlots | None = None
    slot_exclude: tuple[tuple[str, ...], ...] = ()  # slot k's own exclude, by position
    event_id: str = "ev"

    def slot_list(self) -> list[Slot] | None:
        """The slots as api.decide builds them from the request."""
        if self.slots is None:
            return None
        if isinstance(self.slots, int):
            return [Slot(str(k), {}, self.own(k)) for k in range(self.slots)]
        return [
            Slot(sid, {} if t is None else {"hint": {"tilt": t}}, self.own(k))
            for k, (sid, t) in enumerate(self.slots)
        ]

    def own(self, k: int) -> frozenset[str]:
        """What slot k may not show, besides the request's exclude."""
        return frozenset(self.slot_exclude[k]) if k < len(self.slot_exclude) else frozenset()

    def tilt(self, k: int) -> float:
        if isinstance(self.slots, tuple):
            return self.slots[k][1] or 1.0
        return 1.0


def iso(t: float, zone: int | str) -> str:
    if isinstance(zone, str):
        return datetime.fromtimestamp(t, ZoneInfo(zone)).replace(tzinfo=None).isoformat()
    return datetime.fromtimestamp(t, timezone(timedelta(hours=zone))).isoformat()


def catalog_json(case: Case) -> dict[str, object]:
    constraints: dict[str, object] = {
        "rules": [
            {"name": r.name, ("exclude" if r.exclude else "require"): r.test}
            | ({"when": r.when} if r.when else {})
            for r in case.rules
        ],
        "frequency_caps": [
            {"name": c.name, "limit": c.limit, "window_seconds": c.window}
            | ({"group": c.group} if c.group else {"actions": list(c.members)})
            for c in case.caps
        ],
        "boost": dict(case.boost),
        "exploration_floor": case.floor,
        "pinned": case.pinned,
    }
    schedules: dict[str, dict[str, str]] = {}
    for aid, w in case.windows.items():
        spec = {k: iso(v, w.zone) for k, v in (("start", w.start), ("end", w.end)) if v is not None}
        schedules[aid] = spec | ({"timezone": w.zone} if isinstance(w.zone, str) else {})
    constraints["schedules"] = schedules
    if case.inventory is not None:
        constraints["inventory"] = {
            "sku_field": "sku",
            "threshold": case.inventory.threshold,
            "unknown": case.inventory.unknown,
        }
    if case.fallback is not None:
        kind, value = case.fallback
        constraints["fallback"] = (
            {"action": value} if kind == "action" else {"empty": True, "reason": value}
        )
    if case.diversity:
        constraints["diversity"] = {"max_per": dict(case.diversity)}
    return {"actions": [a.to_json() for a in case.actions], "constraints": constraints}


# --- the rules the strategies use, each with a plain restatement --------------------------

Context = Features


def _hour(c: Context) -> float | None:
    value = c.get("context", {}).get("hour")
    return value if isinstance(value, float) else None


WHENS: dict[str, Callable[[Context], bool]] = {
    "context.hour >= 12": lambda c: (h := _hour(c)) is not None and h >= 12,
    "context.user.segment == 'vip'": lambda c: c.get("user", {}).get("segment") == "vip",
}
TESTS: dict[str, Callable[[Context, ActionSpec], bool]] = {
    "action.tags contains 'kids'": lambda c, a: "kids" in a.tags,
    "action.metadata.brand == 'x'": lambda c, a: a.brand == "x",
    # a comparison with a missing value is false: require removes actions without a kind
    "action.f.kind != 'k2'": lambda c, a: a.kind is not None and a.kind != "k2",
    "action.id in ['a1', 'a4']": lambda c, a: a.id in ("a1", "a4"),
    "context.hour < 6 or action.id == 'a2'": lambda c, a: (
        a.id == "a2" or ((h := _hour(c)) is not None and h < 6)
    ),
}

# --- the strategies -----------------------------------------------------------------------

WEIGHTS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]), st.floats(0, 10))


@st.composite
def action_specs(draw: st.DrawFn, i: int) -> ActionSpec:
    return ActionSpec(
        id=f"a{i}",
        weight=draw(WEIGHTS),
        brand=draw(st.sampled_from([None, "x", "y", "z", 3])),
        sku=draw(st.sampled_from([None, "s0", "s1", "s2", 7])),
        tags=tuple(draw(st.lists(st.sampled_from(["kids", "sale"]), unique=True, max_size=2))),
        kind=draw(st.sampled_from([None, "k1", "k2", "k3"])),
        colors=tuple(draw(st.lists(st.sampled_from(["red", "blue"]), unique=True, max_size=2))),
    )


@st.composite
def windows(draw: st.DrawFn, ids: list[str]) -> dict[str, WindowDef]:
    """Windows [start, end) around NOW, on whole half hours: some start or end at NOW."""
    edge = st.one_of(st.none(), st.integers(-3, 3).map(lambda d: NOW + d * 1800.0))
    zone: st.SearchStrategy[int | str] = st.one_of(st.integers(-8, 9), st.just(BERLIN))
    out: dict[str, WindowDef] = {}
    for aid in draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids))):
        start, end = draw(edge), draw(edge)
        if (start is None and end is None) or (start and end and end <= start):
            continue
        out[aid] = WindowDef(start, end, draw(zone))
    return out


@st.composite
def caps(draw: st.DrawFn, ids: list[str]) -> tuple[CapDef, ...]:
    out: list[CapDef] = []
    for i in range(draw(st.integers(0, 3))):
        limit = draw(st.integers(1, 3))
        window = draw(st.sampled_from([60.0, 3600.0]))
        if draw(st.booleans()):
            out.append(CapDef(f"c{i}", limit, window, group="brand"))
        else:
            members = draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
            out.append(CapDef(f"c{i}", limit, window, members=tuple(members)))
    return tuple(out)


def exposure_times() -> st.SearchStrategy[float]:
    """Inside, outside and exactly on the edge of 60 s and 3600 s windows, and later."""
    edges = [NOW - 60, NOW - 59.5, NOW - 3600, NOW - 3599.5, NOW - 7200, NOW, NOW + 5]
    return st.one_of(st.sampled_from(edges), st.floats(NOW - 7200, NOW + 10))


@st.composite
def contexts(draw: st.DrawFn) -> Features:
    out: Features = {}
    hour = draw(st.one_of(st.none(), st.sampled_from([3.0, 12.0, 23.0]), st.floats(0, 23)))
    if hour is not None:
        out["context"] = {"hour": hour}
    segment = draw(st.sampled_from([None, "vip", "new"]))
    if segment is not None:
        out["user"] = {"segment": segment}
    return out


@st.composite
def slot_requests(draw: st.DrawFn) -> int | NamedSlots | None:
    kind = draw(st.sampled_from(["none", "count", "named"]))
    if kind == "none":
        return None
    if kind == "count":
        return draw(st.integers(1, 6))
    ids = st.sampled_from(["hero", "side", "footer", "s3", "s4", "s5"])
    names = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    tilts = st.one_of(st.none(), st.sampled_from([0.5, 2.0]))
    return tuple((name, draw(tilts)) for name in names)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 7))
    actions = tuple(draw(action_specs(i)) for i in range(n))
    ids = [a.id for a in actions]
    some_id = st.sampled_from(ids)
    rules = tuple(
        RuleDef(
            f"r{i}",
            draw(st.one_of(st.none(), st.sampled_from(sorted(WHENS)))),
            draw(st.sampled_from(sorted(TESTS))),
            draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 3)))
    )
    inventory = draw(
        st.one_of(
            st.none(),
            st.builds(
                InventoryDef,
                st.sampled_from([0.0, 2.0]),
                st.sampled_from(["in_stock", "out_of_stock"]),
            ),
        )
    )
    exposures = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from([*ids, GONE]), st.lists(exposure_times(), max_size=4), max_size=n
            ),
        )
    )
    fallback = draw(
        st.one_of(
            st.none(),
            some_id.map(lambda aid: ("action", aid)),
            st.just(("empty", "sold out")),
        )
    )
    candidates = draw(st.one_of(st.none(), st.lists(some_id, max_size=n).map(tuple)))
    slots = draw(slot_requests())
    n_slots = 0 if slots is None else slots if isinstance(slots, int) else len(slots)
    return Case(
        actions=actions,
        rules=rules,
        windows=draw(windows(ids)),
        inventory=inventory,
        caps=draw(caps(ids)),
        pinned=draw(st.one_of(st.none(), st.none(), some_id)),
        boost=draw(st.dictionaries(some_id, st.sampled_from([0.01, 0.25, 2.0, 4.0, 100.0]))),
        floor=draw(st.one_of(st.sampled_from([0.0, 0.0, 0.05, 0.2, 1.0]), st.floats(0, 1))),
        fallback=fallback,
        diversity=draw(st.dictionaries(st.sampled_from(DIVERSITY_KEYS), st.integers(1, 3))),
        context=draw(contexts()),
        exposures=exposures,
        stock=draw(
            st.dictionaries(st.sampled_from(["s0", "s1", "s2", "7"]), st.sampled_from([0, 1, 2, 5]))
        ),
        candidates=candidates,
        exclude=tuple(draw(st.lists(some_id, unique=True, max_size=n - 1))),
        slots=slots,
        slot_exclude=tuple(
            tuple(draw(st.lists(some_id, unique=True, max_size=n))) for _ in range(n_slots)
        )
        if draw(st.booleans())
        else (),
        event_id=f"ev-{draw(st.integers(0, 10**6))}",
    )


# --- the fixed policy and the reference ---------------------------------------------------


def slot_weight(weight: float, position: float, tilt: float) -> float:
    """The fixed policy's weight of an action in a slot: later slots flatten it."""
    return float(weight ** (tilt / (1.0 + position)))


@dataclass(frozen=True)
class CasePolicy:
    """The fixed policy of a case: its weights, flattened in later slots."""

    weights: dict[str, float]
    name: str = "fixed"

    def ranked(self, context: Features, actions: Sequence[Action]) -> tuple[Pmf, Pmf]:
        position = float(context.get("slot", {}).get("position", 0.0))
        tilt = float(context.get("hint", {}).get("tilt", 1.0))
        w = np.array([slot_weight(self.weights[a.id], position, tilt) for a in actions])
        total = float(w.sum())
        pmf = w / total if total > 0 else np.full(len(actions), 1.0 / len(actions))
        return pmf, w


def policy_for(case: Case) -> CasePolicy:
    return CasePolicy({a.id: a.weight for a in case.actions})


class Reference:
    """The documented semantics, restated plainly over the generated description."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.by_id = {a.id: a for a in case.actions}

    def offered(self) -> list[str]:
        c = self.case
        return [
            a.id
            for a in c.actions
            if (c.candidates is None or a.id in c.candidates) and a.id not in c.exclude
        ]

    def reason(self, aid: str) -> str | None:
        """Why `apply` removes `aid` before any slot (None: it stays)."""
        c, a = self.case, self.by_id[aid]
        window = c.windows.get(aid)
        if window is not None and not (
            (window.start is None or window.start <= NOW)
            and (window.end is None or window.end > NOW)
        ):
            return "schedule"
        if c.inventory is not None and a.sku is not None:
            level = c.stock.get(str(a.sku))
            ok = (
                c.inventory.unknown == "in_stock"
                if level is None
                else level > c.inventory.threshold
            )
            if not ok:
                return "inventory"
        for r in c.rules:
            if r.when is not None and not WHENS[r.when](c.context):
                continue
            if TESTS[r.test](c.context, a) == r.exclude:
                return f"rule:{r.name}"
        if c.exposures is not None:
            cap = self.capping_cap(aid, self.history(()))
            if cap is not None:
                return f"cap:{cap}"
        return None

    def history(self, shown: Sequence[str]) -> dict[str, list[float]]:
        """The user's exposures (none without a user) with the earlier slots shown now."""
        seen = {aid: list(ts) for aid, ts in (self.case.exposures or {}).items()}
        for aid in shown:
            seen.setdefault(aid, []).append(NOW)
        return seen

    def capping_cap(self, aid: str, seen: Mapping[str, list[float]]) -> str | None:
        """The first cap whose set or group containing `aid` has reached its limit."""

        def recent(ids: list[str], window: float) -> int:
            return sum(1 for i in ids for t in seen.get(i, []) if t > NOW - window)

        action = self.by_id[aid]
        for cap in self.case.caps:
            if cap.group is None:
                if aid in cap.members and recent(list(cap.members), cap.window) >= cap.limit:
                    return cap.name
            elif action.brand is not None:
                same = [a.id for a in self.case.actions if a.brand == action.brand]
                if recent(same, cap.window) >= cap.limit:
                    return cap.name
        return None

    def why_not(self, aid: str, shown: Sequence[str], k: int | None = None) -> str | None:
        """Why `aid` may not fill slot `k` after `shown` (None: it may; k None: any slot,
        its own exclude aside)."""
        if aid not in self.offered():
            return "not offered (candidates/exclude)"
        if k is not None and aid in self.case.own(k):
            return f"in slot {k}'s own exclude"
        base = self.reason(aid)
        if base is not None:
            return base
        if aid in shown:
            return "a repeat"
        cap = self.capping_cap(aid, self.history(shown))
        if cap is not None:
            return f"cap:{cap} (history {self.history(shown)})"
        action = self.by_id[aid]
        for key, most in self.case.diversity.items():
            for value in action.diversity_values(key):
                n = sum(value in self.by_id[s].diversity_values(key) for s in shown)
                if n >= most:
                    return f"diversity {key}={value!r} already {n} of {most}"
        return None

    def candidates(self, shown: Sequence[str], k: int | None = None) -> list[str]:
        return [aid for aid in self.offered() if self.why_not(aid, shown, k) is None]

    def pmf(self, k: int, candidates: Sequence[str]) -> list[float]:
        """The policy's pmf over the slot's candidates, then pin, boost and floor."""
        c = self.case
        if c.pinned in candidates:
            return [1.0 if aid == c.pinned else 0.0 for aid in candidates]
        size = len(candidates)
        w = [slot_weight(self.by_id[aid].weight, float(k), c.tilt(k)) for aid in candidates]
        p = [x / sum(w) for x in w] if sum(w) > 0 else [1.0 / size] * size
        p = [x * c.boost.get(aid, 1.0) for x, aid in zip(p, candidates, strict=True)]
        p = [x / sum(p) for x in p] if sum(p) > 0 else [1.0 / size] * size
        p = [(1.0 - c.floor) * x + c.floor / size for x in p]
        return [x / sum(p) for x in p]


# --- running a case and checking its answer -----------------------------------------------


def build(case: Case) -> Catalog:
    return parse_catalog("props", catalog_json(case), LIMITS, version=1, now=0.0)


def run(case: Case, catalog: Catalog, offered: Sequence[Action]) -> Decision:
    return decide(
        catalog,
        offered,
        case.context,
        case.event_id,
        NOW,
        policy_for(case),
        exposures=case.exposures,
        stock=case.stock,
        slots=case.slot_list(),
    )


def check_slot(ref: Reference, k: int, s: SlotDecision, shown: list[str]) -> str:
    """One slot of an answer: what it shows may be shown, its pmf and probability exact."""
    got = [a.id for a in s.actions]
    aid = got[s.chosen]
    where = f"slot {k} after {shown}: showed {aid!r} from {got}"
    position = k if s.slot is not None else None
    why = ref.why_not(aid, shown, position)
    assert why is None, f"{where}, which may not be shown: {why}"
    wanted = ref.candidates(shown, position)
    assert got == wanted, f"{where}; eligible: {wanted}"
    assert not s.fallback
    pmf = np.asarray(s.pmf, dtype=np.float64)
    assert pmf.shape == (len(got),) and bool(np.all(pmf >= 0)), f"{where}: pmf {pmf}"
    assert abs(float(pmf.sum()) - 1.0) <= 1e-9, f"{where}: pmf sums to {pmf.sum()!r}"
    assert s.probability == float(pmf[s.chosen]) > 0, f"{where}: p={s.probability} pmf={pmf}"
    expected = ref.pmf(k, got)
    assert np.allclose(pmf, expected, rtol=1e-9, atol=1e-12), f"{where}: {pmf} != {expected}"
    c = ref.case
    if c.pinned in got:
        assert aid == c.pinned and s.probability == 1.0, f"{where}: pinned {c.pinned!r}"
    else:
        assert float(pmf.min()) >= c.floor / len(got) - 1e-12, f"{where}: floor {c.floor}"
    order = s.ranking()
    assert sorted(order) == list(range(len(got))), f"{where}: ranking {order}"
    ranked = [float(pmf[i]) for i in order]
    assert all(a >= b for a, b in pairwise(ranked)), f"{where}: {ranked}"
    return aid


def check_answer(case: Case) -> None:
    ref = Reference(case)
    catalog = build(case)
    try:
        offered = eligible(catalog, case.candidates, case.exclude)
    except InvalidInput:
        assert not ref.offered(), "refused a request that leaves actions to offer"
        return
    assert [a.id for a in offered] == ref.offered()
    d = run(case, catalog, offered)
    expected_removed: dict[str, list[str]] = {}
    for aid in ref.offered():
        if (reason := ref.reason(aid)) is not None:
            expected_removed.setdefault(reason, []).append(aid)
    assert d.removed == expected_removed
    if not ref.candidates([]):
        check_fallback(case, d)
        return
    slots = case.slot_list()
    if slots is None:
        assert len(d.slots) == 1 and not d.empty
        check_slot(ref, 0, d.slots[0], [])
        return
    filled, empty = iter(d.slots), {e.position: e for e in d.empty}
    assert len(d.slots) + len(empty) == len(slots), "every slot is filled or empty"
    shown: list[str] = []
    for k, slot in enumerate(slots):
        if not ref.candidates(shown, k):  # empty: the later slots are still filled
            assert k in empty and empty[k].slot == slot, f"slot {k} after {shown}: not empty"
            own = [a for a in ref.candidates(shown) if a in case.own(k)]
            assert ("its exclude" in empty[k].reason) == bool(own), empty[k].reason
            continue
        assert k not in empty, f"slot {k} left empty after {shown}: {ref.candidates(shown, k)}"
        s = next(filled)
        assert s.slot == slot
        aid = check_slot(ref, k, s, shown)
        assert aid not in case.own(k), f"slot {k} showed {aid!r}, which it excludes"
        shown.append(aid)
    assert len(set(shown)) == len(shown), f"repeats: {shown}"
    for key, most in case.diversity.items():
        counts = Counter(v for aid in shown for v in ref.by_id[aid].diversity_values(key))
        assert all(n <= most for n in counts.values()), f"max_per {key}={most}: {shown}"
    if not d.slots:
        assert d.reason is not None and d.reason.startswith("no slot could be filled"), d


def check_fallback(case: Case, d: Decision) -> None:
    """Nothing eligible: the fallback action alone with p=1, or an empty answer. The
    fallback action is documented as not subject to the rules, so it is not checked."""
    kind, value = case.fallback or ("empty", "no action is eligible")
    if kind == "empty":
        assert d.slots == [] and d.reason == value
        return
    assert len(d.slots) == 1 and d.reason is None
    s = d.slots[0]
    assert s.fallback and s.probability == 1.0 and [a.id for a in s.actions] == [value]


def promo(aid: str, weight: float) -> ActionSpec:
    return ActionSpec(aid, weight, brand="promo" if aid.startswith("promo") else "item")


# Issue 22: a user already shown promo-a this hour, a set cap of 2 on the three promos and
# a policy that prefers promos: a 3-slot slate may show one more promo, not two.
ISSUE_22 = Case(
    actions=tuple(promo(f"promo-{c}", 50.0) for c in "abc")
    + tuple(promo(f"item-{i}", 1.0) for i in range(4)),
    caps=(CapDef("promos", 2, 3600.0, members=("promo-a", "promo-b", "promo-c")),),
    exposures={"promo-a": [NOW - 60.0]},
    slots=3,
    event_id="ev-22",
)
# the same with a group cap, and with no user (the slate's own slots still count)
ISSUE_22_GROUP = Case(
    actions=ISSUE_22.actions,
    caps=(CapDef("per-brand", 2, 3600.0, group="brand"),),
    exposures={"promo-a": [NOW - 60.0]},
    slots=3,
    event_id="ev-22g",
)
ISSUE_22_NO_USER = Case(
    actions=ISSUE_22.actions,
    caps=(CapDef("promos", 1, 3600.0, members=("promo-a", "promo-b", "promo-c")),),
    slots=(("hero", None), ("side", 2.0), ("footer", None)),
    event_id="ev-22n",
)

# a slot its own exclude empties, between two filled ones
PER_SLOT_HOLE = Case(
    actions=ISSUE_22.actions,
    slots=(("hero", None), ("side", 2.0), ("footer", None)),
    slot_exclude=(("promo-a",), tuple(a.id for a in ISSUE_22.actions), ("promo-b",)),
    event_id="ev-hole",
)


@settings(max_examples=600, deadline=None)
@given(cases())
@example(PER_SLOT_HOLE)
@example(ISSUE_22)
@example(ISSUE_22_GROUP)
@example(ISSUE_22_NO_USER)
def test_every_answer_keeps_every_constraint(case: Case) -> None:
    check_answer(case)


@pytest.mark.parametrize("n", range(40))
def test_issue_22_slates_never_exceed_the_cap(n: int) -> None:
    """The reported defect, over many event ids: each slate draws its own slots."""
    for base in (ISSUE_22, ISSUE_22_GROUP, ISSUE_22_NO_USER):
        check_answer(replace(base, event_id=f"{base.event_id}-{n}"))


# --- slate frequencies against the product of conditional probabilities -------------------

SMALL = (
    ActionSpec("a", 5.0, brand="x"),
    ActionSpec("b", 3.0, brand="x", kind="k1"),
    ActionSpec("c", 2.0, brand="y", kind="k1"),
    ActionSpec("d", 1.0, brand="y"),
    ActionSpec("e", 0.0, kind="k2"),
)
SMALL_CAPS = (
    CapDef("a-or-c", 1, 3600.0, members=("a", "c")),
    CapDef("per-brand", 2, 3600.0, group="brand"),
)


Slate = tuple[str | None, ...]  # per slot, what it shows (None: left empty)


def exhaustive(ref: Reference, n_slots: int) -> dict[Slate, float]:
    """Every slate the reference allows, with the product of its conditional probabilities
    (a slot left empty draws nothing: it multiplies by 1)."""
    out: dict[Slate, float] = {}

    def fill(slate: Slate, p: float) -> None:
        k = len(slate)
        shown = [aid for aid in slate if aid is not None]
        candidates = ref.candidates(shown, k)
        if k == n_slots or not ref.candidates(shown):  # full, or nothing left for any slot
            out[trimmed(slate)] = out.get(trimmed(slate), 0.0) + p
            return
        if not candidates:
            fill((*slate, None), p)
            return
        for aid, q in zip(candidates, ref.pmf(k, candidates), strict=True):
            if q > 0:
                fill((*slate, aid), p * q)

    fill((), 1.0)
    return out


def slate_of(d: Decision) -> Slate:
    """What each slot showed, up to the last one filled (a trailing run of empty slots is
    the reference's early end)."""
    by_slot: dict[int, str | None] = {e.position: None for e in d.empty}
    filled = [k for k in range(len(d.slots) + len(d.empty)) if k not in by_slot]
    for k, s in zip(filled, d.slots, strict=True):
        by_slot[k] = s.actions[s.chosen].id
    return trimmed(tuple(by_slot[k] for k in sorted(by_slot)))


def trimmed(slate: Slate) -> Slate:
    out = list(slate)
    while out and out[-1] is None:
        out.pop()
    return tuple(out)


@pytest.mark.parametrize(
    "case",
    [
        Case(
            actions=SMALL,
            caps=SMALL_CAPS,
            exposures={"b": [NOW - 100.0], "d": [NOW - 7200.0]},
            boost={"d": 4.0},
            floor=0.1,
            diversity={"kind": 1},
            slots=3,
        ),
        Case(actions=SMALL, caps=SMALL_CAPS, boost={"b": 0.5}, slots=4),  # no user
        Case(  # slot 1 excludes everything: empty, and slots 2 and 3 are still filled
            actions=SMALL,
            caps=(SMALL_CAPS[1],),
            floor=0.1,
            slots=4,
            slot_exclude=(("a",), ("a", "b", "c", "d", "e"), ("b", "c"), ("e",)),
        ),
    ],
    ids=["history-floor-diversity", "no-user", "per-slot-exclude"],
)
def test_slate_frequencies_match_the_product_of_conditional_probabilities(case: Case) -> None:
    ref = Reference(case)
    catalog = build(case)
    expected = exhaustive(ref, len(case.slot_list() or ()))
    assert abs(sum(expected.values()) - 1.0) < 1e-12
    n = 20_000
    seen: Counter[Slate] = Counter()
    for i in range(n):
        d = run(replace(case, event_id=f"freq-{i}"), catalog, catalog.actions)
        slate = slate_of(d)
        assert slate in expected, f"{slate} has probability 0 under the reference"
        logged = float(np.prod([s.probability for s in d.slots]))
        assert logged == pytest.approx(expected[slate], rel=1e-9), slate
        seen[slate] += 1
    slates = sorted(expected, key=lambda s: -expected[s])
    counts = np.array([seen[s] for s in slates], dtype=np.float64)
    means = np.array([expected[s] * n for s in slates])
    big = means >= 5  # pool the rare slates into one bin so the chi-square holds
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(means[big], means[~big].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    chi2, p = stats.chisquare(observed, wanted)
    report = f"{len(slates)} slates, {len(observed)} bins, {n} draws: chi2={chi2:.1f} p={p:.3g}"
    print(report)
    assert len(observed) >= 8, report
    assert p > 1e-4, report
