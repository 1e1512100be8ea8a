"""POST /rank and POST /multislot/rank: Personalizer's body in, a `DecideRequest` to
api.decide.decide_request, the answer back in Personalizer's words. Nothing else.

- `actions` are the request's own actions (its action universe); `contextFeatures`, each
  action's and each slot's `features` are mapped by api.personalizer.features.
- `excludedActions` become `exclude`; the first action not excluded is the baseline, which
  a loop in apprentice (or logging-only) mode shows, as Personalizer's rewardActionId did.
- `eventId` is the decision's event id: Loopwise seeds the draw with it (engine.sampling.
  rng_for), so the same request, event id and model give the same ranking, and a repeat
  within the reward window is answered from the kept answer.
- `deferActivation` is `defer_activation`: learned only once activated.
- The ranking is Loopwise's (by probability, then by the model's estimate), with the
  excluded actions after it at probability 0, so every action sent is ranked.
- Multi-slot: one slot per Personalizer slot, its `features` and `excludedActions` its
  own (`SlotRequest.exclude`: an action one slot excludes may fill another); each slot's
  answer carries its conditional `probability` and its `ranking` as an extension. A slot
  nothing was left for is answered without `rewardActionId`, with the `reason`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, decide, requests
from api.personalizer import features
from api.personalizer.bodies import MultiSlotRankRequest, RankableAction, RankRequest
from api.personalizer.dialects import Dialect, loop_name
from api.personalizer.loops import loop
from api.requests import ActionRequest, DecideRequest, SlotRequest
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import InvalidInput
from engine.limits import Limits

_decode = msgspec.json.Decoder()
Body = TypeVar("Body", RankRequest, MultiSlotRankRequest)


class _Call(NamedTuple, Generic[Body]):
    """A rank call parsed at the edge: its state, body, loop, and when it arrived."""

    started: float
    st: State
    req: Body
    catalog: Catalog


async def _call(request: Request, body_type: type[Body]) -> _Call[Body]:
    started = time.perf_counter()
    st = of(request)
    st.authorize(request, "storefront")
    body = await bodies.json_object(request, st.settings.limits)
    req = requests.convert(body, body_type)
    return _Call(started, st, req, await loop(st, loop_name(request, st)))


async def rank(request: Request, dialect: Dialect) -> Response:
    started, st, req, catalog = await _call(request, RankRequest)
    limits = st.settings.limits
    excluded = _excluded(req.excluded_actions, req.actions, "excludedActions")
    decision = DecideRequest(
        catalog=catalog.name,
        context=features.namespaces(req.context_features, limits, "contextFeatures"),
        actions=_actions(req.actions, limits),
        exclude=excluded or None,
        event_id=req.event_id,
        baseline=_baseline(catalog, req.actions, excluded),
        defer_activation=req.defer_activation,
    )
    answer = _decode.decode(await decide.decide_request(st, decision, started=started))
    chosen = answer.get("chosen")
    if chosen is None:  # nothing was eligible and the catalog has no fallback action
        raise InvalidInput(str(answer.get("reason") or "no action could be ranked"))
    ranking = [*answer["ranking"], *({"id": a, "probability": 0.0} for a in excluded)]
    return JSONResponse(
        {"ranking": ranking, "eventId": answer["event_id"], "rewardActionId": chosen["id"]},
        status_code=201,
    )


async def multislot_rank(request: Request, dialect: Dialect) -> Response:
    started, st, req, catalog = await _call(request, MultiSlotRankRequest)
    limits = st.settings.limits
    if catalog.mode != "online":
        raise InvalidInput(
            f"loop {catalog.name!r} is in {_mode(catalog)} mode, which ranks single slots "
            "in Loopwise: rank each slot with /rank, or set learningMode Online",
            field="slots",
        )
    excluded, own = _slot_exclusions(req)
    ids = {a.id for a in req.actions}
    for i, slot in enumerate(req.slots):
        if slot.baseline_action not in ids:
            raise InvalidInput(
                f"slots[{i}].baselineAction {slot.baseline_action!r} is not one of the "
                "request's actions",
                field=f"slots[{i}].baselineAction",
            )
    decision = DecideRequest(
        catalog=catalog.name,
        context=features.namespaces(req.context_features, limits, "contextFeatures"),
        actions=_actions(req.actions, limits),
        exclude=excluded or None,
        event_id=req.event_id,
        slots=[
            SlotRequest(
                id=s.id,
                features=features.namespaces(s.features, limits, f"slots[{i}].features"),
                exclude=own[i] or None,
            )
            for i, s in enumerate(req.slots)
        ],
        defer_activation=req.defer_activation,
    )
    answer = _decode.decode(await decide.decide_request(st, decision, started=started))
    slots = [_slot_answer(s) for s in answer.get("slots", [])]
    if not slots:
        raise InvalidInput(str(answer.get("reason") or "no action could be ranked"))
    return JSONResponse({"slots": slots, "eventId": answer["event_id"]}, status_code=201)


def _slot_answer(s: dict[str, Any]) -> dict[str, Any]:
    """One slot in Personalizer's words; a slot nothing was left for has no
    rewardActionId (the spec's SlotResponse requires only `id`)."""
    if s["chosen"] is None:
        return {"id": s["slot"], "ranking": [], "reason": s["reason"]}
    return {
        "id": s["slot"],
        "rewardActionId": s["chosen"]["id"],
        "probability": s["chosen"]["probability"],
        "ranking": s["ranking"],
    }


def _actions(actions: Sequence[RankableAction], limits: Limits) -> list[ActionRequest]:
    if not actions:
        raise InvalidInput("actions must hold at least one action", field="actions")
    return [
        ActionRequest(
            id=a.id, features=features.namespaces(a.features, limits, f"actions[{i}].features")
        )
        for i, a in enumerate(actions)
    ]


def _excluded(ids: list[str] | None, actions: Sequence[RankableAction], where: str) -> list[str]:
    known = {a.id for a in actions}
    for i, action_id in enumerate(ids or ()):
        if action_id not in known:
            raise InvalidInput(
                f"{where}[{i}] {action_id!r} is not one of the request's actions",
                field=f"{where}[{i}]",
            )
    return list(dict.fromkeys(ids or ()))


def _baseline(
    catalog: Catalog, actions: Sequence[RankableAction], excluded: list[str]
) -> str | None:
    """The first action not excluded: what apprentice and logging-only modes show."""
    if catalog.mode == "online":
        return None
    return next((a.id for a in actions if a.id not in excluded), None)


def _slot_exclusions(req: MultiSlotRankRequest) -> tuple[list[str], list[list[str]]]:
    """The slots' `excludedActions` (each id one of the request's actions) as the
    request's `exclude`, what every slot excludes, and each slot's own `exclude`, the
    rest: slots that exclude alike ask what they asked before per-slot exclude (the same
    request and fingerprint, so a retry across the upgrade matches its decision)."""
    per_slot = [
        _excluded(s.excluded_actions, req.actions, f"slots[{i}].excludedActions")
        for i, s in enumerate(req.slots)
    ]
    for i, ids in enumerate(per_slot):
        if len(ids) >= len(req.actions):
            raise InvalidInput(
                f"slots[{i}].excludedActions excludes every action: the slot has none left",
                field=f"slots[{i}].excludedActions",
            )
    if not per_slot:
        return [], []
    common = [a for a in per_slot[0] if all(a in ids for ids in per_slot[1:])]
    return common, [[a for a in ids if a not in common] for ids in per_slot]


def _mode(catalog: Catalog) -> str:
    return {"apprentice": "Apprentice", "logging": "LoggingOnly"}.get(catalog.mode, "Online")
