"""Catalog routes for marketers: PUT/GET/DELETE /v1/catalogs/{name}, GET /v1/catalogs."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.state import of
from engine.errors import InvalidInput


async def put_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    body = await bodies.json_object(request, st.settings.limits.max_body_bytes)
    expected = _if_match(request)
    catalog, created = st.catalogs.put(name, body, time.time(), expected)
    return JSONResponse(
        catalog.to_json(),
        status_code=201 if created else 200,
        headers={"ETag": f'"{catalog.version}"'},
    )


async def get_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return JSONResponse(catalog.to_json(), headers={"ETag": f'"{catalog.version}"'})


async def delete_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    st.catalogs.delete(request.path_params["name"])
    return Response(status_code=204)


async def list_catalogs(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    items = []
    for name in st.catalogs.names():
        c = st.catalogs.latest(name)
        items.append(
            {
                "name": name,
                "version": c.version,
                "actions": len(c.actions),
                "updated_at": c.updated_at,
                "policy": c.learning.policy,
            }
        )
    return JSONResponse({"catalogs": items})


def _if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().strip('"')
    if not value.isdigit():
        raise InvalidInput("If-Match must be a catalog version number", field="If-Match")
    return int(value)
