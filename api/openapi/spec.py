"""What an operation of the table says, and how it becomes an OpenAPI operation object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from api.openapi.limits import ID, NAME, body
from api.serving.admission import NEVER_SHED
from engine.limits import Limits

JSON = "application/json"
PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
# a path parameter's schema, by its name
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", **NAME},
    "catalog": {"type": "string", **NAME},
    "loop": {"type": "string", **NAME},
    "arm": {"type": "string", **ID},
    "id": {"type": "string", **ID},
    "evaluation_id": {"type": "string", **ID},
    "fid": {"type": "string", **ID},
    "sku": {"type": "string", **ID},
    "event_id": {"type": "string", **ID},
    "user_id": {"type": "string", **ID},
    "action": {"type": "string", **ID},
    "version": {"type": "string", "pattern": "^[0-9]{1,10}$"},
}
# what the documented examples name (tests/test_openapi_fuzz.py creates the catalog)
EXAMPLES = {
    "name": "home-hero",
    "catalog": "home-hero",
    "loop": "home-hero",
    "action": "banner-a",
    "event_id": "evt-0001",
    "user_id": "u-123",
    "sku": "sku-1",
    "arm": "vw",
    "version": "1",
}
PATH_ONLY = {"event_id", "user_id"}
ANY_KEY = (
    "any"  # the role of an operation any valid key may call  # {x:path}: the value may hold '/'
)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    description: str
    schema: str | None = None  # a component's name; None: no body (or `media` untyped)
    media: str = JSON
    headers: tuple[str, ...] = ()  # names of response headers it sends
    example: Any = None


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # query or header
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str  # as the app's routes spell it: a `{x:path}` converter included
    summary: str
    tag: str
    role: str | None  # None: public
    answers: tuple[Answer, ...]
    body: str | None = None  # the request body's component
    body_media: str = JSON
    problems: tuple[int, ...] = ()  # statuses beyond those the role, body and path imply
    params: tuple[Param, ...] = ()
    query: Any = None  # a Struct the query is converted to (api.requests.convert)
    example: Any = None
    description: str = ""

    @property
    def template(self) -> str:
        """The OpenAPI path: `{event_id:path}` is `{event_id}`."""
        return PARAM.sub(r"{\1}", self.path)

    def statuses(self) -> list[int]:
        """Every problem status it may answer: 401 and 403 for a role, 400, 413 and 422
        for a body, 404 for a path parameter (no such thing, or no such route), and 500,
        which any route may answer (and none should); 429 for a key over its rate limit
        and 503 when the process sheds load (api.serving.admission), but for the routes
        never shed."""
        found = {*self.problems, 500}
        if self.path not in NEVER_SHED:
            found.add(503)
        if self.role is not None:
            found |= {401, 403, 429}
        if self.body is not None:
            found |= {400, 413, 422}
        if PARAM.search(self.path):
            found |= {404, 422}
        if self.query is not None:
            found.add(422)
        return sorted(found - {a.status for a in self.answers})


Problems = dict[int, dict[str, Any]]  # a status -> its response (or a $ref to it)


def operation(op: Op, bounds: Limits, problems: Problems, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": prefix + _identifier(op),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [*_path_params(op), *_query(op), *(_param(p) for p in op.params)],
        "responses": {
            **{str(a.status): _answer(a) for a in op.answers},
            **{str(s): problems[s] for s in op.statuses()},
        },
    }
    role = f"Role: {op.role} (or admin)." if op.role else "Public: no key."
    if op.role == ANY_KEY:
        role = "Any valid key, whatever its role."
    out["description"] = " ".join(filter(None, (op.description, role)))
    if op.role is not None:
        out["security"] = [{"bearer": []}, {"subscriptionKey": []}]
        out["x-loopwise-role"] = op.role
    else:
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = _request(op, bounds)
    if not out["parameters"]:
        del out["parameters"]
    return out


def _identifier(op: Op) -> str:
    words = re.findall(r"[A-Za-z0-9]+", PARAM.sub(r"by_\1", op.path))
    return "_".join([op.method.lower(), *words])


def _path_params(op: Op) -> list[dict[str, Any]]:
    out = []
    for name in PARAM.findall(op.path):
        described = "may contain '/'" if name in PATH_ONLY else ""
        out.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": PATH_PARAMS.get(name, {"type": "string"}),
                **({"example": EXAMPLES[name]} if name in EXAMPLES else {}),
                **({"description": described} if described else {}),
            }
        )
    return out


def _query(op: Op) -> list[dict[str, Any]]:
    """A query Struct's fields as query parameters (an unknown one is a 422)."""
    if op.query is None:
        return []
    schema = msgspec.json.schema(op.query)
    found = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    required = set(found.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in found["properties"].items()
    ]


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "description": p.description,
        "required": p.required,
        "schema": p.schema,
    }


def _answer(a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": a.description}
    if a.schema is not None or a.media != JSON:
        media: dict[str, Any] = {}
        if a.schema is not None:
            media["schema"] = {"$ref": f"#/components/schemas/{a.schema}"}
        else:
            media["schema"] = {"type": "string"}
        if a.example is not None:
            media["example"] = a.example
        out["content"] = {a.media: media}
    if a.headers:
        out["headers"] = {h: {"schema": {"type": "string"}} for h in a.headers}
    return out


def _request(op: Op, bounds: Limits) -> dict[str, Any]:
    schema: dict[str, Any]
    if op.body_media == JSON:
        schema = {"$ref": f"#/components/schemas/{op.body}"}
    else:
        schema = {"type": "string", "contentMediaType": op.body_media}
    media: dict[str, Any] = {"schema": schema}
    if op.example is not None:
        media["example"] = op.example
    return {"required": True, "description": body(bounds), "content": {op.body_media: media}}
