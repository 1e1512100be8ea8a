"""Business constraints of a catalog: parsed once, applied inside every decision.

Constraints narrow the actions *before* the policy sees them (`apply`), and shape the
policy's pmf *before* sampling (`adjust`). Nothing here runs after sampling, so the
probability logged with a decision is the exact probability of what was shown.

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
                count as exposures either way (`capped_by_slate`).
pinned          if eligible, shown with probability 1 (`adjust` returns one-hot). The
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

May import: the standard library, numpy, zoneinfo and the engine modules below
engine.catalog (which imports this one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from engine.actions import Action
from engine.errors import InvalidInput, LimitExceeded
from engine.features import Features
from engine.limits import Limits
from engine.rules import Memo, Rule, compile_rule
from engine.sampling import Pmf, normalise
from engine.validate import as_number, as_object, no_unknown

MAX_RULES = 200
MAX_CAPS = 100
MAX_WINDOW_SECONDS = 366 * 24 * 3600.0
# Frequency caps count per-user exposures that serving processes keep (api.serving.exposures):
# at most this many per action, for at most this long. A cap beyond them could never bite.
MAX_CAP_LIMIT = 256
MAX_CAP_WINDOW_SECONDS = 31 * 24 * 3600.0
MAX_BOOST = 1e6
MAX_TABLES = 64  # lists of action objects cached per catalog version
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEYS = (
    "rules",
    "schedules",
    "inventory",
    "frequency_caps",
    "pinned",
    "boost",
    "exploration_floor",
    "fallback",
    "diversity",
)
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


@dataclass(frozen=True, slots=True)
class Cap:
    name: str
    limit: int
    window_seconds: float
    actions: frozenset[str] = frozenset()
    group: str | None = None


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


# --- parsing ------------------------------------------------------------------------------


def parse_constraints(body: object, action_ids: Sequence[str], limits: Limits) -> Constraints:
    """Validate the "constraints" JSON of a catalog; every error names its field path."""
    if body is None:
        return NO_CONSTRAINTS
    obj = as_object(body, "constraints")
    no_unknown(obj, KEYS, "constraints.")
    ids = frozenset(action_ids)
    floor = as_number(obj.get("exploration_floor", 0.0), limits, "constraints.exploration_floor")
    if not 0.0 <= floor <= 1.0:
        raise InvalidInput(
            f"constraints.exploration_floor must be in [0, 1], got {floor!r}",
            field="constraints.exploration_floor",
        )
    return Constraints(
        rules=_rules(obj.get("rules", []), limits),
        schedules=_schedules(obj.get("schedules", {}), ids),
        inventory=_inventory(obj.get("inventory"), limits),
        caps=_caps(obj.get("frequency_caps", []), ids, limits),
        pinned=_pinned(obj.get("pinned"), ids),
        boost=_boost(obj.get("boost", {}), ids, limits),
        exploration_floor=floor,
        fallback=_fallback(obj.get("fallback"), ids, limits),
        diversity=_diversity(obj.get("diversity"), limits),
        source=obj,
    )


def _rules(body: object, limits: Limits) -> tuple[RuleSpec, ...]:
    items = _array(body, "constraints.rules", MAX_RULES)
    out: list[RuleSpec] = []
    names: set[str] = set()
    for i, raw in enumerate(items):
        where = f"constraints.rules[{i}]"
        obj = as_object(raw, where)
        no_unknown(obj, ("name", "when", "exclude", "require"), where + ".")
        name = _name(obj.get("name"), f"{where}.name", names)
        when = _when(obj.get("when"), f"{where}.when")
        if ("exclude" in obj) == ("require" in obj):
            raise InvalidInput(
                f"{where} needs exactly one of 'exclude' or 'require'", field=f"{where}.exclude"
            )
        key = "exclude" if "exclude" in obj else "require"
        test = compile_rule(obj[key], f"{where}.{key}")
        out.append(
            RuleSpec(
                name=name,
                when=when,
                test=test,
                exclude=key == "exclude",
                static=test.uses_action and not test.uses_context,
            )
        )
    return tuple(out)


def _when(text: object, where: str) -> Rule | None:
    if text is None:
        return None
    rule = compile_rule(text, where)
    if rule.uses_action:
        used = ", ".join(sorted(v for v in rule.variables if v.startswith("action")))
        raise InvalidInput(
            f"{where} may read only context.*, but it reads {used}; put conditions on actions "
            "in 'exclude' or 'require'",
            field=where,
        )
    return rule


def _schedules(body: object, ids: frozenset[str]) -> dict[str, Window]:
    obj = as_object(body, "constraints.schedules")
    out: dict[str, Window] = {}
    for action_id, raw in obj.items():
        where = f"constraints.schedules.{action_id}"
        _known_id(action_id, ids, where)
        spec = as_object(raw, where)
        no_unknown(spec, ("start", "end", "timezone"), where + ".")
        zone = _zone(spec.get("timezone"), f"{where}.timezone")
        if "start" not in spec and "end" not in spec:
            raise InvalidInput(f"{where} needs 'start', 'end' or both", field=where)
        start = _instant(spec.get("start"), zone, f"{where}.start")
        end = _instant(spec.get("end"), zone, f"{where}.end")
        if start is not None and end is not None and end <= start:
            raise InvalidInput(f"{where}.end must be after {where}.start", field=f"{where}.end")
        out[action_id] = Window(start, end)
    return out


def _zone(value: object, where: str) -> ZoneInfo | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where} must be a zone name such as 'Europe/Berlin'", field=where)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"{where} {value!r} is not a known time zone (IANA names such as 'Europe/Berlin')",
            field=where,
        ) from exc


def _instant(value: object, zone: ZoneInfo | None, where: str) -> float | None:
    """Epoch seconds of an ISO-8601 time; naive times need a zone and must exist in it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be an ISO-8601 string, got {value!r}", field=where)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{where} {value!r} is not an ISO-8601 time such as '2026-12-01T00:00:00+01:00'",
            field=where,
        ) from exc
    if moment.tzinfo is not None:
        return moment.timestamp()
    if zone is None:
        raise InvalidInput(
            f"{where} {value!r} has no UTC offset; add one (e.g. '+01:00' or 'Z') or set "
            "'timezone' (e.g. 'Europe/Berlin')",
            field=where,
        )
    local = moment.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        raise InvalidInput(
            f"{where} {value!r} does not exist in {zone.key} (it falls in a daylight-saving gap)",
            field=where,
        )
    return local.timestamp()


