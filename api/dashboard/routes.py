"""The dashboard's routes: its pages under /ui/, its static files, `/` sending there."""

from __future__ import annotations

import os
from os import PathLike

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.dashboard import pages

# No inline script or style, nothing from elsewhere, never framed: a page that holds a key
# in sessionStorage runs only the dashboard's own files.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Revalidated(StaticFiles):
    """Static files a browser asks for again on each use (a 304 while unchanged), so that
    after an upgrade no page runs one release's scripts beside another's."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _html(body: str) -> Response:
    return HTMLResponse(body, headers=HEADERS)


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


async def sign_in(request: Request) -> Response:
    return _html(pages.sign_in())


async def catalogs(request: Request) -> Response:
    return _html(pages.catalogs())


async def catalog(request: Request) -> Response:
    return _html(pages.catalog(request.path_params["name"]))


async def users(request: Request) -> Response:
    return _html(pages.users())


def routes() -> list[BaseRoute]:
    static = Revalidated(packages=[("api.dashboard", "static")])
    return [
        Route("/", home, include_in_schema=False),
        Route("/ui", home, include_in_schema=False),
        Route("/ui/", sign_in, include_in_schema=False),
        Route("/ui/catalogs", catalogs, include_in_schema=False),
        Route("/ui/catalogs/{name}", catalog, include_in_schema=False),
        Route("/ui/users", users, include_in_schema=False),
        Mount("/ui/static", app=static, name="dashboard-static"),
    ]
