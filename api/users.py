"""The feature store's user routes: what is stored about a user, and erasure.

GET /v1/users/{id}/features (or /v1/features?user_id=): the features a decision would
join for this user right now (a catalog's declared aggregates with `?catalog=`, else the
default set; a session's with `?session_id=`), read from this process's replica.

DELETE /v1/users/{id} (or /v1/users?user_id=, for ids a path cannot carry well): the
right to erasure. This process forgets the user's exposures and profile at once; the
stored profile goes from the worker's table, its changelog and every replica through an
erase message on the behaviour topic (keyed by the user id, the table's partitioning),
and every other serving process forgets the exposures through one on the decisions topic
(keyed by the pseudonym those are kept under). What the logs keep: docs/privacy.md.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.serving import store
from api.serving.state import of
from engine import featurespec, profileread, profiles
from engine.behaviour import UserErased
from engine.errors import InvalidInput, NotFound, Unavailable
from engine.records import encode
from engine.validate import optional_id


class UnknownUser(NotFound):
    """The feature store holds nothing for this user."""


async def features(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    user_id = _user_id(request)
    spec = featurespec.DEFAULT_SPEC
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
            "features": profileread.features(spec, profile, session_id, now),
        }
    )


async def erase(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "admin")
    user_id = _user_id(request)
    now = time.time()
    person = st.pseudonyms.of(user_id)
    messages = {
        st.settings.topic("behaviour"): UserErased(user_id=user_id, ts=now),
        st.settings.topic("decisions"): UserErased(user_id=person, ts=now),
    }
    for topic, message in messages.items():
        if not st.outbox.put(topic, message.user_id.encode(), encode(message)):
            raise Unavailable("the outbox is full because the broker is unreachable; retry later")
    exposures = st.exposures.erase(person, now)
    st.profiles.discard(profiles.key(user_id))  # this replica at once; others follow
    st.metrics.counts["users_erased"] += 1
    return JSONResponse(
        {"user_id": user_id, "status": "erasing", "exposure_records_erased": exposures},
        status_code=202,
    )


def _user_id(request: Request) -> str:
    """From the path (every character but the route's own suffix) or `?user_id=`."""
    raw = request.path_params.get("user_id", request.query_params.get("user_id"))
    if raw is None:
        raise InvalidInput("user_id is required, in the path or as ?user_id=", field="user_id")
    return str(optional_id(str(raw), "user_id"))
