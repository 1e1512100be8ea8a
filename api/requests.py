"""Typed request bodies: each route's JSON is converted once, at the edge, into a Struct.

msgspec checks every field's type and refuses unknown fields; its error path (`$.slots[1].id`)
becomes the problem+json `field` (`slots[1].id`), and its reason is said in the words of
engine.validate ("must be a number", "is required", "is not a known field", "must be one
of ..."). What a type cannot say (id syntax, number bounds, the shape of a context, which
fields an event's type needs) is checked by the engine's validators afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, Literal, TypeVar, overload

import msgspec
import msgspec.inspect

from engine.errors import InvalidInput

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]*)`")
_EXPECTED = re.compile(r"Expected `(?P<expected>[^`]*)`(?:, got `(?P<got>[^`]*)`)?")
_INVALID_VALUE = re.compile(r"Invalid value (?P<value>.*)")
_fingerprint = msgspec.json.Encoder(order="sorted")
_plain = msgspec.json.Encoder()
_KINDS = {  # msgspec's type names, as engine.validate says them
    "str": "a string",
    "float": "a number",
    "int": "an integer",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


class SlotRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    features: dict[str, Any] | None = None
    exclude: list[str] | None = None  # this slot may not show these (the others may)


class ActionRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An action sent with a decision request (engine.inline): as a catalog action is."""

    id: str
    features: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class PerformanceQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """GET /v1/catalogs/{name}/performance's query: the resolution, the start, the level."""

    every: int = 3600  # seconds per point: a multiple of 300 up to 86,400
    since: float = 0.0  # unix seconds; 0: everything kept (two days)
    alpha: float = 0.05  # the intervals are at 1 - alpha


class WhyRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a decision for this context and user would do with one action now (api.why);
    as a query (GET): user_id and session_id only."""

    context: dict[str, Any] | None = None
    user_id: str | None = None
    session_id: str | None = None


class FailoverRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mode: Literal["safe", "auto"]  # safe: hold the catalog on its safe policy; auto: the breaker
    reason: str = "no reason given"


class ModeChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mode: Literal["online", "apprentice", "logging"]


class ArmChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    share: float | None = None
    paused: bool | None = None
    keep_running: bool | None = None


# The fields a decision's fingerprint hashes as a whole: those of the release before
# inline actions, so that a retry across an upgrade still matches its decision. A field
# added since counts only when it is set (`fingerprint`), a slot's `exclude` included: a
# slot is hashed as `{id, features}`, as it was.
_FINGERPRINTED = (
    "catalog", "context", "user_id", "session_id", "candidates", "exclude", "event_id",
    "slots", "baseline", "debug",
)  # fmt: skip


class DecideRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    catalog: str
    context: dict[str, Any] | None = None
    user_id: str | None = None
    session_id: str | None = None
    candidates: list[str] | None = None
    exclude: list[str] | None = None
    event_id: str | None = None
    slots: int | list[SlotRequest] | None = None
    baseline: str | None = None  # apprentice and logging modes: the storefront's own choice
    # the request's own action universe instead of the catalog's stored actions
    actions: list[ActionRequest] | None = None
    defer_activation: bool = False  # logged, learned only once activated (api.activate)
    debug: bool = False

    def action_keys(self) -> list[bytes]:
        """Each inline action as JSON, in the order sent: what identifies it (engine.inline
        caches by it, and the fingerprint reads it)."""
        return [_plain.encode(a) for a in self.actions or ()]

    def fingerprint(self, action_keys: list[bytes] | None = None) -> bytes:
        """What makes two requests for one event id the same decision: every field but
        the event id and `debug` (which only changes what the answer shows). Inline
        actions count as sent (`action_keys`), their keys' order included."""
        same = {name: getattr(self, name) for name in _FINGERPRINTED}
        same.update(event_id=None, debug=False)
        slots = self.slots if isinstance(self.slots, list) else []
        if slots:  # a slot as the release before per-slot exclude hashed it
            same["slots"] = [{"id": s.id, "features": s.features} for s in slots]
        digest = hashlib.blake2b(_fingerprint.encode(same), digest_size=16)
        if self.defer_activation:
            digest.update(b"\x00defer_activation")
        if any(s.exclude is not None for s in slots):
            digest.update(b"\x00slots.exclude" + _fingerprint.encode([s.exclude for s in slots]))
        if self.actions is not None:
            keys = self.action_keys() if action_keys is None else action_keys
            digest.update(b"\x00actions[" + b",".join(keys) + b"]")
        return digest.digest()


class RewardRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    event_id: str
    value: float  # an integer is taken as a number; a boolean is not
    reward_id: str | None = None
    slot: str | int | None = None  # a multi-slot decision: each slot is its own event


class RewardBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rewards: list[RewardRequest]


class ProductRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    category: str | None = None
    brand: str | None = None
    price: float | None = None


