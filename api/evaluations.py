"""Evaluation routes: POST /v1/catalogs/{name}/evaluations starts an off-policy evaluation
of candidate policies on the catalog's logs (engine.evaluation) as a job of its own
(api.serving.jobs); GET lists them; GET .../{id} answers its progress, then its estimates.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.serving.state import of
from engine.errors import InvalidInput
from engine.evaluation import parse_candidates, parse_window
from engine.validate import as_number, no_unknown


async def start(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    limits = st.settings.limits
    body = await bodies.json_object(request, limits)
    no_unknown(body, {"since", "until", "candidates", "alpha"}, "")
    since, until = parse_window(body, limits, time.time())
    parse_candidates(body.get("candidates"), catalog, limits)  # refused here, not in the job
    alpha = as_number(body.get("alpha", 0.05), limits, "alpha")
    if not 0.0 < alpha < 0.5:
        raise InvalidInput("alpha must be in (0, 0.5)", field="alpha")
    versions = [
        c.to_json()
        for v in range(1, catalog.version + 1)
        if (c := st.catalogs.version(catalog.name, v)) is not None
    ]
    spec = {
        "catalog": catalog.name,
        "since": since,
        "until": until,
        "alpha": alpha,
        "candidates": body["candidates"],
        "catalog_versions": versions,
        "bootstrap": st.settings.bootstrap,
        "topic": st.settings.topic("training"),
        "partitions": st.settings.partitions,
    }
    job_id = st.jobs.start(catalog.name, spec)
    location = f"/v1/catalogs/{catalog.name}/evaluations/{job_id}"
    return JSONResponse(
        {"id": job_id, "state": "starting", "location": location},
        status_code=202,
        headers={"Location": location},
    )


async def status(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return JSONResponse(st.jobs.status(catalog.name, request.path_params["id"]))


async def listing(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return JSONResponse({"evaluations": st.jobs.list(catalog.name)})
