"""Typed request bodies: each route's JSON is converted once, at the edge, into a Struct.

msgspec checks every field's type and refuses unknown fields; its error path (`$.slots[1].id`)
becomes the problem+json `field` (`slots[1].id`). What a type cannot say (id syntax, number
bounds, the shape of a context) is checked by the engine's validators afterwards.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, TypeVar

import msgspec

from engine.errors import InvalidInput

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_fingerprint = msgspec.json.Encoder(order="sorted")


class SlotRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    features: dict[str, Any] | None = None


class DecideRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    catalog: str
    context: dict[str, Any] | None = None
    user_id: str | None = None
    session_id: str | None = None
    candidates: list[str] | None = None
    exclude: list[str] | None = None
    event_id: str | None = None
    slots: int | list[SlotRequest] | None = None
    debug: bool = False

    def fingerprint(self) -> bytes:
        """What makes two requests for one event id the same decision: every field but
        the event id and `debug` (which only changes what the answer shows)."""
        same = msgspec.structs.replace(self, event_id=None, debug=False)
        return hashlib.blake2b(_fingerprint.encode(same), digest_size=16).digest()


class RewardRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    event_id: str
    value: float  # an integer is taken as a number; a boolean is not
    reward_id: str | None = None
    slot: str | int | None = None  # a multi-slot decision: each slot is its own event


class RewardBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rewards: list[RewardRequest]


def convert(body: object, kind: type[T], where: str = "") -> T:
    """`body` as a `kind`; a wrong type or an unknown field is a 422 that names the field."""
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), where) from exc


def _invalid(message: str, where: str) -> InvalidInput:
    match = _PATH.search(message)
    path = match.group("path") if match else ""
    reason = message[: match.start()] if match else message
    unknown = _UNKNOWN.match(reason)
    if unknown:
        path = f"{path}.{unknown.group('name')}" if path else unknown.group("name")
        reason = "is not a known field"
    elif reason.startswith("Object missing required field"):
        name = reason.split("`")[1]
        path = f"{path}.{name}" if path else name
        reason = "is required"
    else:
        reason = reason[0].lower() + reason[1:]
    field = where + path if path else where.rstrip(".") or "body"
    return InvalidInput(f"{field} {reason}".replace("`", ""), field=field)