class InventoryRequest(
    msgspec.Struct, tag_field="type", tag="inventory", forbid_unknown_fields=True, frozen=True
):
    sku: str
    level: float
    ts: float | None = None  # default: now


class BehaviourRequest(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    """The fields of every behaviour event; which ones its type needs, and their bounds,
    are engine.behaviour's rules. None: not given (a given 0 revenue is still checked)."""

    user_id: str
    session_id: str | None = None
    ts: float | None = None
    product: ProductRequest | None = None
    query: str | None = None
    quantity: float | None = None
    revenue: float | None = None
    device: str | None = None
    channel: str | None = None
    event_id: str | None = None

    @property
    def kind(self) -> str:
        """The event's `type` (its tag)."""
        return str(self.__struct_config__.tag)


# One class per behaviour type (msgspec tags a class with one value); the same fields.
class PageView(BehaviourRequest, tag="page_view", frozen=True): ...


class ProductView(BehaviourRequest, tag="product_view", frozen=True): ...


class Search(BehaviourRequest, tag="search", frozen=True): ...


class AddToCart(BehaviourRequest, tag="add_to_cart", frozen=True): ...


class RemoveFromCart(BehaviourRequest, tag="remove_from_cart", frozen=True): ...


class Purchase(BehaviourRequest, tag="purchase", frozen=True): ...


BehaviourEvent = PageView | ProductView | Search | AddToCart | RemoveFromCart | Purchase
Event = InventoryRequest | BehaviourEvent


class EventBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    events: list[Event]


@overload
def convert(body: object, kind: type[T], where: str = "", strict: bool = True) -> T: ...
@overload
def convert(body: object, kind: Any, where: str = "", strict: bool = True) -> Any: ...
def convert(body: object, kind: Any, where: str = "", strict: bool = True) -> Any:
    """`body` as a `kind` (a Struct, or a union of tagged Structs); a wrong type or an
    unknown field is a 422 that names the field. `strict=False` reads numbers and booleans
    from strings, as a query string carries them."""
    try:
        return msgspec.convert(body, kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), where, _tags(kind)) from exc


def _invalid(message: str, where: str, tags: dict[str, tuple[str, ...]]) -> InvalidInput:
    match = _PATH.search(message)
    path = match.group("path") if match else ""
    reason = message[: match.start()] if match else message
    unknown, missing = _UNKNOWN.match(reason), _MISSING.match(reason)
    if unknown:
        path = _join(path, unknown.group("name") or '""')  # an empty key: its quotes
        reason = "is not a known field"
    elif missing:
        path = _join(path, missing.group("name"))
        reason = "is required"
    name = path.rsplit(".", 1)[-1]
    if name in tags and not unknown:  # a tag: which Struct the object is
        reason = _one_of(tags[name], reason)
    elif expected := _EXPECTED.match(reason):
        reason = _must_be(expected.group("expected"), expected.group("got"))
    elif reason == "Number out of range":  # an integer beyond any float
        reason = "is out of range"
    elif not (unknown or missing):
        reason = reason[0].lower() + reason[1:]
    field = where + path if path else where.rstrip(".") or "body"
    return InvalidInput(f"{field} {reason}".replace("`", ""), field=field)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _must_be(expected: str, got: str | None) -> str:
    """ "must be a number, got a string", from msgspec's `float | null` and `str`."""
    kinds = [_KINDS.get(k, k) for k in expected.split(" | ") if k != "null"]
    said = f"must be {' or '.join(kinds)}"
    return f"{said}, got {_KINDS.get(got, got)}" if got else said


def _one_of(options: tuple[str, ...], reason: str) -> str:
    said = f"must be one of {', '.join(options)}"
    if reason == "is required":
        return said
    value = _INVALID_VALUE.match(reason)
    if value:
        return f"{said}, got {value.group('value')}"
    expected = _EXPECTED.match(reason)
    got = expected.group("got") if expected else None
    return f"{said}, got {_KINDS.get(got, got)}" if got else said


@functools.cache
def _tags(kind: Any) -> dict[str, tuple[str, ...]]:
    """The values of each tag field of the Structs in `kind`, in the order of its unions
    (every request has at most one tagged union)."""
    found: dict[str, list[str]] = {}
    stack = [msgspec.inspect.type_info(kind)]
    seen: set[int] = set()
    while stack:
        t = stack.pop(0)
        if id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t, msgspec.inspect.StructType):
            if t.tag_field is not None and t.tag is not None:
                found.setdefault(t.tag_field, []).append(str(t.tag))
            stack += [f.type for f in t.fields]
        elif isinstance(t, msgspec.inspect.UnionType):
            stack += t.types
        elif isinstance(t, msgspec.inspect.ListType | msgspec.inspect.DictType):
            stack.append(t.item_type if isinstance(t, msgspec.inspect.ListType) else t.value_type)
    return {name: tuple(values) for name, values in found.items()}
