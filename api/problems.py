"""RFC 9457 problem+json: every EngineError becomes a 4xx/5xx that names the field."""

from __future__ import annotations

import logging
import math
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.errors import EngineError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


def slug(error: type[EngineError]) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", error.__name__).lower()


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    field: str | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, object] = {
        "type": f"urn:loopwise:problem:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if instance is not None:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


async def engine_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, EngineError):  # pragma: no cover - registered for EngineError only
        raise exc
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.detail)
    answer = problem(
        exc.status,
        exc.title,
        exc.detail,
        kind=slug(type(exc)),
        field=exc.field,
        instance=request.url.path,
    )
    if exc.retry_after is not None:  # whole seconds (RFC 9110), never 0
        answer.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return answer


async def not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    detail = getattr(exc, "detail", "") or "no such route"
    return problem(
        status,
        "Not found" if status == 404 else "HTTP error",
        str(detail),
        kind="http",
        instance=request.url.path,
    )


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "Internal error",
        "an unexpected error occurred; it has been logged",
        kind="internal",
        instance=request.url.path,
    )
