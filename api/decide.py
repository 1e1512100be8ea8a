"""POST /v1/decide: context in, ranked actions with exact probabilities out.

Single-slot by default; with `slots` (a count, or named slots with their own features) one
action per slot, no action twice, each slot's probability conditional on the slots before.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from agents.mirror import StockView
from api import bodies, store
from api.state import State, encode_index, of
from engine.catalog import Action, Catalog
from engine.decision import Decision, PolicyPmf, Slot, SlotDecision, decide
from engine.eligibility import eligible
from engine.errors import EngineError, InvalidInput, LimitExceeded
from engine.features import Features, flatten
from engine.records import DecisionLogged, encode
from engine.sampling import Pmf, normalise
from engine.validate import ID_RE, optional_id

log = logging.getLogger(__name__)
KNOWN = {"catalog", "context", "user_id", "session_id", "candidates", "exclude", "event_id"}
KNOWN |= {"slots", "debug"}
_json = msgspec.json.Encoder()


async def decide_route(request: Request) -> Response:
    started = time.perf_counter()
    st = of(request)
    st.authorize(request, "storefront")
    limits = st.settings.limits
    body = await bodies.json_object(request, limits.max_body_bytes)
    for key in body:
        if key not in KNOWN:
            raise InvalidInput(
                f"{key} is not a known field; expected one of {', '.join(sorted(KNOWN))}",
                field=key,
            )
    catalog = st.catalogs.latest(str(bodies.field(body, "catalog", str)))
    features = flatten(body.get("context"), limits)
    user_id = optional_id(body.get("user_id"), "user_id")
    session_id = optional_id(body.get("session_id"), "session_id")
    event_id = str(bodies.field(body, "event_id", str, required=False) or uuid.uuid4().hex)
    if not ID_RE.fullmatch(event_id) or "/" in event_id:
        raise InvalidInput(
            "event_id must be 1-128 printable characters without '/' (slot events use it)",
            field="event_id",
        )
    offered = eligible(
        catalog,
        _ids(body, "candidates", limits.max_actions),
        _ids(body, "exclude", limits.max_actions) or (),
    )
    slots = _slots(body.get("slots"), st)
    now = time.time()
    features = store.with_context(
        store.user_features(st, catalog, user_id, session_id, now), features
    )
    offered, action_features = store.popular(st, catalog, offered, now)
    seen = st.exposures.of(catalog.name, user_id) if user_id else None
    stock = StockView(st.stock)
    decision = decide(
        catalog,
        offered,
        features,
        event_id,
        now,
        _policy(st, catalog),
        exposures=seen,
        stock=stock,
        slots=slots,
    )
    logged = _log(st, catalog, decision, user_id, now, stock, action_features)
    if user_id and decision.slots:
        shown = [s.actions[s.chosen].id for s in decision.slots]
        st.exposures.record(catalog.name, user_id, shown, now, seen)
    st.metrics.counts["decisions"] += 1
    st.metrics.decide_seconds.append(time.perf_counter() - started)
    debug = body.get("debug") is True
    response = _response(st, catalog, event_id, decision, logged, debug)
    if debug:  # the context as decided with and logged: the request's and the stored features
        response["features"] = features
        response["action_features"] = action_features
    return Response(_json.encode(response), media_type="application/json")


def _policy(st: State, catalog: Catalog) -> PolicyPmf:
    model = st.replica.policy(catalog)

    def pmf(context: Features, actions: Sequence[Action]) -> tuple[Pmf, Pmf, str]:
        try:
            pmf, scores = model.policy.ranked(context, actions)
            return normalise(pmf), scores, model.policy.name
        except (EngineError, RuntimeError, ValueError) as exc:  # the safe policy answers
            log.error("policy %s failed on catalog %s: %s", model.policy.name, catalog.name, exc)
            st.metrics.counts["policy_failures"] += 1
            return np.full(len(actions), 1.0 / len(actions)), np.zeros(len(actions)), "uniform"

    return pmf


def _log(
    st: State,
    catalog: Catalog,
    decision: Decision,
    user_id: str | None,
    now: float,
    stock: StockView,
    action_features: dict[str, Features],
) -> bool:
    removed = {reason: len(ids) for reason, ids in decision.removed.items()}
    inventory = catalog.constraints.inventory
    logged = True
    for s in decision.slots:
        sku = inventory.sku(s.actions[s.chosen]) if inventory else None
        levels = {sku: stock[sku]} if sku is not None and sku in stock else {}
        record = DecisionLogged(
            event_id=s.event_id,
            ts=now,
            catalog=catalog.name,
            catalog_version=catalog.version,
            user_id=user_id,
            context=s.context,
            eligible=[a.id for a in s.actions],
            pmf=[float(p) for p in s.pmf],
            chosen=s.chosen,
            probability=s.probability,
            policy=s.policy,
            model_version=st.replica.model_version(catalog.name),
            wait_seconds=catalog.learning.reward_wait_seconds,
            default_reward=catalog.learning.default_reward,
            aggregation=catalog.learning.aggregation,
            slot=s.slot.id if s.slot else None,
            fallback=s.fallback or (s.policy == "uniform" and catalog.learning.policy != "uniform"),
            removed=removed,
            stock=levels,
            action_features={
                a.id: action_features[a.id] for a in s.actions if a.id in action_features
            },
        )
        ok = st.outbox.put(st.settings.topic("decisions"), s.event_id.encode(), encode(record))
        st.decisions.put(
            s.event_id.encode(),
            encode_index(catalog.name, now, catalog.learning.reward_wait_seconds),
        )
        if not ok:
            st.metrics.counts["decisions_unlogged"] += 1
        logged = logged and ok
    return logged


def _response(
    st: State, catalog: Catalog, event_id: str, decision: Decision, logged: bool, debug: bool
) -> dict[str, object]:
    out: dict[str, object] = {
        "event_id": event_id,
        "policy": decision.slots[0].policy if decision.slots else None,
        "model_version": st.replica.model_version(catalog.name),
        "catalog_version": catalog.version,
        "logged": logged,
        "removed": {reason: len(ids) for reason, ids in decision.removed.items()},
    }
    if debug:
        out["removed_ids"] = decision.removed
    if decision.reason is not None:
        out.update({"ranking": [], "chosen": None, "fallback": False, "reason": decision.reason})
        return out
    if decision.slots and decision.slots[0].slot is None:
        one = decision.slots[0]
        out.update(_slot_json(one))
        return out
    out["slots"] = [
        {"slot": s.slot.id if s.slot else None, "event_id": s.event_id, **_slot_json(s)}
        for s in decision.slots
    ]
    return out


def _slot_json(s: SlotDecision) -> dict[str, object]:
    return {
        "ranking": [{"id": s.actions[i].id, "probability": float(s.pmf[i])} for i in s.ranking()],
        "chosen": {"id": s.actions[s.chosen].id, "probability": s.probability},
        "fallback": s.fallback,
    }


def _slots(raw: object, st: State) -> list[Slot] | None:
    limit = st.settings.limits.max_slots
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= limit:
            raise LimitExceeded(f"slots must be between 1 and {limit}, got {raw}", field="slots")
        return [Slot(str(k), {}) for k in range(raw)]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("slots must be a number or a non-empty array of slots", field="slots")
    if len(raw) > limit:
        raise LimitExceeded(
            f"slots has {len(raw)} entries, more than the limit of {limit}", field="slots"
        )
    out: list[Slot] = []
    for i, item in enumerate(raw):
        where = f"slots[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise InvalidInput(f"{where} must be an object with a string id", field=f"{where}.id")
        slot_id = str(item["id"])
        if not ID_RE.fullmatch(slot_id) or "/" in slot_id:
            raise InvalidInput(
                f"{where}.id must be 1-128 printable characters without '/'", field=f"{where}.id"
            )
        if any(s.id == slot_id for s in out):
            raise InvalidInput(f"{where}.id {slot_id!r} appears twice", field=f"{where}.id")
        features = flatten(item.get("features"), st.settings.limits, field=f"{where}.features")
        out.append(Slot(slot_id, features))
    return out


def _ids(body: dict[str, object], name: str, limit: int) -> list[str] | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InvalidInput(f"{name} must be an array of action ids", field=name)
    if len(raw) > limit:
        raise LimitExceeded(
            f"{name} has {len(raw)} ids, more than the limit of {limit}", field=name
        )
    return [str(x) for x in raw]
