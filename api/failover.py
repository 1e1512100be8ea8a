"""Failover routes: GET and PUT /v1/catalogs/{name}/failover.

GET shows the catalog's failover settings, its breaker, whether the model is loaded and
how many decisions each cause sent to the safe policy (in this serving process). PUT
`{"mode": "safe", "reason": ...}` holds every decision of the catalog on its safe policy
until PUT `{"mode": "auto"}` hands it back to the breaker, closed: each one call.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.requests import FailoverRequest
from api.serving.state import of
from engine.errors import LimitExceeded

MAX_REASON = 512


async def get_failover(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return JSONResponse(st.failovers.to_json(catalog, st.replica))


async def put_failover(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    req = requests.convert(await bodies.json_object(request, st.settings.limits), FailoverRequest)
    if len(req.reason) > MAX_REASON:
        raise LimitExceeded(
            f"reason is {len(req.reason)} characters, more than the limit of {MAX_REASON}",
            field="reason",
        )
    if req.mode == "safe":
        st.failovers.force(catalog, req.reason)
    else:
        st.failovers.reset(catalog)
    st.metrics.counts[f"failover_{req.mode}_requests"] += 1
    return JSONResponse(st.failovers.to_json(catalog, st.replica))
