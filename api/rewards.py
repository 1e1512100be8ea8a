"""POST /v1/rewards: one reward or a batch, joined with its decision by the worker.

Any serving process takes a reward for a decision any of them made: the decisions
index holds this process's decisions at once and the others' a few milliseconds later
(api.serving.peers). A reward for an event id the index does not hold yet waits up to
`PEER_WAIT_SECONDS` for the decisions log; if the log is followed live and the id is
still unknown, it is refused (404: an id that was never decided, or decided more than 8
days ago); if the log cannot be followed now, the reward is accepted as `pending` (the
worker's join holds a reward that comes before its decision for an hour).

The seam: `parse` checks a typed `RewardRequest` into a `Reward`, and `accept_all` sends
parsed rewards on and answers each as the route does; another front end (the
Personalizer-compatible adapter) calls them, so every reward takes one path to the log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.requests import RewardBatch, RewardRequest
from api.serving.state import State, of
from engine.errors import Unavailable, UnknownCatalog, UnknownEvent
from engine.features import number
from engine.records import RewardObserved, encode
from engine.validate import optional_id, required_id

PEER_WAIT_SECONDS = 1.0


async def rewards(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    body = await bodies.json_object(request, st.settings.limits)
    one = "rewards" not in body
    if one:
        parsed = [parse(requests.convert(body, RewardRequest), st, "")]
    else:
        batch = requests.convert(body, RewardBatch)
        items = bodies.bounded(batch.rewards, "rewards", st.settings.limits.max_batch)
        parsed = [parse(r, st, f"rewards[{i}].") for i, r in enumerate(items)]
    results = await accept_all(st, parsed)
    if one and results[0]["status"] == "unknown_event":
        raise UnknownEvent(str(results[0]["detail"]), field="event_id")
    return JSONResponse(results[0] if one else {"results": results}, 202)


async def accept_all(st: State, parsed: Sequence[Reward]) -> list[dict[str, object]]:
    """Send parsed rewards on, each answered as the route answers it (its `status`:
    accepted, late, pending or unknown_event), after waiting up to PEER_WAIT_SECONDS for
    decisions other processes made that this one has not followed yet."""
    started = time.perf_counter()
    unseen = await st.peers.wait_for((r.event_id for r in parsed), PEER_WAIT_SECONDS)
    pending = bool(unseen) and not st.peers.live
    results = [accept(st, reward, pending) for reward in parsed]
    st.metrics.reward_seconds.observe(time.perf_counter() - started)
    return results


def accept(st: State, reward: Reward, pending: bool) -> dict[str, object]:
    """Send one parsed reward on; `pending`: accept it even if its decision is not known
    here (yet), because the decisions log is not followed live."""
    event_id, value, reward_id = reward
    decided = st.decisions.get(event_id)
    if decided is None and not pending:
        st.metrics.counts["rewards_unknown"] += 1
        return {
            "event_id": event_id,
            "status": "unknown_event",
            "detail": f"no decision with event_id {event_id!r} was made in the last 8 days",
        }
    now = time.time()
    record = RewardObserved(event_id=event_id, reward_id=reward_id, value=value, ts=now)
    if not st.outbox.put(st.settings.topic("rewards"), event_id.encode(), encode(record)):
        raise Unavailable("the outbox is full because the broker is unreachable; retry later")
    if decided is None:
        st.metrics.counts["rewards_pending"] += 1
        return {
            "event_id": event_id,
            "reward_id": reward_id,
            "status": "pending",
            "detail": "the decision is not known here yet (the decisions log is not followed "
            "live): the reward is kept and learned if the decision was made",
        }
    catalog, wait = decided.catalog, decided.wait_seconds
    late = now > decided.ts + wait
    st.metrics.counts["rewards_late" if late else "rewards_accepted"] += 1
    result: dict[str, object] = {
        "event_id": event_id,
        "reward_id": reward_id,
        "status": "late" if late else "accepted",
    }
    if late:
        result["detail"] = (
            f"the reward wait window of {wait:g} s closed "
            f"{now - decided.ts - wait:.1f} s ago: logged and counted, not learned"
        )
    outside = _outside_range(st, catalog, value)
    if outside:
        st.metrics.counts["rewards_outside_range"] += 1
        result["warning"] = outside
    return result


def _outside_range(st: State, catalog: str, value: float) -> str:
    """Why `value` will be learned as another number, or "" (the reward is kept as sent)."""
    try:
        learning = st.catalogs.latest(catalog).learning
    except UnknownCatalog:
        return ""
    learned = learning.learned_reward(value)
    if learned == value:
        return ""
    if learning.policy == "thompson":
        return (
            f"value {value:g} is outside [0, 1], the rewards Thompson sampling learns "
            f"(catalog {catalog!r}), and is learned as {learned:g}"
        )
    low, high = learning.exploration.reward_range()
    return (
        f"value {value:g} is outside catalog {catalog!r}'s reward range [{low:g}, {high:g}] "
        f"and is learned as {learned:g}; declare the range of your "
        "rewards in learning.exploration.min_reward and max_reward"
    )


class Reward(NamedTuple):
    event_id: str  # the slot's event id for a slot of a multi-slot decision
    value: float
    reward_id: str


def parse(r: RewardRequest, st: State, where: str = "") -> Reward:
    """The checks a type cannot make: id syntax, the number's bounds."""
    event_id = required_id(r.event_id, f"{where}event_id")
    reward_id = optional_id(r.reward_id, f"{where}reward_id") or uuid.uuid4().hex
    value = number(r.value, st.settings.limits, f"{where}value")
    if r.slot is not None:
        event_id = f"{event_id}/{optional_id(str(r.slot), f'{where}slot')}"
    return Reward(event_id, value, reward_id)
