"""A catalog's version history for marketers (and the dashboard's diff and revert).

GET /v1/catalogs/{name}/versions?before=&limit=: the stored versions, newest first, a page
at a time (`next` names the following page). GET /v1/catalogs/{name}/versions/{version}:
the body that version was stored from, as accepted. A revert is a PUT of that body with
`If-Match` naming the current version: it makes a new version, so history only grows.

Bodies of large catalogs take a while to decode, so both read in a worker thread.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.serving.catalogs import StoredVersion
from api.serving.state import State, of
from engine.errors import InvalidInput

PAGE = 50
MAX_PAGE = 500


async def list_versions(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    query = request.query_params
    before = _whole(query["before"], "before") if "before" in query else None
    limit = _whole(query["limit"], "limit") if "limit" in query else PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is {limit}; expected 1 to {MAX_PAGE}", field="limit")
    return await run_in_threadpool(_listing, st, name, before, limit)


def _listing(st: State, name: str, before: int | None, limit: int) -> Response:
    latest = st.catalogs.latest(name).version
    versions = st.catalogs.history(name, before, limit)
    last = versions[-1].version if versions else 1
    more = len(versions) == limit and last > 1
    path = f"/v1/catalogs/{name}/versions?before={last}&limit={limit}"
    return JSONResponse(
        {
            "name": name,
            "latest": latest,
            "versions": [
                {"version": v.version, "updated_at": v.updated_at, "actions": v.actions}
                for v in versions
            ],
            "next": path if more else None,
        }
    )


async def get_version(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    name = request.path_params["name"]
    version = _whole(request.path_params["version"], "version")
    stored = await run_in_threadpool(st.catalogs.stored, name, version)
    return JSONResponse(_shown(name, stored, st.catalogs.latest(name).version))


def _shown(name: str, stored: StoredVersion, latest: int) -> dict[str, object]:
    return {
        "name": name,
        "version": stored.version,
        "updated_at": stored.updated_at,
        "latest": stored.version == latest,
        "body": stored.body,
    }


def _whole(raw: str, field: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise InvalidInput(f"{field} is {raw!r}; expected a whole number", field=field)
    return int(raw)
