"""Every problem type the API answers (RFC 9457 problem+json, api.problems), and the
response each status documents: a Problem whose `type` is one of that status's types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.events import UnknownSku
from api.problems import MEDIA_TYPE, slug
from api.users import UnknownUser
from engine import breaker, errors


@dataclass(frozen=True, slots=True)
class ProblemType:
    kind: str  # the slug: `type` is urn:loopwise:problem:<kind>
    status: int
    title: str
    description: str

    @property
    def uri(self) -> str:
        return f"urn:loopwise:problem:{self.kind}"


def _of(error: type[errors.EngineError]) -> ProblemType:
    doc = (error.__doc__ or "").strip()
    return ProblemType(slug(error), error.status, error.title, doc)


# Every EngineError a route may raise (tests/test_openapi.py checks that no subclass is
# missing), then the two kinds api.problems answers for what is not an EngineError.
ERRORS: tuple[type[errors.EngineError], ...] = (
    errors.MalformedBody,
    errors.Unauthorized,
    errors.Forbidden,
    errors.NotFound,
    errors.UnknownCatalog,
    errors.UnknownEvent,
    UnknownSku,
    UnknownUser,
    errors.Conflict,
    errors.RateLimited,
    errors.PayloadTooLarge,
    errors.InvalidInput,
    errors.LimitExceeded,
    errors.EngineError,
    errors.CorruptCheckpoint,
    errors.Unavailable,
    breaker.Unavailable,  # the same slug as errors.Unavailable
)
HTTP = ProblemType(
    "http",
    404,
    "Not found",
    'No route has this path (404), or the route takes another method (405, title "HTTP error").',
)
OVERLOADED = ProblemType(  # answered by api.serving.admission's middleware, not raised
    "overloaded",
    503,
    "Service unavailable",
    "The process is handling its limit of requests at once (LOOPWISE_MAX_INFLIGHT); "
    "retry after Retry-After seconds.",
)
INTERNAL = ProblemType(
    "internal", 500, "Internal error", "An unexpected error; it is logged, never expected."
)


def problem_types() -> list[ProblemType]:
    """One entry per slug (the first class of a slug gives its title and description)."""
    out: dict[str, ProblemType] = {}
    for error in ERRORS:
        out.setdefault(slug(error), _of(error))
    out.setdefault(HTTP.kind, HTTP)
    out.setdefault(OVERLOADED.kind, OVERLOADED)
    out.setdefault(INTERNAL.kind, INTERNAL)
    return list(out.values())


def statuses_of(kind: ProblemType) -> tuple[int, ...]:
    return (404, 405) if kind is HTTP else (kind.status,)


def problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details; `field` names the input at fault.",
        "properties": {
            "type": {"type": "string", "description": "urn:loopwise:problem:<kind>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "the field path, e.g. slots[1].id"},
            "instance": {"type": "string", "description": "the request's path"},
        },
        "required": ["type", "title", "status", "detail"],
    }


def response(status: int) -> dict[str, Any]:
    """The problem+json response of `status`: its possible types, an example of each."""
    kinds = [k for k in problem_types() if status in statuses_of(k)]
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Problem"},
            {
                "properties": {
                    "type": {"enum": [k.uri for k in kinds]},
                    "status": {"const": status},
                }
            },
        ]
    }
    examples = {
        k.kind: {
            "summary": k.title,
            "description": k.description,
            "value": {
                "type": k.uri,
                "title": k.title if status != 405 else "HTTP error",
                "status": status,
                "detail": k.description,
            },
        }
        for k in kinds
    }
    described = "; ".join(f"{k.kind}: {k.description}" for k in kinds)
    out: dict[str, Any] = {
        "description": described or f"HTTP {status}",
        "content": {MEDIA_TYPE: {"schema": schema, "examples": examples}},
    }
    if status in RETRY_AFTER:
        out["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return out


RETRY_AFTER = (429, 503)
RETRY_AFTER_HEADER = {
    "description": "whole seconds to wait before retrying (429 always; 503 when it knows)",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