def _inventory(body: object, limits: Limits) -> Inventory | None:
    if body is None:
        return None
    where = "constraints.inventory"
    obj = as_object(body, where)
    no_unknown(obj, ("sku_field", "threshold", "unknown"), where + ".")
    sku_field = obj.get("sku_field")
    if not isinstance(sku_field, str) or not sku_field:
        raise InvalidInput(
            f"{where}.sku_field must name a metadata key, got {sku_field!r}",
            field=f"{where}.sku_field",
        )
    unknown = obj.get("unknown", "in_stock")
    if unknown not in ("in_stock", "out_of_stock"):
        raise InvalidInput(
            f"{where}.unknown must be one of in_stock, out_of_stock, got {unknown!r}",
            field=f"{where}.unknown",
        )
    threshold = as_number(obj.get("threshold", 0.0), limits, f"{where}.threshold")
    return Inventory(sku_field, threshold, unknown)


def _caps(body: object, ids: frozenset[str], limits: Limits) -> tuple[Cap, ...]:
    items = _array(body, "constraints.frequency_caps", MAX_CAPS)
    names: set[str] = set()
    return tuple(
        _cap(raw, f"constraints.frequency_caps[{i}]", ids, limits, names)
        for i, raw in enumerate(items)
    )


def _cap(raw: object, where: str, ids: frozenset[str], limits: Limits, names: set[str]) -> Cap:
    obj = as_object(raw, where)
    no_unknown(obj, ("name", "actions", "group", "limit", "window_seconds"), where + ".")
    name = _name(obj.get("name"), f"{where}.name", names)
    limit = obj.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CAP_LIMIT:
        raise InvalidInput(
            f"{where}.limit must be a whole number in [1, {MAX_CAP_LIMIT}] (exposures kept per "
            f"user and action), got {limit!r}",
            field=f"{where}.limit",
        )
    window = as_number(obj.get("window_seconds"), limits, f"{where}.window_seconds")
    if not 0.0 < window <= MAX_CAP_WINDOW_SECONDS:
        raise InvalidInput(
            f"{where}.window_seconds must be in (0, {MAX_CAP_WINDOW_SECONDS:g}] (31 days of "
            f"exposures are kept), got {window!r}",
            field=f"{where}.window_seconds",
        )
    if ("actions" in obj) == ("group" in obj):
        raise InvalidInput(f"{where} needs exactly one of 'actions' or 'group'", field=where)
    if "group" in obj:
        group = obj["group"]
        if not isinstance(group, str) or not group:
            raise InvalidInput(
                f"{where}.group must name a metadata key, got {group!r}", field=f"{where}.group"
            )
        return Cap(name, limit, window, group=group)
    members = _id_list(obj["actions"], ids, f"{where}.actions", limits)
    return Cap(name, limit, window, actions=frozenset(members))


