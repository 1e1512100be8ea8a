"""The configured limits, written into the request schemas: `maxLength`, `maxItems`,
`minimum`/`maximum` where a JSON Schema keyword says the bound, the description where
none can (a context's flattened features, an action's metadata bytes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.failover import MAX_REASON
from engine import behaviour
from engine.catalog import NAME_RE
from engine.limits import Limits
from engine.validate import ID_RE

Schema = dict[str, Any]
ID = {"minLength": 1, "maxLength": 128, "pattern": f"^{ID_RE.pattern}$"}
NAME = {"minLength": 1, "maxLength": 64, "pattern": f"^{NAME_RE.pattern}$"}


def ids(bounds: Limits) -> Schema:
    return {"items": {"type": "string", **ID}, "maxItems": bounds.max_actions}


def number(bounds: Limits) -> Schema:
    return {"minimum": -bounds.max_abs_number, "maximum": bounds.max_abs_number}


def features(bounds: Limits) -> Schema:
    return {
        "description": (
            f"Features: an object nested at most {bounds.max_depth} levels, at most "
            f"{bounds.max_features} features once flattened; names of at most "
            f"{bounds.max_name_chars} characters, strings of at most {bounds.max_string_chars}, "
            f"finite numbers within +/-{bounds.max_abs_number:g}, booleans, or arrays of these."
        )
    }


def body(bounds: Limits) -> str:
    """What every request body is bounded by (api.bodies), whatever the route."""
    return (
        f"At most {bounds.max_body_bytes} bytes (refused with 413 before it is read), nested at "
        f"most {bounds.max_body_depth} levels, at most {bounds.max_body_nodes} values, numbers "
        f"finite and within +/-{bounds.max_abs_number:g}, each key of an object given once."
    )


# (component, property) -> the keywords its value (the non-null branch) gets
Table = dict[tuple[str, str], Schema]


def table(bounds: Limits) -> Table:
    n, f = number(bounds), features(bounds)
    event = {**ID, "description": "1-128 printable characters without '/'"}
    text = {"minLength": 1, "maxLength": behaviour.MAX_TEXT}
    ts = {
        **n,
        "description": f"epoch seconds within the last {behaviour.MAX_AGE_SECONDS / 86_400:g} "
        f"days and at most {behaviour.FUTURE_SLACK_SECONDS:g} s ahead; default: now",
    }
    behaviours = {
        "user_id": ID,
        "session_id": ID,
        "event_id": ID,
        "ts": ts,
        "quantity": {"exclusiveMinimum": 0, "maximum": behaviour.MAX_QUANTITY},
        "revenue": n,
        "query": text,
        "device": text,
        "channel": text,
    }
    kinds = ("PageView", "ProductView", "Search", "AddToCart", "RemoveFromCart", "Purchase")
    out: Table = {
        ("DecideRequest", "catalog"): NAME,
        ("DecideRequest", "context"): f,
        ("DecideRequest", "user_id"): ID,
        ("DecideRequest", "session_id"): ID,
        ("DecideRequest", "event_id"): event,
        ("DecideRequest", "candidates"): ids(bounds),
        ("DecideRequest", "exclude"): ids(bounds),
        ("DecideRequest", "baseline"): ID,
        ("DecideRequest", "slots"): {"minimum": 1, "maximum": bounds.max_slots},
        ("DecideRequest", "slots[]"): {"minItems": 1, "maxItems": bounds.max_slots},
        ("DecideRequest", "actions"): {"minItems": 1, "maxItems": bounds.max_inline_actions},
        ("SlotRequest", "id"): event,
        ("SlotRequest", "features"): f,
        ("SlotRequest", "exclude"): ids(bounds),
        ("ActionRequest", "id"): ID,
        ("ActionRequest", "features"): {
            **f,
            "maxProperties": bounds.max_action_features,
        },
        ("ActionRequest", "metadata"): {
            "description": f"At most {bounds.max_metadata_bytes} bytes as compact JSON."
        },
        ("RewardRequest", "event_id"): ID,
        ("RewardRequest", "reward_id"): ID,
        ("RewardRequest", "value"): n,
        ("RewardRequest", "slot"): ID,
        ("RewardBatch", "rewards"): {"minItems": 1, "maxItems": bounds.max_batch},
        ("EventBatch", "events"): {"minItems": 1, "maxItems": bounds.max_batch},
        ("InventoryRequest", "sku"): ID,
        ("InventoryRequest", "level"): n,
        ("InventoryRequest", "ts"): n,
        ("ProductRequest", "id"): ID,
        ("ProductRequest", "price"): {"minimum": 0, "maximum": bounds.max_abs_number},
        ("ProductRequest", "category"): text,
        ("ProductRequest", "brand"): text,
        ("WhyRequest", "context"): f,
        ("WhyRequest", "user_id"): ID,
        ("WhyRequest", "session_id"): ID,
        ("FailoverRequest", "reason"): {"maxLength": MAX_REASON},
        ("PersonalizerRankRequest", "actions"): {"maxItems": bounds.max_inline_actions},
        ("PersonalizerRankRequest", "eventId"): event,
        ("PersonalizerRankRequest", "excludedActions"): ids(bounds),
        ("PersonalizerMultiSlotRankRequest", "actions"): {"maxItems": bounds.max_inline_actions},
        ("PersonalizerMultiSlotRankRequest", "slots"): {"maxItems": bounds.max_slots},
        ("PersonalizerMultiSlotRankRequest", "eventId"): event,
        ("PersonalizerRankableAction", "id"): ID,
        ("PersonalizerSlotRequest", "id"): event,
        ("PersonalizerSlotRequest", "baselineAction"): ID,
        ("PersonalizerSlotRequest", "excludedActions"): ids(bounds),
        ("PersonalizerRewardRequest", "value"): n,
        ("PersonalizerSlotReward", "slotId"): ID,
        ("PersonalizerSlotReward", "value"): n,
        ("PersonalizerMultiSlotRewardRequest", "reward"): {"maxItems": bounds.max_slots},
    }
    for kind in kinds:
        out.update({(kind, prop): keywords for prop, keywords in behaviours.items()})
    return out


def constrain(components: dict[str, Schema], bounds: Limits) -> None:
    """Add each bound of `table` to its property, in place; a bound on a component or a
    property that is not there is an error (the table would have drifted)."""
    for (name, prop), keywords in table(bounds).items():
        array = prop.endswith("[]")
        prop = prop.removesuffix("[]")
        try:
            schema = components[name]["properties"][prop]
        except KeyError:
            raise KeyError(f"a limit names {name}.{prop}, which the document lacks") from None
        _narrow(schema, keywords, _is_array if array else _first)


def _is_array(branch: Schema) -> bool:
    return branch.get("type") == "array"


def _first(branch: Schema) -> bool:
    return branch.get("type") != "null"


def _narrow(schema: Schema, keywords: Schema, takes: Callable[[Schema], bool]) -> None:
    """`keywords` on the branches of `schema` they fit: a non-null branch of a nullable
    value, an integer bound on the integer branch and an array bound on the array's."""
    branches = schema.get("anyOf", [schema])
    for branch in branches:
        if not takes(branch) or not _fits(branch, keywords):
            continue
        for key, value in keywords.items():
            if key == "description" and "anyOf" in schema:
                schema["description"] = value
            elif key == "items" and "items" in branch:
                branch["items"] = {**branch["items"], **value}
            else:
                branch[key] = value


_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "description"},
    "array": {"minItems", "maxItems", "items", "description"},
    "object": {"maxProperties", "description"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "description"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "description"},
}


def _fits(branch: Schema, keywords: Schema) -> bool:
    allowed = _KEYWORDS.get(str(branch.get("type")), {"description"})
    return set(keywords) <= allowed
