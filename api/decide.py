"""POST /v1/decide: context in, ranked actions with exact probabilities out."""

from __future__ import annotations

import logging
import time
import uuid

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from api import bodies
from api.state import encode_index, of
from engine.catalog import ID_RE
from engine.eligibility import eligible
from engine.errors import EngineError, InvalidInput, LimitExceeded
from engine.features import flatten
from engine.records import DecisionLogged, encode
from engine.sampling import normalise, ranking, rng_for, sample

log = logging.getLogger(__name__)
KNOWN = {"catalog", "context", "user_id", "candidates", "exclude", "event_id"}
_json = msgspec.json.Encoder()


async def decide(request: Request) -> Response:
    started = time.perf_counter()
    st = of(request)
    st.authorize(request, "storefront")
    limits = st.settings.limits
    body = await bodies.json_object(request, limits.max_body_bytes)
    for key in body:
        if key not in KNOWN:
            raise InvalidInput(
                f"{key} is not a known field; expected one of {', '.join(sorted(KNOWN))}", field=key
            )
    catalog = st.catalogs.latest(str(bodies.field(body, "catalog", str)))
    features = flatten(body.get("context"), limits)
    user_id = bodies.field(body, "user_id", str, required=False)
    event_id = str(bodies.field(body, "event_id", str, required=False) or uuid.uuid4().hex)
    if not ID_RE.fullmatch(event_id):
        raise InvalidInput("event_id must be 1-128 printable characters", field="event_id")
    actions = eligible(
        catalog,
        _ids(body, "candidates", limits.max_actions),
        _ids(body, "exclude", limits.max_actions) or (),
    )
    model = st.replica.policy(catalog)
    policy_name, fallback = model.policy.name, False
    try:
        pmf = normalise(model.policy.distribution(features, actions))
    except (EngineError, RuntimeError, ValueError) as exc:  # the safe policy answers instead
        log.error("policy %s failed on catalog %s: %s", policy_name, catalog.name, exc)
        st.metrics.counts["policy_failures"] += 1
        pmf, policy_name, fallback = np.full(len(actions), 1.0 / len(actions)), "uniform", True
    chosen, probability = sample(pmf, rng_for(event_id))
    now = time.time()
    model_version = st.replica.model_version(catalog.name)
    record = DecisionLogged(
        event_id=event_id,
        ts=now,
        catalog=catalog.name,
        catalog_version=catalog.version,
        user_id=user_id if isinstance(user_id, str) else None,
        context=features,
        eligible=[a.id for a in actions],
        pmf=[float(p) for p in pmf],
        chosen=chosen,
        probability=probability,
        policy=policy_name,
        model_version=model_version,
        wait_seconds=catalog.learning.reward_wait_seconds,
        default_reward=catalog.learning.default_reward,
        aggregation=catalog.learning.aggregation,
    )
    logged = st.outbox.put(st.settings.topic("decisions"), event_id.encode(), encode(record))
    st.decisions.put(
        event_id.encode(), encode_index(catalog.name, now, catalog.learning.reward_wait_seconds)
    )
    st.metrics.counts["decisions"] += 1
    if not logged:
        st.metrics.counts["decisions_unlogged"] += 1
    response = {
        "event_id": event_id,
        "ranking": [{"id": actions[i].id, "probability": float(pmf[i])} for i in ranking(pmf)],
        "chosen": {"id": actions[chosen].id, "probability": probability},
        "policy": policy_name,
        "model_version": model_version,
        "catalog_version": catalog.version,
        "fallback": fallback,
        "logged": logged,
    }
    st.metrics.decide_seconds.append(time.perf_counter() - started)
    return Response(_json.encode(response), media_type="application/json")


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
