"""Errors in Personalizer's shape: `{"error": {"code", "message", "target", "innerError"}}`.

Every EngineError a Personalizer route raises is answered here instead of as problem+json
(api.problems): 422 becomes Personalizer's 400, the other statuses stay; `code` is one of
Personalizer's codes (v1.0 has only BadRequest, ResourceNotFound and InternalServerError;
later versions name what was invalid, such as InvalidRankRequest); `target` is the field
Loopwise names; `innerError.code` is Loopwise's problem slug. A key that is missing or wrong
is answered as Azure's gateway did: code "401" (or "403").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.personalizer.dialects import Dialect, unserved_version
from api.problems import slug
from engine.errors import EngineError

log = logging.getLogger(__name__)
Handler = Callable[[Request, Dialect], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

BAD_REQUEST = "BadRequest"
NOT_FOUND = "ResourceNotFound"
INTERNAL = "InternalServerError"


class PersonalizerError(EngineError):
    """An error with a Personalizer code of its own (EvaluationNotFound, InvalidApiAccess...)."""

    def __init__(
        self, status: int, code: str, detail: str, field: str | None = None, title: str = ""
    ) -> None:
        super().__init__(detail, field=field)
        self.status = status
        self.code = code
        self.title = title or code


def error(
    status: int, code: str, message: str, target: str | None = None, inner: str | None = None
) -> Response:
    body: dict[str, object] = {"code": code, "message": message}
    if target is not None:
        body["target"] = target
    if inner is not None:
        body["innerError"] = {"code": inner}
    return JSONResponse({"error": body}, status_code=status)


def status_of(exc: EngineError) -> int:
    return 400 if exc.status == 422 else exc.status


def code_of(exc: EngineError, dialect: Dialect, invalid: str) -> str:
    """The Personalizer code of `exc` on a route whose invalid input is `invalid`."""
    status = status_of(exc)
    if status in (401, 403):
        return str(status)
    if isinstance(exc, PersonalizerError) and dialect.specific_codes:
        return exc.code
    if status == 404:
        return NOT_FOUND
    if status >= 500:
        return INTERNAL
    if not dialect.specific_codes:
        return BAD_REQUEST
    if status == 413:
        return "PayloadSizeExceeded"
    return invalid


def endpoint(handler: Handler, dialect: Dialect, invalid: str = BAD_REQUEST) -> Endpoint:
    """`handler` bound to `dialect`, answering every error in Personalizer's shape; `invalid`
    is the code of a 400 on this route (v1.1 and later)."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            unserved = unserved_version(request, dialect)
            if unserved is not None:
                raise PersonalizerError(400, BAD_REQUEST, unserved, "api-version")
            return await handler(request, dialect)
        except EngineError as exc:
            status = status_of(exc)
            if status >= 500 and status != 501:
                log.error("%s %s: %s", request.method, request.url.path, exc.detail)
            inner = slug(type(exc)) if not isinstance(exc, PersonalizerError) else None
            return error(status, code_of(exc, dialect, invalid), exc.detail, exc.field, inner)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error(500, INTERNAL, "an unexpected error occurred; it has been logged")

    return run


def not_served(message: str) -> Handler:
    """A route of the spec that Loopwise refuses, with the reason (501)."""

    async def refuse(request: Request, dialect: Dialect) -> Response:
        raise PersonalizerError(501, "InvalidApiAccess", message, title="Not implemented")

    return refuse


async def no_route(request: Request, dialect: Dialect) -> Response:
    raise PersonalizerError(
        404,
        NOT_FOUND,
        f"no Personalizer route {request.method} {request.url.path}",
        title="Not found",
    )
