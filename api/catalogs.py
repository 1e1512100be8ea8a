"""Catalog routes for marketers: PUT/GET/DELETE /v1/catalogs/{name}, GET /v1/catalogs.

A catalog may hold thousands of actions: decoding, validating, storing and rendering one
takes a while (about a second at 10,000 actions), so it runs in a worker thread and the
event loop goes on answering decisions. Writes to the store go one at a time (its `writes`),
as they did when they ran on the loop: a version number is read and the next one written.
"""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import InvalidInput, UnknownCatalog


async def put_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    expected = if_match(request)
    raw = await bodies.read(request, st.settings.limits.max_body_bytes)
    return await run_in_threadpool(_put, st, name, raw, bodies.content_type(request), expected)


def _put(st: State, name: str, raw: bytes, content_type: str, expected: int | None) -> Response:
    body = bodies.parse(raw, content_type, st.settings.limits)
    with st.catalogs.writes:
        catalog, created = st.catalogs.put(name, body, time.time(), expected)
    return _render(catalog, 201 if created else 200)


def _render(catalog: Catalog, status: int = 200) -> Response:
    headers = {"ETag": f'"{catalog.version}"'}
    return JSONResponse(catalog.to_json(), status_code=status, headers=headers)


async def get_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    return await run_in_threadpool(_render, catalog)


async def delete_catalog(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    await run_in_threadpool(_delete, st, request.path_params["name"])
    return Response(status_code=204)


def _delete(st: State, name: str) -> None:
    with st.catalogs.writes:  # not between a version's read and its write
        st.catalogs.delete(name)


async def list_catalogs(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    items = []
    for name in st.catalogs.names():
        try:
            c = st.catalogs.latest(name)
        except UnknownCatalog:  # deleted by a worker thread since names() was read
            continue
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


def if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().strip('"')
    if not value.isdigit():
        raise InvalidInput("If-Match must be a catalog version number", field="If-Match")
    return int(value)
