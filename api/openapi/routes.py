"""GET /openapi.json (the document) and GET /docs (the page): public, as the routes they
describe are (what each one needs is in the document)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.openapi import document, page
from api.serving.state import of


async def openapi_json(request: Request) -> Response:
    return Response(document.encoded(of(request).settings.limits), media_type="application/json")


async def docs(request: Request) -> Response:
    return HTMLResponse(page.render(of(request).settings.limits))
