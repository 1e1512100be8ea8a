"""Experiment routes: GET, PUT and DELETE /v1/catalogs/{name}/experiment, PATCH an arm,
and the results (JSON and PNG).

The experiment is part of the catalog body (engine.experiment), so each change here is a
new catalog version, with the catalog's If-Match: PUT replaces the experiment, PATCH
`/arms/{arm}` changes one arm's `share`, `paused` or `keep_running` (re-weight, pause,
resume after the guardrail stopped it), DELETE ends it. Results are computed by every
serving process's model replica from the training log (api.serving.replica), so every
process answers the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.catalogs import if_match
from api.requests import ArmChange
from api.resultsvg import results_svg
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import NotFound
from engine.experiment import Experiment

Edit = Callable[[dict[str, Any]], None]  # changes a stored catalog body in place


async def get_experiment(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return JSONResponse(_shown(st, catalog))


async def put_experiment(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    body = await bodies.json_object(request, st.settings.limits)
    catalog = await run_in_threadpool(change, st, name, if_match(request), _set(body))
    return JSONResponse(_shown(st, catalog), headers=_etag(catalog))


async def patch_arm(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name, arm = request.path_params["name"], request.path_params["arm"]
    asked = requests.convert(await bodies.json_object(request, st.settings.limits), ArmChange)
    experiment = _running(st.catalogs.latest(name))
    _arm_exists(experiment, arm)  # 404 before anything is written

    def edit(body: dict[str, Any]) -> None:
        for raw in body["experiment"]["arms"]:
            if raw.get("name") == arm:
                for field in ("share", "paused", "keep_running"):
                    value = getattr(asked, field)
                    if value is not None:
                        raw[field] = value

    catalog = await run_in_threadpool(change, st, name, if_match(request), edit)
    return JSONResponse(_shown(st, catalog), headers=_etag(catalog))


async def delete_experiment(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    _running(st.catalogs.latest(name))

    def end(body: dict[str, Any]) -> None:
        body.pop("experiment", None)

    catalog = await run_in_threadpool(change, st, name, if_match(request), end)
    return Response(status_code=204, headers=_etag(catalog))


async def get_results(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    experiment = _running(catalog)
    report = st.replica.results.report(catalog.name, experiment)
    if request.url.path.endswith(".svg"):
        return Response(results_svg(report), media_type="image/svg+xml")
    return JSONResponse(report)


def _running(catalog: Catalog) -> Experiment:
    if catalog.experiment is None:
        raise NotFound(f"catalog {catalog.name!r} runs no experiment", field="experiment")
    return catalog.experiment


def _set(experiment: dict[str, object]) -> Edit:
    def put(body: dict[str, Any]) -> None:
        body["experiment"] = experiment

    return put


def change(st: State, name: str, expected: int | None, edit: Edit) -> Catalog:
    """Store a new catalog version: the latest body with `edit` applied."""
    return st.catalogs.edit(name, edit, time.time(), expected)


def _shown(st: State, catalog: Catalog) -> dict[str, object]:
    experiment = _running(catalog)
    stopped = st.replica.results.stopped_json(catalog.name, experiment)
    return {**experiment.to_json(), "catalog_version": catalog.version, "stopped": stopped}


def _arm_exists(experiment: Experiment, arm: str) -> None:
    if arm not in {a.name for a in experiment.arms}:
        raise NotFound(f"experiment {experiment.name!r} has no arm {arm!r}", field="arm")


def _etag(catalog: Catalog) -> dict[str, str]:
    return {"ETag": f'"{catalog.version}"'}
