"""POST /v1/events/{event_id}/activate: a deferred decision was shown after all.

A decision made with `defer_activation` is answered and logged, but learned only if it is
activated before its reward window closes; the window starts at the decision, as
Personalizer's does (docs/reference/api.md#deferred-activation). Rewards sent before the
activation are held by the join and count once it comes; a deferred decision never
activated is never learned, and counted (`loopwise_join_unactivated_total`).

The activation is a message on the rewards topic (engine.records.EventActivated), keyed
by the event id like a reward, so the worker's join meets it with its decision on one
partition and learning stays exactly once and replayable from the log. A slate's event
id activates every slot. Any serving process takes it: like a reward, an id not known
here yet waits up to `PEER_WAIT_SECONDS` for the decisions log.

The seam: `activate(st, event_id)` is the whole of it for another front end (the
Personalizer-compatible adapter); it raises UnknownEvent for an id never decided.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.serving.state import State, of
from engine.errors import Unavailable, UnknownEvent
from engine.records import EventActivated, encode
from engine.validate import required_id

PEER_WAIT_SECONDS = 1.0


async def activate_route(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    return JSONResponse(await activate(st, request.path_params["event_id"]), 202)


async def activate(st: State, event_id: str) -> dict[str, object]:
    """Activate the decision `event_id` (every slot of a slate); its answer, `status`
    activated, late, pending or not_deferred. Activating twice changes nothing."""
    required_id(event_id, "event_id")
    found = _targets(st, event_id)
    if found is None:
        await st.peers.wait(lambda: _targets(st, event_id) is not None, PEER_WAIT_SECONDS)
        found = _targets(st, event_id, whole=False)  # a slate's slots known so far
    if found is None and st.peers.live:
        st.metrics.counts["activations_unknown"] += 1
        raise UnknownEvent(
            f"no decision with event_id {event_id!r} was made in the last 8 days",
            field="event_id",
        )
    now = time.time()
    out: dict[str, object] = {"event_id": event_id}
    if found is None:  # the log cannot be followed now: sent on, applied if decided
        _send(st, [event_id], now)
        st.metrics.counts["activations_pending"] += 1
        out["status"] = "pending"
        out["detail"] = (
            "the decision is not known here yet (the decisions log is not followed live): "
            "the activation is kept and applies if the decision was made"
        )
        return out
    targets, slate = found
    if slate:
        out["events"] = targets
    decided = st.decisions.get(targets[0])
    if decided is None or not decided.deferred:
        st.metrics.counts["activations_not_deferred"] += 1
        out["status"] = "not_deferred"
        out["detail"] = "decided without defer_activation: it is learned without one"
        return out
    _send(st, targets, now)
    closed = now - decided.ts - decided.wait_seconds
    if closed > 0:
        st.metrics.counts["activations_late"] += 1
        out["status"] = "late"
        out["detail"] = (
            f"the reward wait window of {decided.wait_seconds:g} s closed {closed:.1f} s ago: "
            "logged and counted, not learned"
        )
        return out
    st.metrics.counts["activations_accepted"] += 1
    out["status"] = "activated"
    return out


def _targets(st: State, event_id: str, whole: bool = True) -> tuple[list[str], bool] | None:
    """The event ids to activate and whether `event_id` is a slate's, or None while this
    process knows no decision of that id (`whole`: nor every slot of a slate)."""
    slate = st.decisions.slate(event_id)
    if slate is not None:
        size, slots = slate
        return (slots, True) if slots and (len(slots) >= size or not whole) else None
    return ([event_id], False) if event_id in st.decisions else None


def _send(st: State, event_ids: list[str], now: float) -> None:
    for eid in event_ids:
        record = encode(EventActivated(event_id=eid, ts=now))
        if not st.outbox.put(st.settings.topic("rewards"), eid.encode(), record):
            raise Unavailable("the outbox is full because the broker is unreachable; retry later")
