"""Mode routes: GET /v1/catalogs/{name}/apprentice (what apprentice mode measured) and
PUT /v1/catalogs/{name}/mode (online, apprentice or logging: one call, a new catalog
version)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.catalogs import if_match
from api.experiments import change
from api.requests import ModeChange
from api.serving.state import of


async def get_apprentice(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    report = st.replica.apprentice.report(catalog.name)
    return JSONResponse({"catalog": catalog.name, "mode": catalog.mode, "report": report})


async def put_mode(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    req = requests.convert(await bodies.json_object(request, st.settings.limits), ModeChange)

    def edit(body: dict[str, Any]) -> None:
        body["mode"] = req.mode

    catalog = await run_in_threadpool(change, st, name, if_match(request), edit)
    return JSONResponse(
        {"catalog": catalog.name, "mode": catalog.mode, "version": catalog.version},
        headers={"ETag": f'"{catalog.version}"'},
    )
