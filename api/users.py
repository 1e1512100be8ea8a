"""The feature store's user routes: what is stored about a user, and erasure.

GET /v1/users/{id}/features: the features a decision would join for this user right now
(a catalog's declared aggregates with `?catalog=`, else the default set; a session's with
`?session_id=`), read from this process's replica. DELETE /v1/users/{id}: the right to
erasure; exposure counts go at once, the stored profile in the worker's table, its
changelog and every replica through an erase message on the user's partition.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import store
from api.state import of
from engine import profiles
from engine.behaviour import UserErased
from engine.errors import NotFound, Unavailable
from engine.records import encode
from engine.validate import optional_id


class UnknownUser(NotFound):
    """The feature store holds nothing for this user."""


async def features(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    user_id = _user_id(request)
    spec = profiles.DEFAULT_SPEC
    catalog = request.query_params.get("catalog")
    if catalog is not None:
        spec = st.catalogs.latest(catalog).features
    session_id = request.query_params.get("session_id")
    profile = store.profile_of(st, profiles.key(user_id))
    if profile is None:
        raise UnknownUser(f"no behaviour has been stored for user {user_id!r}", field="user_id")
    now = time.time()
    return JSONResponse(
        {
            "user_id": user_id,
            "catalog": catalog,
            "session_id": session_id,
            "ts": now,
            "events": profile.events,
            "last_event_ts": profile.last_ts,
            "sessions": list(profile.sessions),
            "features": profiles.features(spec, profile, session_id, now),
        }
    )


async def erase(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "admin")
    user_id = _user_id(request)
    message = UserErased(user_id=user_id, ts=time.time())
    if not st.outbox.put(st.settings.topic("behaviour"), user_id.encode(), encode(message)):
        raise Unavailable("the outbox is full because the broker is unreachable; retry later")
    exposures = st.exposures.erase(st.pseudonyms.of(user_id))
    st.profiles.discard(profiles.key(user_id))  # this replica at once; others follow
    st.metrics.counts["users_erased"] += 1
    return JSONResponse(
        {"user_id": user_id, "status": "erasing", "exposure_records_erased": exposures},
        status_code=202,
    )


def _user_id(request: Request) -> str:
    return str(optional_id(str(request.path_params["user_id"]), "user_id"))
