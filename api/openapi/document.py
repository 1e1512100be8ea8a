"""The whole OpenAPI 3.1 document, for the configured limits (built once per `Limits`)."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from api.openapi import personalizer, problems, schemas
from api.openapi.operations import OPERATIONS
from api.openapi.spec import operation
from engine.limits import Limits

VERSION = "3.1.0"
ANY_OBJECT = {"type": "object"}
_encode = msgspec.json.Encoder(order="sorted").encode


def build(bounds: Limits) -> dict[str, Any]:
    """The document as a dict (a new one each call: callers may change it)."""
    doc: dict[str, Any] = msgspec.json.decode(encoded(bounds))
    return doc


@functools.cache
def encoded(bounds: Limits) -> bytes:
    """The document as JSON, what GET /openapi.json sends."""
    return _encode(_build(bounds))


def _build(bounds: Limits) -> dict[str, Any]:
    statuses = sorted({s for op in OPERATIONS for s in op.statuses()})
    refs = {s: {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.template, {})[op.method.lower()] = operation(op, bounds, refs)
    paths.update(personalizer.operations(bounds))
    components = schemas.components(bounds)
    components.update(_extra(components))
    return {
        "openapi": VERSION,
        "info": {
            "title": "Loopwise",
            "version": "1",
            "summary": "Real-time personalisation: decisions with exact probabilities, "
            "rewards, catalogs, experiments, off-policy evaluation.",
            "description": _description(),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": _tags(paths),
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {f"Problem{s}": problems.response(s) for s in statuses},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <key>; a key has a role "
                    "(storefront, marketer or admin: LOOPWISE_API_KEYS). With no keys set, "
                    "no route asks for one.",
                },
                "subscriptionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Ocp-Apim-Subscription-Key",
                    "description": "the same key, as Personalizer's SDKs send it",
                },
            },
        },
    }


def _extra(found: dict[str, Any]) -> dict[str, Any]:
    """The unions of the routes that take one thing or a batch, and untyped answers."""
    out = {
        "Object": ANY_OBJECT,
        "RewardBody": {
            "title": "RewardBody",
            "description": "One reward, or a batch of them under `rewards`.",
            "anyOf": [schemas.ref("RewardRequest"), schemas.ref("RewardBatch")],
        },
        "RewardAnswer": {
            "anyOf": [schemas.ref("RewardResult"), schemas.ref("RewardResults")],
        },
        "EventBody": {
            "title": "EventBody",
            "description": "One event, or a batch of them (mixed types) under `events`.",
            "anyOf": [schemas.ref("Event"), schemas.ref("EventBatch")],
        },
        "PersonalizerEvaluationList": {
            "description": "v1.0 and v1.1: an array; 2022-09-01-preview: a page of them",
            "anyOf": [
                {"type": "array", "items": schemas.ref("PersonalizerEvaluation")},
                {
                    "type": "object",
                    "properties": {
                        "value": {"type": "array", "items": schemas.ref("PersonalizerEvaluation")},
                        "nextLink": {"type": ["string", "null"]},
                    },
                    "required": ["value"],
                },
            ],
        },
        **personalizer.rank_schemas(),
    }
    return {k: v for k, v in out.items() if k not in found}


def _tags(paths: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    seen = dict.fromkeys(t for item in paths.values() for op in item.values() for t in op["tags"])
    return [{"name": t} for t in seen]


def _description() -> str:
    kinds = "\n".join(
        f"- `{k.uri}` ({k.status}, {k.title}): {k.description}" for k in problems.problem_types()
    )
    return (
        "Every error of the `/v1` routes is RFC 9457 `application/problem+json` naming the "
        "field at fault; its `type` is one of:\n\n"
        f"{kinds}\n\nThe Personalizer-compatible routes answer errors in Personalizer's "
        "shape instead. docs/reference/api.md is the narrative reference."
    )
