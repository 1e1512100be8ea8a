"""The constraint spec: a catalog's "constraints" JSON, validated into engine.constraints
values once per catalog version. Every error names its field path
(`constraints.rules[2].exclude`, with the column for a rule expression); the format and
what each part means are in engine.constraints.

May import: the standard library, zoneinfo, engine.errors, engine.limits, engine.validate,
engine.rules, engine.caps and engine.constraints.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.caps import MAX_CAP_LIMIT, MAX_CAP_WINDOW_SECONDS, Cap
from engine.constraints import (
    NO_CONSTRAINTS,
    NOTHING_ELIGIBLE,
    Constraints,
    Fallback,
    Inventory,
    RuleSpec,
    Window,
)
from engine.errors import InvalidInput, LimitExceeded
from engine.limits import Limits
from engine.rules import Rule, compile_rule
from engine.validate import as_number, as_object, known_ids, no_unknown

MAX_RULES = 200
MAX_CAPS = 100
MAX_WINDOW_SECONDS = 366 * 24 * 3600.0
MAX_BOOST = 1e6
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


def parse_constraints(
    body: object, action_ids: Sequence[str], limits: Limits, default_floor: float = 0.0
) -> Constraints:
    """Validate the "constraints" JSON of a catalog; every error names its field path.
    `default_floor` is the exploration floor where the body sets none (the catalog's
    defaults epoch decides it); it is written into the constraints' JSON, so that GET
    shows the floor a catalog explores with."""
    if body is None:
        if not default_floor:
            return NO_CONSTRAINTS
        body = {}
    obj = as_object(body, "constraints")
    no_unknown(obj, KEYS, "constraints.")
    if default_floor and "exploration_floor" not in obj:
        obj = {**obj, "exploration_floor": default_floor}
    ids = known_ids(action_ids)
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


def _schedules(body: object, ids: Container[str]) -> dict[str, Window]:
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


def _caps(body: object, ids: Container[str], limits: Limits) -> tuple[Cap, ...]:
    items = _array(body, "constraints.frequency_caps", MAX_CAPS)
    names: set[str] = set()
    return tuple(
        _cap(raw, f"constraints.frequency_caps[{i}]", ids, limits, names)
        for i, raw in enumerate(items)
    )


def _cap(raw: object, where: str, ids: Container[str], limits: Limits, names: set[str]) -> Cap:
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


def _pinned(value: object, ids: Container[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"constraints.pinned must be an action id or null, got {value!r}",
            field="constraints.pinned",
        )
    return _known_id(value, ids, "constraints.pinned")


def _boost(body: object, ids: Container[str], limits: Limits) -> dict[str, float]:
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


def _fallback(body: object, ids: Container[str], limits: Limits) -> Fallback | None:
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


def _known_id(action_id: str, ids: Container[str], where: str) -> str:
    if action_id not in ids:
        raise InvalidInput(f"{where}: {action_id!r} is not an action of the catalog", field=where)
    return action_id


def _id_list(body: object, ids: Container[str], where: str, limits: Limits) -> list[str]:
    items = _array(body, where, limits.max_actions)
    if not items:
        raise InvalidInput(f"{where} must name at least one action", field=where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInput(f"{where}[{i}] must be an action id", field=f"{where}[{i}]")
        _known_id(item, ids, f"{where}[{i}]")
    return [str(item) for item in items]
