"""GET and POST /v1/catalogs/{name}/actions/{action}/why: is this action shown, and if
not, why not?

`now`: what a decision for the given context and user would do with the action at this
moment, made as every decision is (api.decide.make) but not logged, kept or counted:
whether it is eligible, the constraint that removes it if one does, its probability and
its place in the ranking. `recent`: the last decisions of the catalog this process made
(api.serving.recent): how often the action was shown and how often each constraint
removed it. GET asks for an empty context (and `user_id` / `session_id` from the
query); POST sends a `WhyRequest` body with a context.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.decide import make
from api.requests import DecideRequest, WhyRequest
from api.serving.state import State, of
from engine.decision import Decision
from engine.errors import NotFound

PROBE = "why"  # the event id of a decision that is never logged


async def why(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name, action = request.path_params["name"], request.path_params["action"]
    if request.method == "POST":
        body = await bodies.json_object(request, st.settings.limits)
        asked = requests.convert(body, WhyRequest)
    else:
        asked = requests.convert(dict(request.query_params), WhyRequest, strict=False)
    return JSONResponse(explain(st, name, action, asked))


def explain(st: State, name: str, action: str, asked: WhyRequest) -> dict[str, object]:
    catalog = st.catalogs.latest(name)
    if action not in catalog.index:
        raise NotFound(f"catalog {name!r} has no action {action!r}", field="action")
    req = DecideRequest(
        catalog=name, context=asked.context, user_id=asked.user_id, session_id=asked.session_id
    )
    decision = make(st, req, PROBE, time.time(), None).decision
    return {
        "catalog": name,
        "action": action,
        "now": _now(decision, action),
        "recent": st.recent.about(name, action),
    }


def _now(decision: Decision, action: str) -> dict[str, object]:
    removed_by = next((r for r, ids in decision.removed.items() if action in ids), None)
    out: dict[str, object] = {
        "eligible": False,
        "removed_by": removed_by,
        "probability": 0.0,
        "rank": None,
        "shown_now": None,
    }
    if not decision.slots:
        out["reason"] = decision.reason
        return out
    slot = decision.slots[0]
    ids = [a.id for a in slot.actions]
    out["policy"], out["fallback"] = slot.policy, slot.fallback
    out["shown_now"] = ids[slot.chosen]
    if action in ids:
        i = ids.index(action)
        out.update(
            eligible=True,
            probability=float(slot.pmf[i]),
            rank=slot.ranking().index(i) + 1,
        )
    return out
