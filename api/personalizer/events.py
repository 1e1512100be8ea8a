"""POST /events/{eventId}/reward and /activate, and their multi-slot forms: a reward
through api.rewards (parse, accept_all), an activation through api.activate, answered 204.

Rewards are learned as Personalizer documented: within the loop's reward wait time, by its
aggregation (earliest or sum), the default reward when none came; a reward after the wait
is logged and counted, not learned (still 204, as Personalizer's). A value outside
[-1, 1] is refused (Personalizer's range); an event id that was never decided is a 404
(Personalizer accepted it and dropped it unseen). A deferred event's rewards count only
once it is activated before its wait closes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api import activate as activation
from api import bodies, requests, rewards
from api.personalizer.bodies import MultiSlotRewardRequest, RewardRequest
from api.personalizer.dialects import Dialect
from api.personalizer.errors import PersonalizerError
from api.requests import RewardRequest as LoopwiseReward
from api.serving.state import State, of
from engine.errors import InvalidInput, UnknownEvent

LOW, HIGH = -1.0, 1.0


async def reward(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    body = requests.convert(await bodies.json_object(request, st.settings.limits), RewardRequest)
    await _send(st, request.path_params["event_id"], [(None, body.value, "value")])
    return Response(status_code=204)


async def multislot_reward(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    raw = await bodies.json_object(request, st.settings.limits)
    body = requests.convert(raw, MultiSlotRewardRequest)
    items = bodies.bounded(body.reward, "reward", st.settings.limits.max_batch)
    event_id = request.path_params["event_id"]
    seen: set[str] = set()
    values: list[tuple[str | None, float, str]] = []
    for i, r in enumerate(items):
        if r.slot_id in seen:
            raise InvalidInput(
                f"reward[{i}].slotId {r.slot_id!r} appears twice", field=f"reward[{i}].slotId"
            )
        seen.add(r.slot_id)
        values.append((r.slot_id, r.value, f"reward[{i}].value"))
    await _send(st, event_id, values)
    return Response(status_code=204)


async def activate(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    try:
        await activation.activate(st, request.path_params["event_id"])
    except UnknownEvent as exc:
        raise PersonalizerError(404, "InvalidEventIdToActivate", exc.detail, "eventId") from exc
    return Response(status_code=204)


async def _send(st: State, event_id: str, values: list[tuple[str | None, float, str]]) -> None:
    """Each (slot, value) as a Loopwise reward of `event_id`: checked all first, then sent."""
    parsed = []
    for slot, value, where in values:
        if not LOW <= value <= HIGH:
            raise InvalidInput(f"{where} must be between -1 and 1, got {value!r}", field=where)
        r = LoopwiseReward(event_id=event_id, value=value, slot=slot)
        parsed.append(rewards.parse(r, st))
    for result in await rewards.accept_all(st, parsed):
        if result["status"] == "unknown_event":
            raise UnknownEvent(str(result["detail"]), field="eventId")
