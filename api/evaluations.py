"""Evaluation routes: POST /v1/catalogs/{name}/evaluations starts an off-policy evaluation
of candidate policies on the catalog's logs (engine.evaluation) as a job of its own
(api.serving.jobs); POST .../optimizations one that may promote better learning settings
(engine.optimize); GET lists them; GET .../evaluations/{id} answers its progress, then its
estimates (and an optimisation's verdict and what became of it).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.serving.optimizations import job_spec, with_current
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import InvalidInput
from engine.evaluation import parse_candidates, parse_window
from engine.optimize import CURRENT, GRID, candidate_alpha
from engine.validate import as_number, no_unknown


async def start(request: Request) -> Response:
    """An evaluation of the candidates the body names."""
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    body = await bodies.json_object(request, st.settings.limits)
    no_unknown(body, {"since", "until", "candidates", "alpha"}, "")
    return _start(st, catalog, body, body.get("candidates"), {})


async def optimize(request: Request) -> Response:
    """An optimisation: the catalog's own learning settings (`current`) and the
    candidates' (by default engine.optimize.GRID) replayed over the log; the verdict of
    engine.optimize.choose is promoted as a new catalog version unless `promote` is false."""
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    body = await bodies.json_object(request, st.settings.limits)
    no_unknown(body, {"since", "until", "candidates", "alpha", "promote"}, "")
    promote = body.get("promote", True)
    if not isinstance(promote, bool):
        raise InvalidInput("promote must be a boolean", field="promote")
    raw = body.get("candidates", [dict(c) for c in GRID])
    if not isinstance(raw, list) or not all(isinstance(c, dict) and "learning" in c for c in raw):
        raise InvalidInput(
            "candidates must be an array of {name, learning} objects", field="candidates"
        )
    if any(c.get("name") == CURRENT for c in raw):
        raise InvalidInput(f"the name {CURRENT!r} is the catalog's own", field="candidates")
    candidates = with_current(catalog, raw)
    return _start(st, catalog, body, candidates, {"kind": "optimize", "promote": promote})


def _start(
    st: State,
    catalog: Catalog,
    body: dict[str, object],
    candidates: object,
    extra: dict[str, object],
) -> Response:
    limits = st.settings.limits
    since, until = parse_window(body, limits, time.time())
    parse_candidates(candidates, catalog, limits)  # refused here, not in the job
    alpha = as_number(body.get("alpha", 0.05), limits, "alpha")
    if not 0.0 < alpha < 0.5:
        raise InvalidInput("alpha must be in (0, 0.5)", field="alpha")
    if extra.get("kind") == "optimize":  # each candidate's interval at its Bonferroni share
        assert isinstance(candidates, list)
        extra = {**extra, "family_alpha": alpha}
        alpha = candidate_alpha(alpha, len(candidates) - 1)
    spec = job_spec(st, catalog, (since, until), alpha, candidates, extra)
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