def _pinned(value: object, ids: frozenset[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"constraints.pinned must be an action id or null, got {value!r}",
            field="constraints.pinned",
        )
    return _known_id(value, ids, "constraints.pinned")


def _boost(body: object, ids: frozenset[str], limits: Limits) -> dict[str, float]:
    obj = as_object(body, "constraints.boost")
    out: dict[str, float] = {}
    for action_id, raw in obj.items():
        where = f"constraints.boost.{action_id}"
        _known_id(action_id, ids, where)
        factor = as_number(raw, limits, where)
        if not 0.0 < factor <= MAX_BOOST:
            raise InvalidInput(
                f"{where} must be a factor in (0, {MAX_BOOST:g}], got {factor!r}", field=where
            )
        out[action_id] = factor
    return out


def _fallback(body: object, ids: frozenset[str], limits: Limits) -> Fallback | None:
    if body is None:
        return None
    where = "constraints.fallback"
    obj = as_object(body, where)
    no_unknown(obj, ("action", "empty", "reason"), where + ".")
    if "action" in obj:
        if "empty" in obj:
            raise InvalidInput(f"{where} takes 'action' or 'empty', not both", field=where)
        action_id = obj["action"]
        if not isinstance(action_id, str):
            raise InvalidInput(f"{where}.action must be an action id", field=f"{where}.action")
        _known_id(action_id, ids, f"{where}.action")
        return Fallback(action=action_id)
    if obj.get("empty") is not True:
        raise InvalidInput(
            f'{where} must be {{"action": "<id>"}} or {{"empty": true, "reason": "..."}}',
            field=where,
        )
    reason = obj.get("reason", NOTHING_ELIGIBLE)
    if not isinstance(reason, str) or not 0 < len(reason) <= limits.max_string_chars:
        raise InvalidInput(
            f"{where}.reason must be a string of 1-{limits.max_string_chars} characters",
            field=f"{where}.reason",
        )
    return Fallback(reason=reason)


def _diversity(body: object, limits: Limits) -> dict[str, int]:
    if body is None:
        return {}
    where = "constraints.diversity"
    obj = as_object(body, where)
    no_unknown(obj, ("max_per",), where + ".")
    per = as_object(obj.get("max_per", {}), f"{where}.max_per")
    out: dict[str, int] = {}
    for key, raw in per.items():
        at = f"{where}.max_per.{key}"
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= limits.max_slots:
            raise InvalidInput(
                f"{at} must be a whole number in [1, {limits.max_slots}], got {raw!r}", field=at
            )
        out[key] = raw
    return out


# --- small validators ---------------------------------------------------------------------


def _array(body: object, where: str, limit: int) -> list[object]:
    if not isinstance(body, list):
        raise InvalidInput(f"{where} must be an array", field=where)
    if len(body) > limit:
        raise LimitExceeded(
            f"{where} has {len(body)} entries, more than the limit of {limit}", field=where
        )
    return body


def _name(value: object, where: str, seen: set[str]) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"{where} must be 1-64 characters of letters, digits, '_', '.', '-', starting with a "
            f"letter or digit, got {value!r}",
            field=where,
        )
    if value in seen:
        raise InvalidInput(f"{where} {value!r} appears twice", field=where)
    seen.add(value)
    return value


def _known_id(action_id: str, ids: frozenset[str], where: str) -> str:
    if action_id not in ids:
        raise InvalidInput(f"{where}: {action_id!r} is not an action of the catalog", field=where)
    return action_id


def _id_list(body: object, ids: frozenset[str], where: str, limits: Limits) -> list[str]:
    items = _array(body, where, limits.max_actions)
    if not items:
        raise InvalidInput(f"{where} must name at least one action", field=where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInput(f"{where}[{i}] must be an action id", field=f"{where}[{i}]")
        _known_id(item, ids, f"{where}[{i}]")
    return [str(item) for item in items]


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
            _blocked(constraints.caps, universe, now, user_exposures)
        ):
            if cap.group is None:
                drop(table.members[k] if blocked else (), f"cap:{cap.name}")
            else:
                groups = table.groups[k]
                for value in blocked:
                    drop(groups.get(value, ()), f"cap:{cap.name}")
    return _eligibility(table, alive, reasons)


