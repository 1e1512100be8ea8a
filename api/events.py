"""POST /v1/events: inventory updates and behaviour events, one or a batch (mixed).

Inventory updates go to the stock table (keyed by SKU); behaviour events go to the
feature store (keyed by user id, see engine.behaviour for their fields).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.serving.state import State, of
from engine import behaviour
from engine.errors import InvalidInput, NotFound, Unavailable
from engine.features import number
from engine.records import InventoryUpdate, encode
from engine.validate import ID_RE

TYPES = ("inventory", *behaviour.TYPES)
FIELDS = {"inventory": {"type", "sku", "level", "ts"}}
Accepted = InventoryUpdate | behaviour.BehaviourObserved


async def events(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    body = await bodies.json_object(request, st.settings.limits)
    if "events" in body:
        items = bodies.batch(body, "events", st.settings.limits.max_batch)
        parsed = [parse(st, item, f"events[{i}].") for i, item in enumerate(items)]
    else:
        parsed = [parse(st, body, "")]
    for event in parsed:  # all validated before any is accepted
        if isinstance(event, InventoryUpdate):
            topic, key = st.settings.topic("events"), event.sku.encode()
        else:
            topic, key = st.settings.topic("behaviour"), event.user_id.encode()
        if not st.outbox.put(topic, key, encode(event)):
            raise Unavailable("the outbox is full because the broker is unreachable; retry later")
    st.metrics.counts["events_accepted"] += len(parsed)
    return JSONResponse({"accepted": len(parsed)}, status_code=202)


async def stock(request: Request) -> Response:
    """GET /v1/inventory/{sku}: the live level this serving process decides with."""
    st = of(request)
    st.authorize(request, "marketer")
    sku = request.path_params["sku"]
    value = st.stock.get(sku.encode())
    if not isinstance(value, tuple):
        raise UnknownSku(f"no stock level is known for sku {sku!r}", field="sku")
    level, ts = value
    return JSONResponse({"sku": sku, "level": level, "ts": ts})


class UnknownSku(NotFound):
    """No inventory event has named this SKU."""


def parse(st: State, item: object, where: str) -> Accepted:
    if not isinstance(item, dict):
        raise InvalidInput(
            f"{where or 'body'} must be an object", field=where.rstrip(".") or "body"
        )
    kind = item.get("type")
    if kind not in TYPES:
        raise InvalidInput(
            f"{where}type must be one of {', '.join(TYPES)}, got {kind!r}", field=f"{where}type"
        )
    if kind != "inventory":
        return behaviour.parse(item, st.settings.limits, where, time.time())
    for key in item:
        if key not in FIELDS[str(kind)]:
            raise InvalidInput(
                f"{where}{key} is not a field of a {kind} event; expected one of "
                f"{', '.join(sorted(FIELDS[str(kind)]))}",
                field=f"{where}{key}",
            )
    sku = item.get("sku")
    if not isinstance(sku, str) or not ID_RE.fullmatch(sku):
        raise InvalidInput(
            f"{where}sku must be a string of 1-128 printable characters", field=f"{where}sku"
        )
    level = _number(item.get("level"), st, f"{where}level")
    ts = item.get("ts")
    stamp = time.time() if ts is None else _number(ts, st, f"{where}ts")
    return InventoryUpdate(sku=sku, level=level, ts=stamp)


def _number(value: object, st: State, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number", field=where)
    return number(value, st.settings.limits, where)
