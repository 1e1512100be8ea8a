"""The bodies the engine validates as plain objects, not as Structs: a catalog
(engine.catalog.parse_catalog), an experiment (engine.experiment), an evaluation and an
optimisation (api.evaluations). Their top-level fields are listed here; their nested
settings are the engine's rules, described in docs/reference/api.md."""

from __future__ import annotations

from typing import Any

from api.openapi.limits import ID, NAME, features, number
from engine.evaluation import MAX_CANDIDATES
from engine.featurespec import MAX_SPEC
from engine.limits import Limits

DOCS = "docs/reference/api.md"


def _object(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description}


def catalog(bounds: Limits) -> tuple[dict[str, Any], dict[str, Any]]:
    action = {
        "type": "object",
        "properties": {
            "id": {"type": "string", **ID},
            "features": {"type": "object", **features(bounds)},
            "metadata": {
                "type": "object",
                "description": (
                    f"Returned with the action; at most {bounds.max_metadata_bytes} bytes as "
                    f"compact JSON, at most {bounds.max_catalog_metadata_bytes} for the catalog."
                ),
            },
        },
        "required": ["id"],
        "additionalProperties": False,
    }
    return {
        "title": "CatalogBody",
        "type": "object",
        "description": (
            "A catalog version (JSON, or YAML with Content-Type application/yaml). Every field "
            f"is optional; {DOCS}#the-catalog-body says each setting."
        ),
        "properties": {
            "name": {"type": "string", **NAME, "description": "if given, the path's name"},
            "actions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/CatalogActionBody"},
                "maxItems": bounds.max_actions,
                "description": "none: decision requests send their own actions",
            },
            "learning": _object(f"the policy and its settings ({DOCS}#learning)"),
            "constraints": _object(f"rules, inventory, caps, windows ({DOCS}#constraints)"),
            "features": {
                "type": "array",
                "maxItems": MAX_SPEC,
                "items": _object("an aggregate: name, event, key, by, aggregation, window"),
                "description": f"the user aggregates decisions join ({DOCS}#features)",
            },
            "failover": _object(f"the safe policy and the breaker ({DOCS}#failover)"),
            "experiment": _object(f"arms and shares ({DOCS}#experiment)"),
            "optimization": _object(f"a scheduled optimisation ({DOCS}#on-a-schedule)"),
            "mode": {"enum": ["online", "apprentice", "logging"], "default": "online"},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "as GET answers it; ignored (the store sets it)",
            },
            "updated_at": {"type": "number", "description": "as GET answers it; ignored"},
        },
        "additionalProperties": False,
    }, action


def experiment() -> dict[str, Any]:
    return {
        "title": "ExperimentBody",
        "type": "object",
        "description": f"The catalog's experiment, replaced whole ({DOCS}#experiment).",
        "properties": {
            "name": {"type": "string"},
            "control": {"type": "string", "description": "the arm the others are compared to"},
            "seed": {"type": "integer"},
            "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "arms": {
                "type": "array",
                "items": _object("an arm: name, share, policy, paused, keep_running"),
            },
            "guardrail": _object("min_difference and min_decisions"),
        },
        "required": ["name", "arms"],
    }


def evaluation(bounds: Limits, optimize: bool) -> dict[str, Any]:
    window = {"type": "number", **number(bounds)}
    properties: dict[str, Any] = {
        "since": {**window, "description": "epoch seconds; default: 24 hours ago"},
        "until": {**window, "description": "epoch seconds; default: now"},
        "candidates": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_CANDIDATES,
            "items": _object(
                "a candidate: {name, learning} or another policy "
                f"({DOCS}#post-v1catalogsnameevaluations)"
            ),
        },
        "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    }
    if optimize:
        properties["promote"] = {"type": "boolean", "default": True}
        properties["candidates"]["description"] = "default: engine.optimize.GRID"
    return {
        "title": "OptimizationBody" if optimize else "EvaluationBody",
        "type": "object",
        "properties": properties,
        "required": [] if optimize else ["candidates"],
        "additionalProperties": False,
    }


def schemas(bounds: Limits) -> dict[str, Any]:
    body, action = catalog(bounds)
    return {
        "CatalogBody": body,
        "CatalogActionBody": action,
        "ExperimentBody": experiment(),
        "EvaluationBody": evaluation(bounds, optimize=False),
        "OptimizationBody": evaluation(bounds, optimize=True),
    }