def capped_by_slate(
    constraints: Constraints,
    universe: Sequence[Action],
    now: float,
    user_exposures: Mapping[str, Sequence[float]] | None,
    shown: Sequence[Action],
) -> frozenset[str]:
    """The action ids the caps remove once `shown` (the earlier slots of one slate) count as
    exposures at `now`, beside the user's (none without a user: a slate is still one
    person's page, so its own slots count). `universe` as in `apply`."""
    if not constraints.caps or not shown:
        return frozenset()
    seen: dict[str, Sequence[float]] = dict(user_exposures or {})
    for action in shown:
        seen[action.id] = [*seen.get(action.id, ()), now]
    out: set[str] = set()
    for cap, blocked in _blocked(constraints.caps, universe, now, seen):
        if cap.group is None:
            out.update(str(aid) for aid in blocked)
        elif blocked:
            out.update(aid for aid, v in _values(universe, cap.group).items() if v in blocked)
    return frozenset(out)


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
                value = _group_value(a, cap.group)
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


def _blocked(
    caps: Sequence[Cap],
    universe: Sequence[Action],
    now: float,
    exposures: Mapping[str, Sequence[float]],
) -> Iterator[tuple[Cap, frozenset[object]]]:
    """Per cap: the blocked action ids (set caps) or group values (group caps). Only what
    this user was shown is counted, never every action."""
    for cap in caps:
        since = now - cap.window_seconds
        if cap.group is None:
            if len(cap.actions) < len(exposures):
                shown = [exposures.get(aid, ()) for aid in cap.actions]
            else:
                shown = [ts for aid, ts in exposures.items() if aid in cap.actions]
            total = sum(_recent(ts, since) for ts in shown)
            yield cap, (frozenset(cap.actions) if total >= cap.limit else frozenset())
            continue
        values = _values(universe, cap.group)
        per_group: dict[object, int] = {}
        for aid, ts in exposures.items():
            value = values.get(aid)
            if value is not None and (n := _recent(ts, since)):
                per_group[value] = per_group.get(value, 0) + n
        yield cap, frozenset(v for v, n in per_group.items() if n >= cap.limit)


def _recent(timestamps: Sequence[float], since: float) -> int:
    """How many exposures count: those after `since` (later ones too, see caps)."""
    n = 0
    for t in timestamps:
        if t > since:
            n += 1
    return n


_VALUES: dict[tuple[int, str], tuple[Sequence[Action], dict[str, object]]] = {}


def _values(universe: Sequence[Action], key: str) -> dict[str, object]:
    """Action id -> its group value under `key` (actions without one are left out),
    cached per universe object (a catalog's actions tuple) and key."""
    cached = _VALUES.get((id(universe), key))
    if cached is not None and cached[0] is universe:
        return cached[1]
    if len(_VALUES) > 256:
        _VALUES.clear()
    values = {a.id: v for a in universe if (v := _group_value(a, key)) is not None}
    _VALUES[(id(universe), key)] = (universe, values)
    return values


def _group_value(action: Action, key: str) -> object:
    value = action.metadata.get(key)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    return None


# --- shaping the pmf ----------------------------------------------------------------------


def adjust(pmf: Pmf | Sequence[float], eligible: Sequence[Action], constraints: Constraints) -> Pmf:
    """Pinned (one-hot if eligible), then boosts, then the exploration floor: an exact pmf."""
    weights = np.asarray(pmf, dtype=np.float64)
    if weights.shape != (len(eligible),):
        raise InvalidInput(
            f"the pmf has shape {weights.shape}, expected ({len(eligible)},) for the eligible "
            "actions",
            field="pmf",
        )
    ids = [a.id for a in eligible]
    if constraints.pinned is not None and constraints.pinned in ids:
        one_hot = np.zeros(len(ids), dtype=np.float64)
        one_hot[ids.index(constraints.pinned)] = 1.0
        return one_hot
    if constraints.boost:
        factors = np.array([constraints.boost.get(i, 1.0) for i in ids], dtype=np.float64)
        weights = weights * factors
    return normalise(weights, floor=constraints.exploration_floor)


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
    "Cap",
    "Constraints",
    "Eligibility",
    "Fallback",
    "Inventory",
    "RuleSpec",
    "Window",
    "adjust",
    "apply",
    "capped_by_slate",
    "fallback",
    "fallback_reason",
    "parse_constraints",
]
