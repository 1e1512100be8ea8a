"""Business constraints of a catalog: parsed once, applied inside every decision.

Constraints narrow the actions *before* the policy sees them (`apply`, here), and shape the
policy's pmf *before* sampling (engine.adjust). Nothing runs after sampling, so the
probability logged with a decision is the exact probability of what was shown.

This module holds the constraints as values and the stage that applies them; the other
stages have modules of their own:

  engine.constraintspec  the "constraints" JSON below, validated into these values
  engine.caps            frequency caps: the exposures that count, a slate's earlier slots
  engine.adjust          pinned, boosts and the exploration floor, on the policy's pmf
  engine.slates          diversity, slot by slot

The JSON under a catalog's "constraints" key (every part optional)::

    {
      "rules": [
        {"name": "no-kids-ads-at-night", "when": "context.hour >= 22",
         "exclude": "action.tags contains 'kids'"},
        {"name": "members-only-for-vip", "require": "context.user.segment == 'vip'
                                                     or not ('members' in action.tags)"}
      ],
      "schedules": {
        "hero-xmas": {"start": "2026-12-01T00:00:00+01:00", "end": "2026-12-27T00:00:00+01:00"},
        "hero-sale": {"start": "2026-07-01T09:00", "timezone": "Europe/Berlin"}
      },
      "inventory": {"sku_field": "sku", "threshold": 0, "unknown": "in_stock"},
      "frequency_caps": [
        {"name": "hero-3-per-day", "actions": ["hero-xmas", "hero-sale"], "limit": 3,
         "window_seconds": 86400},
        {"name": "one-per-brand-hourly", "group": "brand", "limit": 1, "window_seconds": 3600}
      ],
      "pinned": null,
      "boost": {"hero-sale": 2.0},
      "exploration_floor": 0.05,
      "fallback": {"action": "hero-sale"},
      "diversity": {"max_per": {"category": 2}}
    }

rules           `when` (optional, may read only `context.*`) is evaluated once per request;
                when it holds, actions matching `exclude` are removed, or, with `require`,
                actions not matching it are removed. Expressions: see engine.rules.
schedules       action id -> window [start, end) (either end optional). Times are ISO-8601
                with an explicit offset (`Z`, `+01:00`), or local times with a zone name in
                "timezone" (zoneinfo, DST-aware; a local time that does not exist because of
                a DST gap is refused, an ambiguous one takes its first occurrence). A time
                with an offset keeps its offset even when "timezone" is given. Naive times
                without "timezone" are refused.
inventory       metadata[sku_field] (a string, or an integer written in decimal) is the SKU;
                the action is shown only while stock[sku] > threshold. Actions without a
                SKU are unaffected. A SKU missing from the stock map counts as in stock
                unless "unknown" is "out_of_stock".
frequency_caps  per user, over the exposures the caller passes (decisions actually shown).
                An exposure counts when its timestamp is > now - window_seconds (later
                timestamps count too: clock skew errs on the side of the cap). "actions"
                caps the total exposures of that set; "group" caps, per metadata value of
                that key, the total exposures of all catalog actions sharing the value.
                When the total reaches `limit`, the set (or group) is removed. No user
                (`user_exposures=None`) means no history; in a slate the earlier slots
                count as exposures either way (`engine.caps.capped_by_slate`).
pinned          if eligible, shown with probability 1 (engine.adjust returns one-hot). The
                decision is logged with p=1 and learned as any other example with p=1; it
                teaches the model about the pinned action only, and off-policy estimates
                for policies that would not show it get no information from such events.
boost           multiplies an action's policy probability before renormalising.
exploration_floor  each eligible action gets at least floor/K (engine.sampling.normalise).
fallback        what to answer when nothing is eligible: a named action (shown with p=1,
                not subject to the rules; log it flagged as fallback) or an empty answer.
diversity       for slates: at most k chosen actions share a value of a feature/metadata key.

`apply` lists each removed action once, under the first reason that removes it, in this
order: "schedule", "inventory", "rule:<name>" (rules in order), "cap:<name>" (caps in
order). "request" is reserved for exclusions the caller makes (candidates/exclude).

May import: the standard library and engine.actions, engine.caps, engine.features and
the rule modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.actions import Action
from engine.caps import Cap, blocked_by, group_value
from engine.features import Features
from engine.rulebind import Memo
from engine.rules import Rule

MAX_TABLES = 64  # lists of action objects cached per catalog version
Unknown = Literal["in_stock", "out_of_stock"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    when: Rule | None
    test: Rule
    exclude: bool  # True: remove matches; False (require): remove non-matches
    static: bool = False  # the test reads only the action: same answer in every request


@dataclass(frozen=True, slots=True)
class Window:
    start: float | None  # epoch seconds, inclusive
    end: float | None  # epoch seconds, exclusive

    def open_at(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class Inventory:
    sku_field: str
    threshold: float = 0.0
    unknown: Unknown = "in_stock"

    def sku(self, action: Action) -> str | None:
        value = action.metadata.get(self.sku_field)
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    def allows(self, level: float | None) -> bool:
        """Whether a SKU at this stock level (None: not in the stock map) may be shown."""
        if level is None:
            return self.unknown == "in_stock"
        return level > self.threshold


NOTHING_ELIGIBLE = "no action is eligible"


@dataclass(frozen=True, slots=True)
class Fallback:
    action: str | None = None
    reason: str = NOTHING_ELIGIBLE


@dataclass(frozen=True, slots=True)
class Eligibility:
    actions: list[Action]
    removed: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Constraints:
    rules: tuple[RuleSpec, ...] = ()
    schedules: Mapping[str, Window] = field(default_factory=dict)
    inventory: Inventory | None = None
    caps: tuple[Cap, ...] = ()
    pinned: str | None = None
    boost: Mapping[str, float] = field(default_factory=dict)
    exploration_floor: float = 0.0
    fallback: Fallback | None = None
    diversity: Mapping[str, int] = field(default_factory=dict)
    source: Mapping[str, object] = field(default_factory=dict, compare=False)
    # per list of action objects (keyed by their ids; None: the last one): what no
    # request changes (a cache)
    _tables: dict[tuple[int, ...] | None, _Table] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def active(self) -> bool:
        """Whether anything here can remove an action."""
        return bool(self.rules or self.schedules or self.inventory or self.caps)

    def to_json(self) -> dict[str, object]:
        return dict(self.source)


NO_CONSTRAINTS = Constraints()


# --- applying -----------------------------------------------------------------------------


def apply(
    constraints: Constraints,
    actions: Sequence[Action],
    context: Features,
    now: float,
    user_exposures: Mapping[str, Sequence[float]] | None,
    stock: Mapping[str, float],
    *,
    catalog_actions: Sequence[Action] | None = None,
) -> Eligibility:
    """The actions allowed now, in their order, and the removed ids by first reason.

    `catalog_actions` (default: `actions`) is the universe for group caps: exposures of
    group members the request did not offer still count. Pass the catalog's actions.

    Each stage (schedules, inventory, each rule, each cap, in the documented order)
    removes positions that no earlier stage removed. What is fixed for a list of action
    objects (SKUs, windows, what static and action-only rule parts remove, cap members) is
    computed once per list (`_Table`), so a request pays per rule and per removal, and only
    rules reading both the context and the action test each action.
    """
    if not constraints.active:
        return Eligibility(list(actions), {})
    table = _table(constraints, actions)
    alive = [True] * len(table.actions)
    reasons: dict[int, str] = {}

    def drop(positions: Iterable[int], reason: str) -> None:
        for i in positions:
            if alive[i]:
                alive[i] = False
                reasons[i] = reason

    drop((i for i, window in table.windows if not window.open_at(now)), "schedule")
    inventory = constraints.inventory
    if inventory is not None:
        drop(table.out_of_stock(inventory, stock), "inventory")
    for k, spec in enumerate(constraints.rules):
        if spec.when is not None and spec.when.bind(context) is not True:
            continue
        if spec.static:
            drop(table.static[k], table.names[k])
            continue
        bound = spec.test.bind(context)
        if isinstance(bound, bool):
            if bound is spec.exclude:  # removes everything left: no later stage matters
                drop(range(len(alive)), table.names[k])
                return _eligibility(table, alive, reasons)
        elif isinstance(bound, Memo):
            drop(table.matching(bound, spec.exclude), table.names[k])
        else:
            found = [
                i for i, a in enumerate(table.actions) if alive[i] and bound(a) is spec.exclude
            ]
            drop(found, table.names[k])
    if constraints.caps and user_exposures is not None:
        universe = catalog_actions or actions
        for k, (cap, blocked) in enumerate(
            blocked_by(constraints.caps, universe, now, user_exposures)
        ):
            if cap.group is None:
                drop(table.members[k] if blocked else (), f"cap:{cap.name}")
            else:
                groups = table.groups[k]
                for value in blocked:
                    drop(groups.get(value, ()), f"cap:{cap.name}")
    return _eligibility(table, alive, reasons)


def _eligibility(table: _Table, alive: list[bool], reasons: dict[int, str]) -> Eligibility:
    kept = [a for a, ok in zip(table.actions, alive, strict=True) if ok]
    removed: dict[str, list[str]] = {}
    for i in sorted(reasons):
        removed.setdefault(reasons[i], []).append(table.actions[i].id)
    return Eligibility(kept, removed)


@dataclass(frozen=True, slots=True)
class _Table:
    """What the constraints say about one list of action objects that no request changes,
    by position in the list. It holds the actions, so their ids (the cache key) are not
    reused while it lives."""

    source: Sequence[Action]  # the list it was built from
    actions: tuple[Action, ...]
    names: tuple[str, ...]  # per rule: its reason
    windows: tuple[tuple[int, Window], ...]
    skus: tuple[tuple[int, str], ...]
    static: tuple[tuple[int, ...], ...]  # per rule: the positions a static rule removes
    members: tuple[tuple[int, ...], ...]  # per cap: the positions of a set cap's actions
    groups: tuple[Mapping[object, tuple[int, ...]], ...]  # per cap: positions by group value
    memos: dict[tuple[int, bool], tuple[Memo, tuple[int, ...]]] = field(default_factory=dict)
    stocked: dict[str, tuple[object, tuple[int, ...]]] = field(default_factory=dict)

    def out_of_stock(self, inventory: Inventory, stock: Mapping[str, float]) -> tuple[int, ...]:
        """The positions whose SKU may not be shown at these levels. A stock map with a
        `version` (api.serving.mirror.StockView: it changes with every level) keeps the answer
        until the version changes; any other map is read in full every time."""
        version = getattr(stock, "version", None)
        hit = self.stocked.get("last")
        if version is not None and hit is not None and hit[0] == version:
            return hit[1]
        found = tuple(i for i, sku in self.skus if not inventory.allows(stock.get(sku)))
        if version is not None:
            self.stocked["last"] = (version, found)
        return found

    def matching(self, memo: Memo, exclude: bool) -> tuple[int, ...]:
        """The positions an action-only test removes (exclude: where it holds; require:
        where it does not), computed once per test and list."""
        key = (id(memo), exclude)
        hit = self.memos.get(key)
        if hit is None or hit[0] is not memo:
            found = tuple(i for i, a in enumerate(self.actions) if memo(a) is exclude)
            hit = self.memos[key] = (memo, found)
        return hit[1]


def _table(constraints: Constraints, actions: Sequence[Action]) -> _Table:
    """The table of this list: by the list's identity when it is the tuple asked for last
    (a catalog's actions), else by the identities of its actions."""
    cache = constraints._tables
    last = cache.get(None)
    if last is not None and last.source is actions and isinstance(actions, tuple):
        return last
    key = tuple(map(id, actions))
    table = cache.get(key)
    if table is None:
        if len(cache) >= MAX_TABLES:
            cache.clear()
        table = cache[key] = _build_table(constraints, actions)
    cache[None] = table
    return table


def _build_table(constraints: Constraints, source: Sequence[Action]) -> _Table:
    actions = tuple(source)
    inventory = constraints.inventory
    skus = (
        [(i, sku) for i, a in enumerate(actions) if (sku := inventory.sku(a)) is not None]
        if inventory is not None
        else []
    )
    windows = [
        (i, window) for i, a in enumerate(actions) if (window := constraints.schedules.get(a.id))
    ]
    static = tuple(
        tuple(
            i
            for i, a in enumerate(actions)
            if spec.static and spec.test.evaluate(_NO_CONTEXT, a) is spec.exclude
        )
        for spec in constraints.rules
    )
    members: list[tuple[int, ...]] = []
    groups: list[dict[object, tuple[int, ...]]] = []
    for cap in constraints.caps:
        members.append(tuple(i for i, a in enumerate(actions) if a.id in cap.actions))
        by_value: dict[object, list[int]] = {}
        if cap.group is not None:
            for i, a in enumerate(actions):
                value = group_value(a, cap.group)
                if value is not None:
                    by_value.setdefault(value, []).append(i)
        groups.append({value: tuple(at) for value, at in by_value.items()})
    return _Table(
        source=source,
        actions=actions,
        names=tuple(f"rule:{spec.name}" for spec in constraints.rules),
        windows=tuple(windows),
        skus=tuple(skus),
        static=static,
        members=tuple(members),
        groups=tuple(groups),
    )


_NO_CONTEXT: Features = {}


# --- when nothing is eligible -------------------------------------------------------------


def fallback(constraints: Constraints, catalog_actions: Sequence[Action]) -> Action | None:
    """What to show when nothing is eligible: the fallback action, or None for an empty
    answer (its reason is `fallback_reason(constraints)`). Shown with probability 1."""
    choice = constraints.fallback
    if choice is None or choice.action is None:
        return None
    return next((a for a in catalog_actions if a.id == choice.action), None)


def fallback_reason(constraints: Constraints) -> str:
    return constraints.fallback.reason if constraints.fallback else NOTHING_ELIGIBLE


__all__ = [
    "Constraints",
    "Eligibility",
    "Fallback",
    "Inventory",
    "RuleSpec",
    "Window",
    "apply",
    "fallback",
    "fallback_reason",
]
