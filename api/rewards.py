"""POST /v1/rewards: one reward or a batch, joined with its decision by the worker."""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.state import State, decode_index, of
from engine.errors import InvalidInput, Unavailable, UnknownCatalog, UnknownEvent
from engine.features import number
from engine.records import RewardObserved, encode
from engine.validate import ID_RE

KNOWN = {"event_id", "value", "reward_id", "slot"}


async def rewards(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    body = await bodies.json_object(request, st.settings.limits.max_body_bytes)
    if "rewards" not in body:
        result = accept(st, body, "")
        if result["status"] == "unknown_event":
            raise UnknownEvent(str(result["detail"]), field="event_id")
        return JSONResponse(result, status_code=202)
    items = bodies.batch(body, "rewards", st.settings.limits.max_batch)
    for i, item in enumerate(items):  # validate all before accepting any
        _parse(item, st, f"rewards[{i}].")
    results = [accept(st, item, f"rewards[{i}].") for i, item in enumerate(items)]
    return JSONResponse({"results": results}, status_code=202)


def accept(st: State, item: object, where: str) -> dict[str, object]:
    event_id, value, reward_id = _parse(item, st, where)
    raw = st.decisions.get(event_id.encode())
    if raw is None:
        st.metrics.counts["rewards_unknown"] += 1
        return {
            "event_id": event_id,
            "status": "unknown_event",
            "detail": f"no decision with event_id {event_id!r} was made in the last 8 days",
        }
    catalog, decided, wait = decode_index(raw)
    now = time.time()
    record = RewardObserved(event_id=event_id, reward_id=reward_id, value=value, ts=now)
    if not st.outbox.put(st.settings.topic("rewards"), event_id.encode(), encode(record)):
        raise Unavailable("the outbox is full because the broker is unreachable; retry later")
    late = now > decided + wait
    st.metrics.counts["rewards_late" if late else "rewards_accepted"] += 1
    result: dict[str, object] = {
        "event_id": event_id,
        "reward_id": reward_id,
        "status": "late" if late else "accepted",
    }
    if late:
        result["detail"] = (
            f"the reward wait window of {wait:g} s closed "
            f"{now - decided - wait:.1f} s ago: logged and counted, not learned"
        )
    outside = _outside_range(st, catalog, value)
    if outside:
        st.metrics.counts["rewards_outside_range"] += 1
        result["warning"] = outside
    return result


def _outside_range(st: State, catalog: str, value: float) -> str:
    """Why `value` will be learned as another number, or "" (the reward is kept as sent)."""
    try:
        exploration = st.catalogs.latest(catalog).learning.exploration
    except UnknownCatalog:
        return ""
    learned = exploration.learned_reward(value)
    if learned == value:
        return ""
    low, high = exploration.reward_range()
    return (
        f"value {value:g} is outside catalog {catalog!r}'s reward range [{low:g}, {high:g}] "
        f"and is learned as {learned:g}; declare the range of your "
        "rewards in learning.exploration.min_reward and max_reward"
    )


def _parse(item: object, st: State, where: str) -> tuple[str, float, str]:
    if not isinstance(item, dict):
        raise InvalidInput(
            f"{where or 'body'} must be an object", field=where.rstrip(".") or "body"
        )
    for key in item:
        if key not in KNOWN:
            raise InvalidInput(
                f"{where}{key} is not a known field; expected one of {', '.join(sorted(KNOWN))}",
                field=f"{where}{key}",
            )
    event_id = item.get("event_id")
    if not isinstance(event_id, str) or not ID_RE.fullmatch(event_id):
        raise InvalidInput(
            f"{where}event_id must be a string of 1-128 printable characters",
            field=f"{where}event_id",
        )
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}value must be a number", field=f"{where}value")
    reward_id = item.get("reward_id", None)
    if reward_id is not None and (not isinstance(reward_id, str) or not ID_RE.fullmatch(reward_id)):
        raise InvalidInput(
            f"{where}reward_id must be a string of 1-128 printable characters",
            field=f"{where}reward_id",
        )
    number(value, st.settings.limits, f"{where}value")
    slot = item.get("slot")
    if slot is not None:  # a multi-slot decision: each slot is its own event
        if not isinstance(slot, str | int) or isinstance(slot, bool):
            raise InvalidInput(f"{where}slot must be a slot id", field=f"{where}slot")
        event_id = f"{event_id}/{slot}"
    return event_id, float(value), reward_id or uuid.uuid4().hex
