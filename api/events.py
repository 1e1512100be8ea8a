"""POST /v1/events: inventory updates and behaviour events, one or a batch (mixed).

Inventory updates go to the stock table (keyed by SKU); behaviour events go to the
feature store (keyed by user id, see engine.behaviour for their fields).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.requests import BehaviourRequest, Event, EventBatch, InventoryRequest
from api.serving.state import of
from engine import behaviour
from engine.errors import NotFound, Unavailable
from engine.features import number
from engine.limits import Limits
from engine.records import InventoryUpdate, encode
from engine.validate import required_id

Accepted = InventoryUpdate | behaviour.BehaviourObserved


async def events(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    limits = st.settings.limits
    body = await bodies.json_object(request, limits)
    now = time.time()
    if "events" in body:
        batch = requests.convert(body, EventBatch)
        items = bodies.bounded(batch.events, "events", limits.max_batch)
        parsed = [checked(e, limits, f"events[{i}].", now) for i, e in enumerate(items)]
    else:
        parsed = [checked(requests.convert(body, Event), limits, "", now)]
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


def checked(event: Event, limits: Limits, where: str, now: float) -> Accepted:
    """The checks a type cannot make: ids, number bounds, what an event's type needs;
    `where` is the path prefix, dot included."""
    if isinstance(event, InventoryRequest):
        return InventoryUpdate(
            sku=required_id(event.sku, f"{where}sku"),
            level=number(event.level, limits, f"{where}level"),
            ts=now if event.ts is None else number(event.ts, limits, f"{where}ts"),
        )
    return observed(event, limits, where, now)


def observed(
    r: BehaviourRequest, limits: Limits, where: str, now: float
) -> behaviour.BehaviourObserved:
    p = r.product
    product = None
    if p is not None:
        product = behaviour.product(
            p.id, limits, f"{where}product", category=p.category, brand=p.brand, price=p.price
        )
    return behaviour.observed(
        r.kind,
        r.user_id,
        limits=limits,
        where=where,
        now=now,
        session_id=r.session_id,
        ts=r.ts,
        product=product,
        query=r.query,
        quantity=r.quantity,
        revenue=r.revenue,
        device=r.device,
        channel=r.channel,
        event_id=r.event_id,
    )
